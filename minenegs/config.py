"""Recipes in TOML: one section per command (``[encode]``, ``[mine]``), keys named like the flags.

    [encode]
    data = "data_samples"
    split = "train"
    output = "runs/demo/embeddings"

    [mine]
    strategy = "top"
    relative-margin = 0.05      # or relative_margin
    output = "runs/demo/negatives.parquet"

A section becomes the command's own argument list, so a config is parsed and checked exactly like flags are.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .errors import InputError

SECTIONS = ("encode", "mine")


def load_config(path: Path | str) -> dict[str, dict[str, Any]]:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file; see configs/ for recipes") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    unknown = [k for k in data if k not in SECTIONS or not isinstance(data[k], dict)]
    if unknown:
        raise InputError(f"{path}: unknown section {unknown[0]!r}; use [{'], ['.join(SECTIONS)}]")
    return data


def apply_overrides(config: dict[str, dict[str, Any]], overrides: list[str]) -> dict[str, dict[str, Any]]:
    """``section.key=value`` strings on top of the file (values parsed as TOML scalars, else kept as text)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or section not in SECTIONS or not name:
            raise InputError(f"--set {item}: write section.key=value, e.g. mine.relative-margin=0.1")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        config.setdefault(section, {})[name] = value
    return config


def _param(command: Any, key: str, where: str) -> Any:
    flag = "--" + key.replace("_", "-")
    for param in command.params:
        if param.name == key or flag in getattr(param, "opts", []) or key.replace("-", "_") == param.name:
            return param
    raise InputError(f"{where}: {command.name} has no option {key!r}; see `minenegs {command.name} --help`")


def section_args(command: Any, section: dict[str, Any], where: str) -> list[str]:
    """The command-line arguments that say what ``section`` says."""
    args: list[str] = []
    positional: list[str] = []
    for key, value in section.items():
        param = _param(command, key, where)
        if param.param_type_name == "argument":  # typer ships its own click: no isinstance
            positional.append(str(value))
        elif getattr(param, "is_flag", False):
            if not isinstance(value, bool):
                raise InputError(f"{where}: {key} takes true or false")
            if value:
                args.append(param.opts[0])
            elif param.secondary_opts:
                args.append(param.secondary_opts[0])
        elif isinstance(value, list):  # a repeatable option, e.g. judge = ["llm:...", "llm:..."]
            for item in value:
                args += [param.opts[0], str(item)]
        else:
            args += [param.opts[0], str(value)]
    return positional + args


def default_map(group: Any, ctx: Any, path: Path | str) -> dict[str, dict[str, Any]]:
    """``--config``: each section of the recipe at ``path`` as click defaults (``default_map``) of the command of
    ``group`` it names, so flags given on the command line win."""
    return {name: {_param(group.get_command(ctx, name), key, str(path)).name: value for key, value in section.items()}
            for name, section in load_config(path).items()}


def recipe_commands(group: Any, ctx: Any, path: Path | str, overrides: list[str], force: bool, quiet: bool,
                    as_json: bool) -> list[tuple[Any, list[str]]]:
    """``minenegs run``: each section of the recipe at ``path`` (with ``--set`` overrides) as the command of
    ``group`` it names and that command's arguments, every section checked before any runs; mine reads what
    encode writes unless told otherwise."""
    recipe = apply_overrides(load_config(path), overrides)
    if "mine" in recipe and "encode" in recipe and "embeddings" not in recipe["mine"]:
        recipe["mine"]["embeddings"] = recipe["encode"].get("output", "")
    stages = []
    for name in (n for n in SECTIONS if n in recipe):
        section = {**recipe[name], **({"force": True} if force else {}), **({"quiet": True} if quiet else {}),
                   **({"json": True} if as_json else {})}
        command = group.get_command(ctx, name)
        stages.append((command, section_args(command, section, f"{path} [{name}]")))
    if not stages:
        raise InputError(f"{path}: has neither an [encode] nor a [mine] section")
    return stages
