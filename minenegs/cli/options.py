"""Options, declared once. Most are derived from the library's settings records (``records.setting`` fields:
``MineParams``, ``StrategyParams``, ``PoolParams``, ``IndexParams``, the encoder, ``Columns``) and from the filter
registry; a group of options reaches its command as one object (``@group``)."""

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
from ..errors import InputError
from ..distributed.runner import RaySettings
from ..select.judges import CrossEncoderJudge, JudgeOptions, parse_judge, syntaxes
from ..select.judging import Judging
from ..write.batching import ORDERS
from ..write.outputs import FORMATS


def opt(kind: Any, *flags: str, help: str, default: Any = None, panel: str | None = None, **kw: Any) -> tuple[Any, Any]:
    """An option as (annotation, default); ``panel`` is where ``--help`` shows it (:data:`minenegs.cli.help.PANELS`)."""
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
                              metavar="|".join(m["choices"]) if "choices" in m else None,
                              **({"min": m["min"]} if "min" in m else {}))
    return out


def group(name: str, options: dict[str, tuple[Any, Any]], build: Callable[..., Any], panel: str | None = None):
    """Give a command ``options``; it receives ``build(**their values)`` as ``name`` instead. Its options that name
    no panel of their own are shown in ``panel``."""
    for annotation, _ in options.values():
        info = typing.get_args(annotation)[1]
        info.rich_help_panel = info.rich_help_panel or panel

    def decorate(func):
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != name]
        added = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, annotation=a, default=d) for k, (a, d) in options.items()]

        @functools.wraps(func)
        def command(**kwargs):
            built = build(**{k: kwargs.pop(k) for k in options})
            return func(**kwargs, **{name: built})

        del command.__wrapped__
        command.__signature__ = signature.replace(parameters=own + added)
        command.__annotations__ = {p.name: p.annotation for p in own + added}
        return command

    return decorate


Output = Annotated[Path, typer.Option("--output", "-o", help="Output path (a folder for encode, a file for mine and filter; NAME.arrow: a Hugging Face dataset folder).", show_default=False)]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing output.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary.")]
Json = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")]
PoolArg = Annotated[Path, typer.Argument(help="A candidate pool folder (see the `pool` line of `mine`).")]
MaxLeak = Annotated[Optional[float], typer.Option("--max-leak", rich_help_panel="Calibration", help="Calibrate (see `calibrate`) and pick the hardest setting whose leak upper bound is at most this share: `mine` mines with it, `calibrate` writes it as a recipe.", show_default=False)]
MaxShort = Annotated[float, typer.Option("--max-short", rich_help_panel="Calibration", help="With --max-leak: the largest share of queries a picked setting may leave short.")]


def _ray(**options: Any):
    return RaySettings.of(**{k.removeprefix("ray_"): v for k, v in options.items()})


RAY = fields(RaySettings, "ray_")
ray_options = group("ray", {k: v for k, v in RAY.items() if k != "ray_gpus"}, _ray, panel="Ray")
ray_gpu_options = group("ray", RAY, _ray, panel="Ray")


def _judging(judges: list[str] | None, cross_encoder: str | None, **settings: Any):
    options = JudgeOptions(**{k: settings[PREFIX + k] for k in _names(JudgeOptions)})
    scorer = CrossEncoderJudge(cross_encoder, options.ce_batch_size) if cross_encoder else None
    if not judges:  # a judge option without a judge is an error, not ignored
        given = [k for k, v in settings.items() if v != JUDGING[k][1] and not (scorer and k == PREFIX + "ce_batch_size")]
        if given:
            flag = {f.name: f.metadata.get("flag") for cls in (Judging, JudgeOptions) for f in dataclasses.fields(cls)}
            raise InputError(f"{flag[given[0][len(PREFIX):]].split('/')[0]} needs --judge SPEC")
        return Judging(scorer=scorer) if scorer else None
    own = {k: settings[PREFIX + k] for k in _names(Judging)}
    return Judging([parse_judge(spec, options) for spec in judges], **own, scorer=scorer)


def _names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if "help" in f.metadata]


PREFIX = "judge_"
JUDGING = {**fields(Judging, PREFIX), **fields(JudgeOptions, PREFIX)}
judging_options = group("judging", {
    "judges": opt(Optional[list[str]], "--judge", help=f"A judge, cheapest first (repeatable): {syntaxes()} (see README: Judges)."),
    "cross_encoder": opt(Optional[str], "--cross-encoder", help="CrossEncoder name or folder whose probabilities --ce-max and --promote read (scored to --judge-depth; cached in the pool with every judge's answers)."),
    **JUDGING}, _judging, panel="Judges")


