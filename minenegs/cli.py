"""The ``minenegs`` command line: thin commands over the library, errors handled in one place."""

from __future__ import annotations

import functools
import inspect
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from typer.core import TyperGroup

from . import __version__, defaults
from .errors import EXIT_INTERRUPTED, MinenegsError

DEBUG_ENV = "MINENEGS_DEBUG"
# typer parses with its own copy of click: its usage errors are the bases of typer.BadParameter
_USAGE_ERRORS = tuple(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError") + (click.UsageError,)


class _Group(TyperGroup):
    """Turns library errors into one line on stderr and their exit status; tracebacks only with --debug."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except MinenegsError as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            click.echo(f"minenegs: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except _USAGE_ERRORS as exc:  # a bad option value or a missing argument: one line too
            if type(exc).__name__ == "NoArgsIsHelpError":
                raise
            click.echo(f"minenegs: error: {exc.format_message()} (see minenegs {ctx.invoked_subcommand or ''} --help)",
                       err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("minenegs: interrupted; finished work is cached, outputs are unchanged", err=True)
            ctx.exit(EXIT_INTERRUPTED)


app = typer.Typer(cls=_Group, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Mine hard negatives for training retrieval and embedding models.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"minenegs {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help=f"Show tracebacks (or set {DEBUG_ENV}=1).")] = False,
    config: Annotated[Optional[Path], typer.Option("--config", help="A TOML recipe whose [encode]/[mine] sections set the defaults; flags override it.", show_default=False)] = None,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"
    if config is not None:
        from .config import load_config, section_defaults

        group = ctx.command
        ctx.default_map = {name: section_defaults(group.get_command(ctx, name), values, str(config))
                           for name, values in load_config(config).items()}


# -- reusable option aliases ---------------------------------------------------------------------
DataArg = Annotated[Optional[Path], typer.Argument(
    help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/), or pairs (query and positive texts): a file, or a "
    "Hugging Face dataset (a save_to_disk folder, an .arrow file, a folder of .parquet files).",
    show_default=False)]
SplitOpt = Annotated[str, typer.Option("--split", help="Qrels split of a BEIR folder.")]
CorpusOpt = Annotated[Optional[Path], typer.Option("--corpus", help="Corpus file (JSONL, CSV, TSV, Parquet).")]
QueriesOpt = Annotated[Optional[Path], typer.Option("--queries", help="Queries file.")]
QrelsOpt = Annotated[Optional[Path], typer.Option("--qrels", help="Qrels file: BEIR TSV, TREC, or a table.")]
IdColumnOpt = Annotated[Optional[str], typer.Option("--id-column", help="Id column of corpus and queries.")]
TextColumnOpt = Annotated[Optional[str], typer.Option("--text-column", help="Text column of corpus and queries.")]
TitleColumnOpt = Annotated[Optional[str], typer.Option("--title-column", help="Title column of the corpus.")]
QueryColumnOpt = Annotated[Optional[str], typer.Option("--query-column", help="Query column of a pair file.")]
PositiveColumnOpt = Annotated[Optional[str], typer.Option("--positive-column", help="Positive column of a pair file.")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Output path (a folder for encode, a file for mine and filter; NAME.arrow: a Hugging Face dataset folder).", show_default=False)]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="sentence-transformers model name or folder [default: $MINENEGS_MODEL, else the bundled "
    "all-MiniLM-L6-v2].", show_default=False)]
CacheDirOpt = Annotated[Optional[Path], typer.Option(
    "--cache-dir", help="Embedding cache [default: $MINENEGS_CACHE, else ~/.cache/minenegs].", show_default=False)]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing output.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")]
RayOpt = Annotated[Optional[str], typer.Option(
    "--ray", help="Run on Ray (pip install 'minenegs[ray]'): local (start Ray on this machine), auto (the cluster this "
    "machine is part of), HOST:PORT or ray://HOST:PORT.", show_default=False)]
RayWorkersOpt = Annotated[int, typer.Option("--ray-workers", help="Ray workers [default: one per --ray-gpus GPUs if set, else one per --ray-cpus CPUs of the cluster].", min=0, show_default=False)]
RayCpusOpt = Annotated[float, typer.Option("--ray-cpus", help="CPUs per Ray worker.")]


def _ray_settings(address: str | None, workers: int, cpus: float, gpus: float = 0.0):
    """The Ray settings, or None to run here; a Ray option without --ray is an error, not ignored."""
    from .errors import InputError

    if address is None:
        if workers or cpus != 1.0 or gpus:
            raise InputError("--ray-workers, --ray-cpus and --ray-gpus need --ray ADDRESS")
        return None
    from .cluster import RaySettings, probe

    settings = RaySettings(address, workers, cpus, gpus)
    probe(address)  # before any input is read
    return settings


@app.command()
def encode(
    data: DataArg = None,
    output: OutputOpt = ...,
    split: SplitOpt = "train",
    corpus: CorpusOpt = None,
    queries: QueriesOpt = None,
    qrels: QrelsOpt = None,
    id_column: IdColumnOpt = None,
    text_column: TextColumnOpt = None,
    title_column: TitleColumnOpt = None,
    query_column: QueryColumnOpt = None,
    positive_column: PositiveColumnOpt = None,
    model: ModelOpt = None,
    precision: Annotated[str, typer.Option(help="auto (bf16 where the hardware has it), fp32 or bf16.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.", min=1)] = 32,
    max_seq_length: Annotated[Optional[int], typer.Option(help="Truncate texts to this many tokens [default: the model's].", show_default=False, min=1)] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1, ... [default: the best available].", show_default=False)] = None,
    query_prompt: Annotated[Optional[str], typer.Option(help="Prefix for queries, e.g. 'query: '.")] = None,
    corpus_prompt: Annotated[Optional[str], typer.Option(help="Prefix for documents, e.g. 'passage: '.")] = None,
    normalize: Annotated[bool, typer.Option(help="Store unit-length vectors (cosine scores).")] = True,
    chunk_size: Annotated[int, typer.Option(help="Texts per cached chunk (the unit of resume).", min=1)] = 1024,
    dtype: Annotated[str, typer.Option(help="float32, or float16: half the disk and memory, scores within about 1e-3 (see the README's sizing table).")] = "float32",
    cache_dir: CacheDirOpt = None,
    ray: RayOpt = None, ray_workers: RayWorkersOpt = 0, ray_cpus: RayCpusOpt = 1.0,
    ray_gpus: Annotated[float, typer.Option("--ray-gpus", help="GPUs per Ray worker (model actors on GPUs).")] = 0.0,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Encode a corpus and its queries into an embeddings folder, reusing cached chunks."""
    from .cache import default_cache_dir
    from .dataset import Columns, load_dataset
    from .embeddings import encode_dataset
    from .models import SentenceTransformerEncoder
    from .report import progress_bar, show_summary

    settings = _ray_settings(ray, ray_workers, ray_cpus, ray_gpus)
    columns = Columns(id_column, text_column, title_column, query_column, positive_column)
    dataset = load_dataset(data, split=split, corpus=corpus, queries=queries, qrels=qrels, columns=columns)
    cache = cache_dir or default_cache_dir()
    if device is None and ray_gpus:  # GPU actors: the model goes on their GPU (and auto precision is bf16)
        device = "cuda"
    encoder = SentenceTransformerEncoder(model, device=device, precision=precision, max_seq_length=max_seq_length,
                                         batch_size=batch_size, fingerprint_memo=cache / "fingerprints.json")
    with progress_bar("encoding", quiet or json_) as progress:
        summary = encode_dataset(dataset, output, encoder, cache_dir=cache, query_prompt=query_prompt,
                                 corpus_prompt=corpus_prompt, normalize=normalize, chunk_size=chunk_size,
                                 force=force, progress=progress, dtype=dtype, ray=settings)
    show_summary(f"encoded -> {output}", summary.to_dict(), quiet=quiet, as_json=json_)


# -- selection options, declared once for `mine`, `filter`, `sweep` and `calibrate` -------------------
FormatOpt = Annotated[str, typer.Option("--format", help="triplet, n-tuple, labeled-list, ids or flag-jsonl.")]
ScoresOpt = Annotated[bool, typer.Option("--scores", help="Add the positives' and negatives' scores.")]
PreviewOpt = Annotated[int, typer.Option("--preview", help="Show this many output rows when done.", min=0)]
MinCoverageOpt = Annotated[Optional[float], typer.Option("--min-coverage", help="Exit 3 unless this share of queries got all their negatives (e.g. 0.95).", show_default=False)]
CrossEncoderOpt = Annotated[Optional[str], typer.Option("--cross-encoder", help="CrossEncoder name or folder: re-scores candidates (cached in the pool).", show_default=False)]
BatchOrderOpt = Annotated[str, typer.Option("--batch-order", help="pool (the pool's query order) or clusters: blocks of --batch-size rows from one query cluster (pool mined with --query-clusters), blocks shuffled with --seed, no anchor or positive text twice in a block. Train without reshuffling (README).")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", help="Rows per block with --batch-order clusters: the trainer's batch size.", min=1)]
CeBatchOpt = Annotated[int, typer.Option("--ce-batch-size", help="Pairs per cross-encoder batch (batches span queries).", min=1)]

# name -> (flag, type, default, help); `strategy` and `range_min` can also be grids in sweep and calibrate.
_BASE_OPTIONS = {
    "strategy": ("--strategy", str, defaults.STRATEGY, "top, random or simans."),
    "num_negatives": ("--num-negatives", int, defaults.NUM_NEGATIVES, "Negatives per query."),
    "range_min": ("--range-min", int, 0, "Skip this many top original ranks."),
    "range_max": ("--range-max", Optional[int], None, "Consider ranks up to this one [default: all]."),
    "seed": ("--seed", int, 0, "Seed for random and simans."),
    "simans_a": ("--simans-a", float, 100.0, "SimANS sharpness a."),
    "simans_b": ("--simans-b", float, -0.05, "SimANS offset b (negative: below the positive)."),
    "keep_duplicates": ("--keep-duplicates", bool, False, "Keep candidates similar to positives: no normalised-text and no --dup-threshold filter, and no --max-positive-similarity unless given."),
    "ce_depth": ("--ce-depth", int, 30, "Re-score candidates up to this original rank."),
}
# filter name -> (flag, help); each is one number in mine/filter and a list of values to try in sweep/calibrate.
_THRESHOLD_OPTIONS = {
    "absolute_margin": ("--absolute-margin", "Drop s + m > p."),
    "relative_margin": ("--relative-margin", "Drop s > p - |p|*m (0.05 = TopK-PercPos 95%)."),
    "max_score": ("--max-score", "Drop s > t."),
    "min_score": ("--min-score", "Drop s < t."),
    "dup_threshold": ("--dup-threshold", f"Drop candidates with cosine >= t to a positive [default: {defaults.DUP_THRESHOLD}]."),
    "max_positive_similarity": ("--max-positive-similarity", f"Drop candidates with cosine >= t to a positive, a guard below near-duplicates counted apart [default: {defaults.MAX_POSITIVE_SIMILARITY}; 1: off]."),
    "ce_max": ("--ce-max", "Drop candidates whose cross-encoder sigmoid score is above t."),
    "promote": ("--promote", "Write candidates whose cross-encoder sigmoid score is above t as positives."),
}
_GRID_FIELDS = ("strategy", "range_min")
_INT_MIN = {"num_negatives": 1, "range_min": 0, "range_max": 1, "ce_depth": 1}  # checked by the parser


def _options(grid: bool) -> list[inspect.Parameter]:
    out = []
    for name, (flag, kind, default, help_) in _BASE_OPTIONS.items():
        if grid and name in _GRID_FIELDS:
            kind, default, help_ = Optional[str], None, f"{help_} A comma-separated list to try."
        bounds = {"min": _INT_MIN[name]} if name in _INT_MIN and kind is not Optional[str] else {}
        out.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[
            kind, typer.Option(flag, help=help_, show_default=default is not None and kind is not bool, **bounds)]))
    for name, (flag, help_) in _THRESHOLD_OPTIONS.items():
        kind, help_ = (Optional[str], f"Values to try, comma-separated ('off' for none). {help_}") if grid \
            else (Optional[float], help_)
        out.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                     annotation=Annotated[kind, typer.Option(flag, help=help_, show_default=False)]))
    return out


