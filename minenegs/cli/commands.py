"""The commands: parse, one library call, render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import command
from .options import (Force, PoolArg, calibration_options, columns_options, encoding_options, grid_options,
                      judging_options, model_options, output_options, picking_options, pool_options, ray_gpu_options,
                      ray_options, selection_options, shown_options, sources_options, summary_options)


def _negatives(summary: dict, out: dict, shown) -> None:
    from ..api import check_coverage
    from ..report.console import show_negatives

    show_negatives(summary, out["output"], out["fmt"], shown)
    check_coverage(summary, out["min_coverage"])


@command(summary_options, columns_options, sources_options, encoding_options, model_options, ray_gpu_options,
         examples="""
minenegs encode data/scifact --split train -o runs/emb
minenegs encode pairs.jsonl --query-column question --positive-column answer -o runs/emb
minenegs encode data/scifact -o runs/emb-e5 --model intfloat/e5-base-v2 --query-prompt "query: " --corpus-prompt "passage: "
""")
def encode(
    data: Annotated[Optional[Path], typer.Argument(help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/), or pairs (query and positive texts): a file, or a Hugging Face dataset (a save_to_disk folder, an .arrow file, a folder of .parquet files).", show_default=False)] = None,
    columns=None, sources=None, encoding=None, model_settings=None, ray=None, shown=None,
) -> None:
    """Encode a corpus and its queries into an embeddings folder, reusing cached chunks."""
    from ..api import encode as run
    from ..report.console import show_summary

    summary = run(data, columns=columns, ray=ray, progress=shown.bars, **sources, **encoding, **model_settings)
    show_summary(f"encoded -> {encoding['output']}", summary, shown)


@command(shown_options, selection_options, judging_options, pool_options, ray_options, output_options,
         picking_options, examples="""
minenegs mine runs/emb -o train.parquet
minenegs mine runs/emb -o train.parquet --strategy simans --num-negatives 15 --relative-margin 0.05
minenegs mine runs/emb -o train.parquet --max-leak 0.1 --pool runs/pool
""")
def mine(
    embeddings: Annotated[Path, typer.Argument(help="An embeddings folder made by `minenegs encode`.")],
    params=None, judging=None, pool_params=None, ray=None, out=None, calibration=None, shown=None,
    pool: Annotated[Optional[Path], typer.Option(rich_help_panel="Retrieval and index", help="Keep the candidate pool in this folder (for `minenegs filter`) [default: under the embeddings folder].", show_default=False)] = None,
) -> None:
    """Retrieve candidates (once; the pool is kept for re-mining) and write each query's negatives."""
    from ..api import mine as run

    _negatives(run(embeddings, params=params, pool_params=pool_params, pool=pool, judging=judging, ray=ray,
                   progress=shown.bars, **calibration, **out), out, shown)


@command(shown_options, selection_options, judging_options, output_options, name="filter", examples="""
minenegs filter runs/pool -o train.parquet --relative-margin 0.05
minenegs filter runs/pool -o train.parquet --cross-encoder cross-encoder/ms-marco-MiniLM-L6-v2 --ce-max 0.9
minenegs filter runs/pool -o - --format flag-jsonl --max-positive-similarity 0.6 | head
""")
def filter_(pool: PoolArg, params=None, judging=None, out=None, shown=None) -> None:
    """Remove likely false negatives from a candidate pool and write training rows."""
    from ..api import filter as run

    _negatives(run(pool, params=params, judging=judging, progress=shown.bars, **out), out, shown)


@command(summary_options, name="inspect", examples="""
minenegs inspect runs/pool
minenegs inspect train.parquet --plot scores.png
minenegs inspect train.parquet --json | jq .negatives
""")
def inspect_(
    path: Annotated[Path, typer.Argument(help="A pool folder or an output file (.parquet, .jsonl).")],
    plot: Annotated[Optional[Path], typer.Option(rich_help_panel="Input and output", help="Write a PNG histogram of positive vs negative scores.", show_default=False)] = None,
    shown=None,
) -> None:
    """Score statistics of a candidate pool or an output file."""
    from ..api import inspect as run
    from ..report.console import show_summary

    show_summary(f"inspect {path}", run(path, plot), shown)


@command(summary_options, grid_options, judging_options, name="sweep", examples="""
minenegs sweep runs/pool --relative-margin 0,0.02,0.05,0.1
minenegs sweep runs/pool --strategy top,simans --max-positive-similarity off,0.7,0.6 --json
""")
def sweep_(pool: PoolArg, selection=None, judging=None, shown=None) -> None:
    """Negatives kept per query and queries left short for each setting (lists to try), from the pool alone."""
    from ..api import sweep as run
    from ..report.console import show_table

    params, grid = selection
    show_table(f"sweep {pool} ({params.num_negatives} negatives)",
               run(pool, params, grid, judging=judging, progress=shown.bars), shown)


@command(summary_options, grid_options, judging_options, calibration_options, name="calibrate", examples="""
minenegs calibrate runs/pool
minenegs calibrate runs/pool --max-leak 0.1 --recipe calibrated.toml
minenegs calibrate runs/pool --range-min 0,10,30 --max-positive-similarity off,0.7 --plot leak.png
""")
def calibrate_(pool: PoolArg, selection=None, judging=None, calibration=None, shown=None, force: Force = False) -> None:
    """Estimate each setting's false-negative (leak) rate from your own labels: hold one positive out at a time
    and count how often it is handed out as a negative. Without lists, tries a default grid."""
    from ..api import calibrate as run
    from ..report.console import show_calibration

    params, grid = selection
    info = run(pool, params, grid or None, judging=judging, force=force, progress=shown.bars, seed=params.seed,
               **calibration)
    show_calibration(info, pool, shown)


@command(summary_options, examples="""
minenegs run configs/default.toml
minenegs run configs/simans-strict.toml --set mine.num_negatives=10 --force
""")
def run(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(help="A TOML recipe (see configs/).")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a key: section.key=value (repeatable).", show_default=False)] = None,
    shown=None, force: Force = False,
) -> None:
    """Run a whole recipe: encode, then mine (with its filters), from one TOML file."""
    from ..config import recipe_commands

    for command, args in recipe_commands(ctx.parent.command, ctx, config, set_ or [], force, shown.quiet, shown.json):
        with command.make_context(command.name, args, parent=ctx) as sub:
            command.invoke(sub)