def _out(output, fmt, scores, preview, batch_order, batch_size, min_coverage, adapt, fail_on_dense, force, quiet,
         json):
    """Where and how the rows are written (``writing``: what the library call takes), and what is shown."""
    writing = {"fmt": fmt, "scores": scores, "batch_order": batch_order, "batch_size": batch_size,
               "min_coverage": min_coverage, "adapt": adapt, "fail_on_dense": fail_on_dense, "force": force}
    return SimpleNamespace(output=output, fmt=fmt, preview=preview, min_coverage=min_coverage, quiet=quiet,
                           json=json, writing=writing)


output_options = group("out", {
    "output": (Output, ...),
    "fmt": opt(str, "--format", metavar="|".join(FORMATS), help="triplet, n-tuple, labeled-list, ids or flag-jsonl.", default=recipe.FORMAT),
    "scores": opt(bool, "--scores", help="Add the positives' and negatives' scores.", default=False),
    "preview": opt(int, "--preview", help="Show this many output rows when done.", default=3, min=0),
    "batch_order": opt(str, "--batch-order", metavar="|".join(ORDERS), help="pool (the pool's query order) or clusters: blocks of --batch-size rows from one query cluster (pool mined with --query-clusters), blocks shuffled with --seed, no anchor or positive text twice in a block. Train without reshuffling (README).", default="pool"),
    "batch_size": opt(int, "--batch-size", help="Rows per block with --batch-order clusters: the trainer's batch size.", default=32, min=1),
    "min_coverage": opt(Optional[float], "--min-coverage", help="Exit 3 unless this share of queries got all their negatives (e.g. 0.95)."),
    "adapt": opt(str, "--recipe", metavar="adaptive|fixed", panel="Strategy", help="adaptive: where the data looks densely relevant (most top candidates outrank the labelled positive), the default options mine the dense recipe instead: one negative a query from further down the pool, unlike every positive (README: dense relevance); fixed: the options as given, always.", default="adaptive"),
    "fail_on_dense": opt(bool, "--fail-on-dense", panel="Strategy", help="Exit 3, writing nothing, instead of warning when the negatives asked for look likely to hurt (dense relevance).", default=False),
    "force": (Force, False), "quiet": (Quiet, False), "json": (Json, False)}, _out, panel="Input and output")


def _pool_options():
    from ..retrieve.index import IndexParams
    from ..retrieve.search import PoolParams

    return group("pool_params", {**fields(PoolParams), **fields(IndexParams)}, PoolParams.flat, panel="Retrieval and index")


pool_options = _pool_options()


def _selection(grid: bool) -> dict[str, tuple[Any, Any]]:
    """``MineParams``' and ``StrategyParams``' fields, ``--keep-duplicates``, and one option per filter of the
    registry (with its default in the recipe)."""
    from ..select.filters import REGISTRY
    from ..select.params import MineParams
    from ..select.strategies import StrategyParams

    out = {**fields(MineParams, grid=grid), **fields(StrategyParams), "keep_duplicates": opt(bool, "--keep-duplicates", panel="Filters", help="Keep candidates similar to positives: no normalised-text and no --dup-threshold filter, and no --max-positive-similarity unless given.", default=False)}
    for f in (f for f in REGISTRY.values() if f.flag):
        default = f" [default: {recipe.THRESHOLDS[f.name]}]" if f.name in recipe.THRESHOLDS else ""
        out[f.name] = opt(Optional[str], f.flag, help=f"Values to try, comma-separated ('off' for none). {f.help}",
                          panel="Filters") if grid else opt(Optional[float], f.flag, help=f"{f.help}{default}", panel="Filters")
    return out


def _params(keep_duplicates: bool, simans_a: float, simans_b: float, grid: bool = False, **values: Any):
    """``MineParams`` (the default recipe under the options given) and, with ``grid``, the lists to try."""
    from ..select.filters import REGISTRY
    from ..select.params import MineParams
    from ..select.strategies import StrategyParams
    from ..select.sweep import grid_from_text

    thresholds, lists = {k: values.pop(k) for k in list(values) if k in REGISTRY}, {}
    if grid:
        lists = grid_from_text({**{k: values.pop(k) for k in ("strategy", "range_min")}, **thresholds})
        thresholds = {k: (lists.get(k) or [None])[0] for k in ("dup_threshold", "max_positive_similarity")}
    params = MineParams.default(keep_duplicates=keep_duplicates, thresholds=thresholds,
                                strategy_params=StrategyParams(simans_a, simans_b), **values)
    return (params, lists) if grid else params


selection_options = group("params", _selection(False), _params)
grid_options = group("selection", _selection(True), functools.partial(_params, grid=True))


def _encode_groups():
    from ..encode.models import SentenceTransformerEncoder
    from ..inputs.tables import Columns

    return (group("columns", fields(Columns), Columns, panel="Input and output"),
            group("model_settings", fields(SentenceTransformerEncoder), lambda **settings: settings,
                  panel="Model and encoding"))


columns_options, model_options = _encode_groups()
