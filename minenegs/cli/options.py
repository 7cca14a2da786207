"""Options, declared once: derived from the library's settings records (``records.setting`` fields) and the filter
registry; a group of options reaches its command as one object, built by the library (``@group``)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Optional

import typer

from .. import recipe
from ..distributed.runner import RaySettings
from ..select.judges import JudgeOptions, syntaxes
from ..select.judging import Judging


def opt(kind: Any, *flags: str, help: str, default: Any = None, panel: str | None = None, **kw: Any) -> tuple[Any, Any]:
    """An option as (annotation, default); ``panel`` is where ``--help`` shows it (``report.help.PANELS``)."""
    show = default is not None and (kind is not bool or "/" in flags[0])  # a plain flag's default goes unsaid
    return Annotated[kind, typer.Option(*flags, help=help, show_default=show, rich_help_panel=panel, **kw)], default


def fields(cls: type, prefix: str = "", grid: bool = False) -> dict[str, tuple[Any, Any]]:
    """The options of a settings record's ``setting`` fields (named ``prefix`` + the field's name); with ``grid``, a
    comma-separated list where a field allows one."""
    hints, out = typing.get_type_hints(cls), {}
    for f in (f for f in dataclasses.fields(cls) if "help" in f.metadata):
        m, kind, default = f.metadata, hints[f.name], None if f.default in (dataclasses.MISSING, ()) else f.default
        kind = Optional[list[Path]] if m.get("type") == "paths" else Optional[typing.get_args(kind)[0]] if type(None) in typing.get_args(kind) else kind
        flags = [m.get("flag") or "--" + f.name.replace("_", "-"), *([m["short"]] if "short" in m else []), *m.get("aliases", ())]
        if grid and m.get("grid"):
            out[prefix + f.name] = opt(Optional[str], *flags, help=f"{m['help']} A comma-separated list to try.", panel=m.get("panel"))
        else:
            out[prefix + f.name] = opt(kind, *flags, help=m["help"], default=default, panel=m.get("panel"),
                                       metavar="|".join(m["choices"]) if "choices" in m else None, **({"min": m["min"]} if "min" in m else {}))
    return out


def group(name: str, options: dict[str, tuple[Any, Any]], build: Callable[..., Any], panel: str | None = None,
          prefix: str = ""):
    """Give a command ``options``; it receives ``build(**their values)`` (names without ``prefix``) as ``name``
    instead. Its options that name no panel of their own are shown in ``panel``."""
    for annotation, _ in options.values():
        info = typing.get_args(annotation)[1]
        info.rich_help_panel = info.rich_help_panel or panel

    def decorate(func):
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != name]
        added = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, annotation=a, default=d) for k, (a, d) in options.items()]

        @functools.wraps(func)
        def command(**kwargs):
            built = build(**{k.removeprefix(prefix): kwargs.pop(k) for k in options})
            return func(**kwargs, **{name: built})

        del command.__wrapped__
        command.__signature__ = signature.replace(parameters=own + added)
        command.__annotations__ = {p.name: p.annotation for p in own + added}
        return command

    return decorate


def of(cls: type, panel: str | None = None, name: str | None = None, build: Callable[..., Any] | None = None):
    """A group of a record's options, given to the command as ``name`` (the record's own, snake-cased): the record
    built from them, or what ``build`` makes of them."""
    name = name or "".join("_" + c.lower() if c.isupper() else c for c in cls.__name__).lstrip("_")
    return group(name, fields(cls), build or cls, panel=panel)


Force = Annotated[bool, typer.Option("--force", help="Replace an existing output.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary.")]
Json = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")]
PoolArg = Annotated[Path, typer.Argument(help="A candidate pool folder (see the `pool` line of `mine`).")]

RAY = fields(RaySettings, "ray_")
ray_options = group("ray", {k: v for k, v in RAY.items() if k != "ray_gpus"}, RaySettings.of, "Ray", "ray_")
ray_gpu_options = group("ray", RAY, RaySettings.of, "Ray", "ray_")
judging_options = group("judging", {
    "judges": opt(Optional[list[str]], "--judge", help=f"A judge, cheapest first (repeatable): {syntaxes()} (see README: Judges)."),
    "cross_encoder": opt(Optional[str], "--cross-encoder", help="CrossEncoder name or folder whose probabilities --ce-max and --promote read (scored to --judge-depth; cached in the pool with every judge's answers)."),
    **fields(Judging, "judge_"), **fields(JudgeOptions, "judge_")}, Judging.of, "Judges", "judge_")


def _output() -> Callable:
    from ..write.outputs import Writing

    def build(output: Path, preview: int, force: bool, quiet: bool, json: bool, **writing: Any) -> SimpleNamespace:
        """Where the rows go and what is shown; ``writing``: what the library call takes."""
        return SimpleNamespace(output=output, preview=preview, quiet=quiet, json=json, fmt=writing["fmt"],
                               min_coverage=writing["min_coverage"], writing={**writing, "force": force})

    return group("out", {
        "output": (Annotated[Path, typer.Option("--output", "-o", help="The file to write (NAME.arrow: a Hugging Face dataset folder; -: standard output).", show_default=False)], ...),
        **fields(Writing), "preview": opt(int, "--preview", help="Show this many output rows when done.", default=3, min=0),
        "force": (Force, False), "quiet": (Quiet, False), "json": (Json, False)}, build, panel="Input and output")


def _selection(grid: bool) -> dict[str, tuple[Any, Any]]:
    """``MineParams``' and ``StrategyParams``' fields, ``--keep-duplicates``, and one option per filter of the
    registry (with its default in the recipe); with ``grid``, lists to try where the grid takes them."""
    from ..select.filters import REGISTRY
    from ..select.params import MineParams
    from ..select.strategies import StrategyParams

    out = {**fields(MineParams, grid=grid), **fields(StrategyParams), "keep_duplicates": opt(bool, "--keep-duplicates", panel="Filters", help="Keep candidates similar to positives: no normalised-text and no --dup-threshold filter, and no --max-positive-similarity unless given.", default=False)}
    for f in (f for f in REGISTRY.values() if f.flag):
        default = f" [default: {recipe.THRESHOLDS[f.name]}]" if f.name in recipe.THRESHOLDS else ""
        out[f.name] = opt(Optional[str], f.flag, help=f"Values to try, comma-separated ('off' for none). {f.help}",
                          panel="Filters") if grid else opt(Optional[float], f.flag, help=f"{f.help}{default}", panel="Filters")
    return out


def _groups() -> tuple:
    from ..encode.embeddings import EncodeSettings
    from ..encode.models import SentenceTransformerEncoder
    from ..inputs.dataset import Sources
    from ..inputs.tables import Columns
    from ..retrieve.index import IndexParams
    from ..retrieve.search import PoolParams
    from ..select.calibrate import Calibration
    from ..select.params import MineParams
    from ..select.sweep import grid_of

    settings = lambda **values: values  # noqa: E731  (passed on to the library call as keywords)
    return (group("params", _selection(False), MineParams.of), group("selection", _selection(True), grid_of),
            group("pool_params", {**fields(PoolParams), **fields(IndexParams)}, PoolParams.flat, "Retrieval and index"),
            of(Columns, "Input and output"), of(Sources, "Input and output", build=settings),
            of(EncodeSettings, "Model and encoding", "encoding", settings),
            of(SentenceTransformerEncoder, "Model and encoding", "model_settings", settings), _output(),
            group("calibration", fields(Calibration), settings, "Calibration"),
            group("calibration", {k: v for k, v in fields(Calibration).items() if k in ("max_leak", "max_short")}, settings, "Calibration"))


(selection_options, grid_options, pool_options, columns_options, sources_options, encoding_options, model_options,
 output_options, calibration_options, picking_options) = _groups()
