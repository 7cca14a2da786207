"""Options, declared once: derived from the library's settings records (:mod:`minenegs.settings`) and the filter
registry; a group of options reaches its command as one object, built by the library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .. import recipe
from ..distributed.runner import RaySettings
from ..encode.embeddings import EncodeSettings
from ..encode.models import SentenceTransformerEncoder
from ..inputs.dataset import Sources
from ..inputs.tables import Columns
from ..report.console import Shown
from ..retrieve.index import IndexParams
from ..retrieve.search import PoolParams
from ..select.calibrate import Calibration
from ..select.filters import REGISTRY
from ..select.judges import JudgeOptions, JudgeSpecs
from ..select.judging import Judging
from ..select.params import MineParams
from ..select.strategies import StrategyParams
from ..select.sweep import grid_of
from ..settings import fields, group, of, opt
from ..write.outputs import Writing

Force = fields(Writing)["force"][0]  # calibrate's and run's --force: the one mine and filter take
PoolArg = Annotated[Path, typer.Argument(help="A candidate pool folder (see the `pool` line of `mine`).")]


def _selection(grid: bool) -> dict[str, tuple[Any, Any]]:
    """``MineParams``' and ``StrategyParams``' fields, ``--keep-duplicates``, and one option per filter of the
    registry (with its default in the recipe); with ``grid``, lists to try where the grid takes them."""
    out = {**fields(MineParams, grid=grid), **fields(StrategyParams), "keep_duplicates": opt(bool, "--keep-duplicates", panel="Filters", help="Keep candidates similar to positives: no normalised-text and no --dup-threshold filter, and no --max-positive-similarity unless given.", default=False)}
    for f in (f for f in REGISTRY.values() if f.flag):
        default = f" [default: {recipe.THRESHOLDS[f.name]}]" if f.name in recipe.THRESHOLDS else ""
        out[f.name] = opt(Optional[str], f.flag, help=f"Values to try, comma-separated ('off' for none). {f.help}",
                          panel="Filters") if grid else opt(Optional[float], f.flag, help=f"{f.help}{default}", panel="Filters")
    return out


settings = lambda **values: values  # noqa: E731  (a group passed on to the library call as keywords)
RAY, CALIBRATION = fields(RaySettings, "ray_"), fields(Calibration)
ray_options = group("ray", {k: v for k, v in RAY.items() if k != "ray_gpus"}, RaySettings.of, "Ray", "ray_")
ray_gpu_options = group("ray", RAY, RaySettings.of, "Ray", "ray_")
judging_options = group("judging", {**fields(JudgeSpecs), **fields(Judging, "judge_"), **fields(JudgeOptions, "judge_")},
                        Judging.of, "Judges", "judge_")
selection_options = group("params", _selection(False), MineParams.of)
grid_options = group("selection", _selection(True), grid_of)
pool_options = group("pool_params", {**fields(PoolParams), **fields(IndexParams)}, PoolParams.flat, "Retrieval and index")
columns_options, sources_options = of(Columns, "Input and output"), of(Sources, "Input and output", build=settings)
encoding_options = of(EncodeSettings, "Model and encoding", "encoding", settings)
model_options = of(SentenceTransformerEncoder, "Model and encoding", "model_settings", settings)
output_options = of(Writing, "Input and output", "out", settings)
shown_options = of(Shown)
summary_options = group("shown", {k: v for k, v in fields(Shown).items() if k != "preview"}, Shown)
calibration_options = group("calibration", CALIBRATION, settings, "Calibration")
picking_options = group("calibration", {k: v for k, v in CALIBRATION.items() if k in ("max_leak", "max_short")}, settings,
                        "Calibration")