def _values(flag: str, text: str, parse) -> list:
    from .errors import InputError

    try:
        values = [None if x.strip().lower() == "off" else parse(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{flag} {text}: give comma-separated values, e.g. 0,0.02,0.05") from None
    if not values:
        raise InputError(f"{flag} {text!r}: the grid is empty; give values to try")
    return values


def _mine_params(options: dict, thresholds: dict):
    from .errors import InputError
    from .mine import MineParams
    from .strategies import StrategyParams

    keep, dup, guard = (options["keep_duplicates"], thresholds.get("dup_threshold"),
                        thresholds.get("max_positive_similarity"))
    if keep and dup is not None:
        raise InputError("--keep-duplicates turns the duplicate filters off: give it or --dup-threshold, not both")
    thresholds = {**thresholds, "duplicate_text": None if keep else 1.0,
                  "dup_threshold": None if keep else (defaults.DUP_THRESHOLD if dup is None else dup),
                  "max_positive_similarity": guard if guard is not None or keep else defaults.MAX_POSITIVE_SIMILARITY}
    return MineParams(options["strategy"], options["num_negatives"], options["range_min"], options["range_max"],
                      options["seed"], StrategyParams(options["simans_a"], options["simans_b"]), thresholds,
                      options["ce_depth"])


def selection_options(grid: bool = False):
    """Give a command every selection option; it receives them as ``params`` (a ``MineParams``) and, with
    ``grid``, the lists to try as ``grid`` (setting name -> values, only those given)."""

    def decorate(func):
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name not in ("params", "grid")]
        added = _options(grid)

        @functools.wraps(func)
        def command(**kwargs):
            options = {name: kwargs.pop(name) for name in _BASE_OPTIONS}
            thresholds = {name: kwargs.pop(name) for name in _THRESHOLD_OPTIONS}
            if not grid:
                return func(**kwargs, params=_mine_params(options, thresholds))
            lists = {}
            for name in _GRID_FIELDS:
                text, options[name] = options[name], _BASE_OPTIONS[name][2]
                if text is not None:
                    lists[name] = _values(_BASE_OPTIONS[name][0], text, str if name == "strategy" else int)
            for name, text in thresholds.items():
                if text is not None:
                    lists[name] = _values(_THRESHOLD_OPTIONS[name][0], text, float)
            base = {name: (lists.get(name) or [None])[0] for name in ("dup_threshold", "max_positive_similarity")}
            return func(**kwargs, params=_mine_params(options, base), grid=lists)

        del command.__wrapped__
        command.__signature__ = signature.replace(parameters=own + added)
        command.__annotations__ = {p.name: p.annotation for p in own + added}
        return command

    return decorate


def _finish(summary: dict, output: Path, fmt: str, preview: int, quiet: bool, json_: bool,
            min_coverage: Optional[float]) -> None:
    from .artifacts import is_stdout
    from .report import show_rows, show_summary
    from .stages import check_coverage

    to_stdout = is_stdout(output)  # stdout carries the rows: the summary goes to stderr
    show_summary(f"negatives -> {output}", summary, quiet=quiet, as_json=json_, stream=sys.stderr if to_stdout else None)
    if fmt != "flag-jsonl" and not to_stdout:
        show_rows(output, preview, quiet=quiet or json_)
    check_coverage(summary, min_coverage)


MaxLeakOpt = Annotated[Optional[float], typer.Option("--max-leak", help="Calibrate first (see `calibrate`) and mine with the hardest setting of its default grid whose leak upper bound is at most this share.", show_default=False)]
MaxShortOpt = Annotated[float, typer.Option("--max-short", help="With --max-leak: the largest share of queries a picked setting may leave short.")]


@app.command()
@selection_options()
def mine(
    embeddings: Annotated[Path, typer.Argument(help="An embeddings folder made by `minenegs encode`.")],
    output: OutputOpt,
    params=None,
    cross_encoder: CrossEncoderOpt = None, ce_batch_size: CeBatchOpt = 64,
    max_leak: MaxLeakOpt = None, max_short: MaxShortOpt = 0.0,
    depth: Annotated[int, typer.Option(help="Candidates retrieved per query.", min=1)] = 100,
    retriever: Annotated[str, typer.Option(help="dense, bm25 or hybrid (union fused by reciprocal rank).")] = "dense",
    index: Annotated[str, typer.Option(help="auto (by corpus size: flat to 100k documents, IVF to 1.5M, IVF-PQ above), flat (exact), ivf or hnsw.")] = "auto",
    nlist: Annotated[Optional[int], typer.Option(help="IVF cells [default: min(2*sqrt(docs), docs/40)].", show_default=False, min=1)] = None,
    nprobe: Annotated[Optional[int], typer.Option(help="IVF cells searched [default: tuned for recall@depth >= 0.96 on a sample of the queries].", show_default=False, min=1)] = None,
    pq_m: Annotated[int, typer.Option(help="IVF-PQ sub-quantisers (0: IVF-Flat; auto above 1.5M documents: dim/8).", min=0)] = 0,
    refine: Annotated[int, typer.Option(help="IVF-PQ: fetch refine x depth by code, keep the depth best by exact score.", min=1)] = 4,
    hnsw_m: Annotated[int, typer.Option(help="HNSW links per node.", min=2)] = 32,
    ef_search: Annotated[int, typer.Option(help="HNSW search breadth.", min=1)] = 128,
    query_clusters: Annotated[int, typer.Option(help="k-means clusters of queries, written as cluster_id (0: off).", min=0)] = 0,
    pool: Annotated[Optional[Path], typer.Option(help="Keep the candidate pool in this folder (for `minenegs filter`) [default: under the embeddings folder].", show_default=False)] = None,
    previous_pool: Annotated[Optional[list[Path]], typer.Option("--previous-pool", help="A pool of an earlier round (e.g. mined before fine-tuning; repeatable): its candidates join this round's, all scored and ranked by these embeddings.", show_default=False)] = None,
    ray: RayOpt = None, ray_workers: RayWorkersOpt = 0, ray_cpus: RayCpusOpt = 1.0,
    fmt: FormatOpt = "n-tuple", scores: ScoresOpt = False, preview: PreviewOpt = 3,
    batch_order: BatchOrderOpt = "pool", batch_size: BatchSizeOpt = 32,
    min_coverage: MinCoverageOpt = None, force: ForceOpt = False, quiet: QuietOpt = False, json_: JsonOpt = False,
) -> None:
    """Retrieve candidates (once; the pool is kept for re-mining) and write each query's negatives."""
    from .artifacts import check_output
    from .batching import check_order
    from .embeddings import Embeddings
    from .index import IndexParams
    from .pool import PoolParams, build_pool
    from .report import progress_bar
    from .calibrate import check_bounds
    from .stages import calibrated_params, negatives_from_pool, validate_coverage

    validate_coverage(min_coverage)
    check_bounds(max_leak, max_short)
    check_output(output, force)
    check_order(batch_order, batch_size, fmt, query_clusters > 0)
    settings = _ray_settings(ray, ray_workers, ray_cpus)
    pool_params = PoolParams(depth, retriever, IndexParams(index, nlist, nprobe, pq_m, hnsw_m, ef_search=ef_search,
                                                             refine=refine),
                             query_clusters=query_clusters, previous=tuple(map(str, previous_pool or ())))
    with progress_bar("retrieving", quiet or json_) as progress:
        pool_dir = build_pool(Embeddings(embeddings), pool_params, progress=progress, out=pool, force=force,
                              ray=settings)
    calibrated = None
    if max_leak is not None:
        params, calibrated = calibrated_params(pool_dir, params, max_leak, max_short, cross_encoder=cross_encoder,
                                               ce_batch_size=ce_batch_size)
    with progress_bar("cross-encoder", quiet or json_) as progress:
        summary = negatives_from_pool(pool_dir, output, params, fmt=fmt, scores=scores, force=force,
                                      cross_encoder=cross_encoder, ce_batch_size=ce_batch_size, progress=progress,
                                      batch_order=batch_order, batch_size=batch_size)
    if calibrated is not None:
        summary["calibrated"] = calibrated
    _finish(summary, output, fmt, preview, quiet, json_, min_coverage)


@app.command("filter")
@selection_options()
def filter_(
    pool: Annotated[Path, typer.Argument(help="A candidate pool folder (see the `pool` line of `mine`).")],
    output: OutputOpt,
    params=None,
    cross_encoder: CrossEncoderOpt = None, ce_batch_size: CeBatchOpt = 64,
    fmt: FormatOpt = "n-tuple", scores: ScoresOpt = False, preview: PreviewOpt = 3,
    batch_order: BatchOrderOpt = "pool", batch_size: BatchSizeOpt = 32,
    min_coverage: MinCoverageOpt = None, force: ForceOpt = False, quiet: QuietOpt = False, json_: JsonOpt = False,
) -> None:
    """Remove likely false negatives from a candidate pool and write training rows."""
    from .report import progress_bar
    from .stages import negatives_from_pool, validate_coverage

    validate_coverage(min_coverage)
    with progress_bar("cross-encoder", quiet or json_) as progress:
        summary = negatives_from_pool(pool, output, params, fmt=fmt, scores=scores, force=force,
                                      cross_encoder=cross_encoder, ce_batch_size=ce_batch_size, progress=progress,
                                      batch_order=batch_order, batch_size=batch_size)
    _finish(summary, output, fmt, preview, quiet, json_, min_coverage)


@app.command("inspect")
def inspect_(
    path: Annotated[Path, typer.Argument(help="A pool folder or an output file (.parquet, .jsonl).")],
    plot: Annotated[Optional[Path], typer.Option(help="Write a PNG histogram of positive vs negative scores.", show_default=False)] = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Score statistics of a candidate pool or an output file."""
    from .report import show_summary
    from .stats import inspect_path, plot_histogram

    info, pos, neg = inspect_path(path)
    if plot is not None:
        plot_histogram(pos, neg, plot, title=str(path))
        info["plot"] = str(plot)
    show_summary(f"inspect {path}", info, quiet=quiet, as_json=json_)


def _table(title: str, rows: list[dict]) -> None:
    from rich.table import Table

    from .report import stderr_console

    table = Table(title=title, title_justify="left")
    for column in rows[0]:
        table.add_column(column.replace("_", " "), justify="right")
    for row in rows:
        table.add_row(*("off" if v is None else f"{v:g}" if isinstance(v, float) else str(v) for v in row.values()))
    stderr_console().print(table)


@app.command("sweep")
@selection_options(grid=True)
def sweep_(
    pool: Annotated[Path, typer.Argument(help="A candidate pool folder.")],
    params=None, grid=None,
    cross_encoder: CrossEncoderOpt = None, ce_batch_size: CeBatchOpt = 64,
    quiet: QuietOpt = False, json_: JsonOpt = False,
) -> None:
    """Negatives kept per query and queries left short for each setting (lists to try), from the pool alone."""
    import json as _json

    from .errors import InputError
    from .stages import sweep_pool

    if not grid:
        raise InputError("give at least one list to sweep, e.g. --relative-margin 0,0.02,0.05,0.1")
    rows = sweep_pool(pool, params, grid, cross_encoder=cross_encoder, ce_batch_size=ce_batch_size)
    if json_:
        typer.echo(_json.dumps(rows))
    elif not quiet:
        _table(f"sweep {pool} ({params.num_negatives} negatives)", rows)


@app.command("calibrate")
@selection_options(grid=True)
def calibrate_(
    pool: Annotated[Path, typer.Argument(help="A candidate pool folder (see the `pool` line of `mine`).")],
    params=None, grid=None,
    cross_encoder: CrossEncoderOpt = None, ce_batch_size: CeBatchOpt = 64,
    max_leak: Annotated[Optional[float], typer.Option("--max-leak", help="Pick the hardest setting whose leak upper bound is at most this share, and write it as a recipe.", show_default=False)] = None,
    max_short: MaxShortOpt = 0.0,
    recipe: Annotated[Path, typer.Option("--recipe", help="Where --max-leak writes the picked setting (TOML, for `run` and --config).")] = Path("calibrated.toml"),
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write a PNG of leak rate against hardness.", show_default=False)] = None,
    max_holdouts: Annotated[int, typer.Option("--max-holdouts", help="Held-out positives to use at most (a seeded sample beyond).", min=1)] = 10_000,
    min_queries: Annotated[int, typer.Option("--min-queries", help="Queries with two or more positives needed for an estimate.", min=1)] = 20,
    force: ForceOpt = False, quiet: QuietOpt = False, json_: JsonOpt = False,
) -> None:
    """Estimate each setting's false-negative (leak) rate from your own labels: hold one positive out at a time
    and count how often it is handed out as a negative. Without lists, tries a default grid."""
    import json as _json

    from .artifacts import check_output, read_manifest, write_text_atomic
    from .calibrate import check_bounds, pick, recipe_toml, summary
    from .stages import calibrate_pool
    from .stats import plot_frontier

    check_bounds(max_leak, max_short)
    if max_leak is not None:
        check_output(recipe, force)
    rows = calibrate_pool(pool, params, grid or None, cross_encoder=cross_encoder, ce_batch_size=ce_batch_size,
                          max_holdouts=max_holdouts, min_queries=min_queries, seed=params.seed)
    info = summary(rows)
    chosen = pick(rows, max_leak, max_short) if max_leak is not None else None
    if plot is not None:
        plot_frontier({"settings": [(r.mean_rank, r.estimate.rate, _short(r.setting)) for r in rows]}, plot,
                      title=f"calibrate {pool}: {info['holdouts']} held-out positives, {info['queries']} queries")
    if chosen is not None:
        write_text_atomic(recipe, recipe_toml(chosen, str(pool), read_manifest(pool, "pool")))
        info["picked"] = {**chosen.to_dict(), "recipe": str(recipe)}
    if json_:
        typer.echo(_json.dumps(info))
        return
    if quiet:
        return
    _table(f"calibrate {pool}: {info['holdouts']} held-out positives from {info['queries']} queries "
           "(leak low/high: 95 % interval)", info["settings"])
    if chosen is not None:
        typer.echo(f"picked {_short(chosen.setting)}: leak {chosen.estimate.rate:.3f} "
                   f"(<= {chosen.estimate.high:.3f}), mean rank {chosen.mean_rank:.1f} -> {recipe}", err=True)


def _short(setting: dict) -> str:
    return " ".join(f"{k}={'off' if v is None else v}" for k, v in setting.items())


@app.command()
def run(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(help="A TOML recipe (see configs/).")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a key: section.key=value (repeatable).", show_default=False)] = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Run a whole recipe: encode, then mine (with its filters), from one TOML file."""
    from .config import apply_overrides, load_config, section_args
    from .errors import InputError

    recipe = apply_overrides(load_config(config), set_ or [])
    if "mine" in recipe and "encode" in recipe and "embeddings" not in recipe["mine"]:
        recipe["mine"]["embeddings"] = recipe["encode"].get("output", "")
    group = ctx.parent.command
    stages = []
    for name in (n for n in ("encode", "mine") if n in recipe):  # check every section before any work
        section = {**recipe[name], **({"force": True} if force else {}), **({"quiet": True} if quiet else {}),
                   **({"json": True} if json_ else {})}
        command = group.get_command(ctx, name)
        stages.append((name, command, section_args(command, section, f"{config} [{name}]")))
    if not stages:
        raise InputError(f"{config}: has neither an [encode] nor a [mine] section")
    for name, command, args in stages:
        with command.make_context(name, args, parent=ctx) as sub:
            command.invoke(sub)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="minenegs")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
