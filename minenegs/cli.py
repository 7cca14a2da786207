"""The ``minenegs`` command line: thin commands over the library, errors handled in one place."""

from __future__ import annotations

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
    help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or a pair file (query and positive texts).",
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
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Output path (a folder for encode, a file for mine and filter).", show_default=False)]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="sentence-transformers model name or folder [default: $MINENEGS_MODEL, else the bundled "
    "all-MiniLM-L6-v2].", show_default=False)]
CacheDirOpt = Annotated[Optional[Path], typer.Option(
    "--cache-dir", help="Embedding cache [default: $MINENEGS_CACHE, else ~/.cache/minenegs].", show_default=False)]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing output.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")]


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
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 32,
    max_seq_length: Annotated[Optional[int], typer.Option(help="Truncate texts to this many tokens [default: the model's].", show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1, ... [default: the best available].", show_default=False)] = None,
    query_prompt: Annotated[Optional[str], typer.Option(help="Prefix for queries, e.g. 'query: '.")] = None,
    corpus_prompt: Annotated[Optional[str], typer.Option(help="Prefix for documents, e.g. 'passage: '.")] = None,
    normalize: Annotated[bool, typer.Option(help="Store unit-length vectors (cosine scores).")] = True,
    chunk_size: Annotated[int, typer.Option(help="Texts per cached chunk (the unit of resume).")] = 1024,
    cache_dir: CacheDirOpt = None,
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

    columns = Columns(id_column, text_column, title_column, query_column, positive_column)
    dataset = load_dataset(data, split=split, corpus=corpus, queries=queries, qrels=qrels, columns=columns)
    cache = cache_dir or default_cache_dir()
    encoder = SentenceTransformerEncoder(model, device=device, precision=precision, max_seq_length=max_seq_length,
                                         batch_size=batch_size, fingerprint_memo=cache / "fingerprints.json")
    with progress_bar("encoding", quiet or json_) as progress:
        summary = encode_dataset(dataset, output, encoder, cache_dir=cache, query_prompt=query_prompt,
                                 corpus_prompt=corpus_prompt, normalize=normalize, chunk_size=chunk_size,
                                 force=force, progress=progress)
    show_summary(f"encoded -> {output}", summary.to_dict(), quiet=quiet, as_json=json_)


# -- selection options shared by `mine` and `filter` ------------------------------------------------
StrategyOpt = Annotated[str, typer.Option("--strategy", help="top, random or simans.")]
NumNegOpt = Annotated[int, typer.Option("--num-negatives", help="Negatives per query.")]
RangeMinOpt = Annotated[int, typer.Option("--range-min", help="Skip this many top original ranks.")]
RangeMaxOpt = Annotated[Optional[int], typer.Option("--range-max", help="Consider ranks up to this one [default: all].", show_default=False)]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for random and simans.")]
SimansAOpt = Annotated[float, typer.Option("--simans-a", help="SimANS sharpness a.")]
SimansBOpt = Annotated[float, typer.Option("--simans-b", help="SimANS offset b (negative: below the positive).")]
AbsMarginOpt = Annotated[Optional[float], typer.Option("--absolute-margin", help="Drop s + m > p.", show_default=False)]
RelMarginOpt = Annotated[Optional[float], typer.Option("--relative-margin", help="Drop s > p - |p|*m (0.05 = TopK-PercPos 95%).", show_default=False)]
MaxScoreOpt = Annotated[Optional[float], typer.Option("--max-score", help="Drop s > t.", show_default=False)]
MinScoreOpt = Annotated[Optional[float], typer.Option("--min-score", help="Drop s < t.", show_default=False)]
DupOpt = Annotated[Optional[float], typer.Option("--dup-threshold", help=f"Drop candidates with cosine >= t to a positive [default: {defaults.DUP_THRESHOLD}].", show_default=False)]
KeepDupOpt = Annotated[bool, typer.Option("--keep-duplicates", help="Keep duplicates of positives: no normalised-text and no --dup-threshold filter.")]
FormatOpt = Annotated[str, typer.Option("--format", help="triplet, n-tuple, labeled-list, ids or flag-jsonl.")]
ScoresOpt = Annotated[bool, typer.Option("--scores", help="Add the positives' and negatives' scores.")]
PreviewOpt = Annotated[int, typer.Option("--preview", help="Show this many output rows when done.")]
MinCoverageOpt = Annotated[Optional[float], typer.Option("--min-coverage", help="Exit 3 unless this share of queries got all their negatives (e.g. 0.95).", show_default=False)]
CrossEncoderOpt = Annotated[Optional[str], typer.Option("--cross-encoder", help="CrossEncoder name or folder: re-scores candidates (cached in the pool).", show_default=False)]
CeDepthOpt = Annotated[int, typer.Option("--ce-depth", help="Re-score candidates up to this original rank.")]
CeMaxOpt = Annotated[Optional[float], typer.Option("--ce-max", help="Drop candidates whose cross-encoder sigmoid score is above t.", show_default=False)]
PromoteOpt = Annotated[Optional[float], typer.Option("--promote", help="Write candidates whose cross-encoder sigmoid score is above t as positives.", show_default=False)]
CeBatchOpt = Annotated[int, typer.Option("--ce-batch-size", help="Pairs per cross-encoder batch (batches span queries).")]


def _mine_params(strategy, num_negatives, range_min, range_max, seed, simans_a, simans_b, absolute_margin,
                 relative_margin, max_score, min_score, dup_threshold, keep_duplicates, ce_depth, ce_max, promote):
    from .errors import InputError
    from .mine import MineParams
    from .strategies import StrategyParams

    if keep_duplicates and dup_threshold is not None:
        raise InputError("--keep-duplicates turns the duplicate filters off: give it or --dup-threshold, not both")
    if not keep_duplicates and dup_threshold is None:
        dup_threshold = defaults.DUP_THRESHOLD
    return MineParams(strategy, num_negatives, range_min, range_max, seed, StrategyParams(simans_a, simans_b),
                      {"absolute_margin": absolute_margin, "relative_margin": relative_margin,
                       "max_score": max_score, "min_score": min_score, "dup_threshold": dup_threshold,
                       "duplicate_text": None if keep_duplicates else 1.0, "ce_max": ce_max, "promote": promote},
                      ce_depth)


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


@app.command()
def mine(
    embeddings: Annotated[Path, typer.Argument(help="An embeddings folder made by `minenegs encode`.")],
    output: OutputOpt,
    strategy: StrategyOpt = defaults.STRATEGY, num_negatives: NumNegOpt = defaults.NUM_NEGATIVES,
    range_min: RangeMinOpt = 0,
    range_max: RangeMaxOpt = None, seed: SeedOpt = 0, simans_a: SimansAOpt = 100.0, simans_b: SimansBOpt = -0.05,
    absolute_margin: AbsMarginOpt = None, relative_margin: RelMarginOpt = None, max_score: MaxScoreOpt = None,
    min_score: MinScoreOpt = None, dup_threshold: DupOpt = None, keep_duplicates: KeepDupOpt = False,
    cross_encoder: CrossEncoderOpt = None, ce_depth: CeDepthOpt = 30, ce_max: CeMaxOpt = None,
    promote: PromoteOpt = None, ce_batch_size: CeBatchOpt = 64,
    depth: Annotated[int, typer.Option(help="Candidates retrieved per query.")] = 100,
    retriever: Annotated[str, typer.Option(help="dense, bm25 or hybrid (union fused by reciprocal rank).")] = "dense",
    index: Annotated[str, typer.Option(help="flat (exact), ivf or hnsw.")] = "flat",
    nlist: Annotated[Optional[int], typer.Option(help="IVF cells [default: min(4*sqrt(docs), docs/39)].", show_default=False)] = None,
    nprobe: Annotated[Optional[int], typer.Option(help="IVF cells searched [default: max(64, nlist/4)].", show_default=False)] = None,
    pq_m: Annotated[int, typer.Option(help="IVF-PQ sub-quantisers (0: IVF-Flat).")] = 0,
    hnsw_m: Annotated[int, typer.Option(help="HNSW links per node.")] = 32,
    ef_search: Annotated[int, typer.Option(help="HNSW search breadth.")] = 128,
    query_clusters: Annotated[int, typer.Option(help="k-means clusters of queries, written as cluster_id (0: off).")] = 0,
    pool: Annotated[Optional[Path], typer.Option(help="Keep the candidate pool in this folder (for `minenegs filter`) [default: under the embeddings folder].", show_default=False)] = None,
    fmt: FormatOpt = "n-tuple", scores: ScoresOpt = False, preview: PreviewOpt = 3,
    min_coverage: MinCoverageOpt = None, force: ForceOpt = False, quiet: QuietOpt = False, json_: JsonOpt = False,
) -> None:
    """Retrieve candidates (once; the pool is kept for re-mining) and write each query's negatives."""
    from .artifacts import check_output
    from .embeddings import Embeddings
    from .index import IndexParams
    from .pool import PoolParams, build_pool
    from .report import progress_bar
    from .stages import negatives_from_pool, validate_coverage

    params = _mine_params(strategy, num_negatives, range_min, range_max, seed, simans_a, simans_b, absolute_margin,
                          relative_margin, max_score, min_score, dup_threshold, keep_duplicates, ce_depth, ce_max, promote)
    validate_coverage(min_coverage)
    check_output(output, force)
    pool_params = PoolParams(depth, retriever, IndexParams(index, nlist, nprobe, pq_m, hnsw_m, ef_search=ef_search),
                             query_clusters=query_clusters)
    with progress_bar("retrieving", quiet or json_) as progress:
        pool_dir = build_pool(Embeddings(embeddings), pool_params, progress=progress, out=pool, force=force)
    with progress_bar("cross-encoder", quiet or json_) as progress:
        summary = negatives_from_pool(pool_dir, output, params, fmt=fmt, scores=scores, force=force,
                                      cross_encoder=cross_encoder, ce_batch_size=ce_batch_size, progress=progress)
    _finish(summary, output, fmt, preview, quiet, json_, min_coverage)


@app.command("filter")
def filter_(
    pool: Annotated[Path, typer.Argument(help="A candidate pool folder (see the `pool` line of `mine`).")],
    output: OutputOpt,
    strategy: StrategyOpt = defaults.STRATEGY, num_negatives: NumNegOpt = defaults.NUM_NEGATIVES,
    range_min: RangeMinOpt = 0,
    range_max: RangeMaxOpt = None, seed: SeedOpt = 0, simans_a: SimansAOpt = 100.0, simans_b: SimansBOpt = -0.05,
    absolute_margin: AbsMarginOpt = None, relative_margin: RelMarginOpt = None, max_score: MaxScoreOpt = None,
    min_score: MinScoreOpt = None, dup_threshold: DupOpt = None, keep_duplicates: KeepDupOpt = False,
    cross_encoder: CrossEncoderOpt = None, ce_depth: CeDepthOpt = 30, ce_max: CeMaxOpt = None,
    promote: PromoteOpt = None, ce_batch_size: CeBatchOpt = 64,
    fmt: FormatOpt = "n-tuple", scores: ScoresOpt = False, preview: PreviewOpt = 3,
    min_coverage: MinCoverageOpt = None, force: ForceOpt = False, quiet: QuietOpt = False, json_: JsonOpt = False,
) -> None:
    """Remove likely false negatives from a candidate pool and write training rows."""
    from .report import progress_bar
    from .stages import negatives_from_pool, validate_coverage

    params = _mine_params(strategy, num_negatives, range_min, range_max, seed, simans_a, simans_b, absolute_margin,
                          relative_margin, max_score, min_score, dup_threshold, keep_duplicates, ce_depth, ce_max, promote)
    validate_coverage(min_coverage)
    with progress_bar("cross-encoder", quiet or json_) as progress:
        summary = negatives_from_pool(pool, output, params, fmt=fmt, scores=scores, force=force,
                                      cross_encoder=cross_encoder, ce_batch_size=ce_batch_size, progress=progress)
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


def _floats(flag: str, text: Optional[str]) -> Optional[list[float]]:
    from .errors import InputError

    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{flag} {text}: give comma-separated numbers, e.g. 0,0.02,0.05") from None


@app.command("sweep")
def sweep_(
    pool: Annotated[Path, typer.Argument(help="A candidate pool folder.")],
    relative_margin: Annotated[Optional[str], typer.Option(help="Values to try, e.g. 0,0.02,0.05,0.1.", show_default=False)] = None,
    absolute_margin: Annotated[Optional[str], typer.Option(help="Values to try.", show_default=False)] = None,
    max_score: Annotated[Optional[str], typer.Option(help="Values to try.", show_default=False)] = None,
    min_score: Annotated[Optional[str], typer.Option(help="Values to try.", show_default=False)] = None,
    dup_threshold: Annotated[Optional[str], typer.Option(help="Values to try.", show_default=False)] = None,
    strategy: StrategyOpt = defaults.STRATEGY, num_negatives: NumNegOpt = defaults.NUM_NEGATIVES,
    range_min: RangeMinOpt = 0,
    range_max: RangeMaxOpt = None, seed: SeedOpt = 0, keep_duplicates: KeepDupOpt = False,
    quiet: QuietOpt = False, json_: JsonOpt = False,
) -> None:
    """Negatives kept per query and queries left short for each threshold setting, from the pool alone."""
    import json as _json

    from rich.table import Table

    from .artifacts import read_manifest
    from .embeddings import Embeddings
    from .errors import InputError
    from .mine import corpus_view
    from .report import stderr_console
    from .sweep import sweep

    grid = {name: values for name, values in (
        ("relative_margin", _floats("--relative-margin", relative_margin)),
        ("absolute_margin", _floats("--absolute-margin", absolute_margin)),
        ("max_score", _floats("--max-score", max_score)), ("min_score", _floats("--min-score", min_score)),
        ("dup_threshold", _floats("--dup-threshold", dup_threshold))) if values}
    if not grid:
        raise InputError("give at least one list to sweep, e.g. --relative-margin 0,0.02,0.05,0.1")
    base = _mine_params(strategy, num_negatives, range_min, range_max, seed, 100.0, -0.05, None, None, None, None,
                        None, keep_duplicates, 30, None, None)
    corpus = corpus_view(Embeddings(read_manifest(pool, "pool")["embeddings"]))
    rows = sweep(pool, base, grid, corpus)
    if json_:
        typer.echo(_json.dumps(rows))
        return
    if quiet:
        return
    table = Table(title=f"sweep {pool} ({strategy}, {num_negatives} negatives)", title_justify="left")
    for column in rows[0]:
        table.add_column(column.replace("_", " "), justify="right")
    for row in rows:
        table.add_row(*(f"{v:g}" if isinstance(v, float) else str(v) for v in row.values()))
    stderr_console().print(table)


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
