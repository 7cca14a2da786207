"""Settings records: the dataclass fields users set (:func:`setting`), and the command-line options derived from
them (:func:`fields`), which reach a command as one object built from their values (:func:`group`, :func:`of`).
What a field's metadata may say is written and read here alone; typer is imported only where options are made."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional


def setting(default: Any = None, help: str = "", **cli: Any) -> Any:
    """A dataclass field users set. ``help`` says what it does; ``cli`` may give the command line's ``flag``
    (default ``--name-with-dashes``), a ``short`` one, older names it still answers to (``aliases``), the ``min``
    value its parser takes, a ``type`` to parse it as, ``grid=True`` where ``sweep`` and ``calibrate`` take a list
    of values to try, the ``choices`` its help shows and the ``panel`` it is shown in (else its group's). The
    command line derives its options from these fields; TOML recipes and Python callers set them by name."""
    return dataclasses.field(default=default, metadata={"help": help, **cli})


def opt(kind: Any, *flags: str, help: str, default: Any = None, panel: str | None = None, **kw: Any) -> tuple[Any, Any]:
    """An option as (annotation, default); ``panel`` is where ``--help`` shows it (``report.help.PANELS``)."""
    import typer

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
