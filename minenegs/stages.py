"""Whole stages as single calls, for the CLI and for Python users: pool -> negatives -> output file."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .artifacts import check_output, read_manifest, read_parquet
from .batching import check_order
from .embeddings import Embeddings
from .errors import AcceptanceError, InputError
from .mine import MineParams, Pool, Selection, corpus_view, cross_encoder_pairs, pool_chunks, read_pool_arrays
from .outputs import FORMATS, write_output
from .pool import KIND as POOL_KIND


def _clusters(pool: Path) -> dict[int, int] | None:

    col = read_parquet(pool / "queries.parquet", columns=["cluster_id"]).column("cluster_id")
    if col.null_count == len(col):
        return None
    return dict(enumerate(col.to_pylist()))


CE_FILTERS = ("ce_max", "promote")


class _Opened:
    """A pool folder ready to select from: its manifest, its embeddings, the corpus's vectors and texts, and a
    way to get cross-encoder logits for any of its rows (scored once, cached in the pool)."""

    def __init__(self, pool: Path, params: MineParams, cross_encoder: str | None, ce_batch_size: int,
                 progress: Any, uses_ce: bool | None) -> None:
        self.pool, self.params, self.progress = pool, params, progress
        self.manifest = read_manifest(pool, POOL_KIND)
        self.emb = Embeddings(self.manifest["embeddings"])
        self.corpus = corpus_view(self.emb)
        if uses_ce is None:
            uses_ce = any(params.thresholds.get(k) is not None for k in CE_FILTERS)
        self.scorer = None
        if cross_encoder:
            from .cache import default_cache_dir
            from .rerank import CrossEncoderScorer

            self.scorer = CrossEncoderScorer(cross_encoder, batch_size=ce_batch_size,
                                             memo=default_cache_dir() / "fingerprints.json")
            self.queries = self.emb.table("queries").texts
        elif uses_ce:
            raise InputError("--ce-max and --promote need --cross-encoder NAME_OR_PATH")

    def engine(self, arrays: dict[str, Any]) -> Pool:
        """The selection engine over ``arrays`` (all of the pool, or a chunk of its queries)."""
        logits = None
        if self.scorer is not None:
            from .rerank import cached_logits

            logits = cached_logits(self.pool, self.scorer, cross_encoder_pairs(arrays, self.params),
                                   self.queries.__getitem__, self.corpus.text, self.progress)
        return Pool(arrays, self.corpus, logits)


def open_pool(pool: Path, params: MineParams, cross_encoder: str | None = None, ce_batch_size: int = 64,
              progress: Any = None, uses_ce: bool | None = None) -> tuple[dict[str, Any], Embeddings, Pool]:
    """A pool folder ready to select from, all of it at once (for ``sweep`` and ``calibrate``): its manifest,
    its embeddings and the selection engine (with cross-encoder logits given ``cross_encoder``)."""
    opened = _Opened(pool, params, cross_encoder, ce_batch_size, progress, uses_ce)
    return opened.manifest, opened.emb, opened.engine(read_pool_arrays(pool))


def select_from_pool(pool: Path, params: MineParams, cross_encoder: str | None = None, ce_batch_size: int = 64,
                     progress: Any = None, arrays: dict[str, Any] | None = None) -> tuple[_Opened, Selection]:
    """Each query's negatives under ``params``, selected a chunk of queries at a time
    (:func:`~minenegs.mine.pool_chunks`): every filter and draw is per query, so the result is the same as over
    the whole pool, in memory bounded by a chunk; or over ``arrays``, the whole pool already read
    (:func:`~minenegs.mine.read_pool_arrays`). Returns the opened pool too (manifest, embeddings, corpus)."""
    opened = _Opened(pool, params, cross_encoder, ce_batch_size, progress, None)
    chunks = [arrays] if arrays is not None else pool_chunks(pool)
    return opened, Selection.merge([opened.engine(chunk).selection(params) for chunk in chunks])


def negatives_from_pool(pool: Path | str, output: Path | str, params: MineParams, *, fmt: str = "n-tuple",
                        scores: bool = False, force: bool = False, cross_encoder: str | None = None,
                        ce_batch_size: int = 64, progress: Any = None, batch_order: str = "pool",
                        batch_size: int = 32) -> dict[str, Any]:
    """Select negatives from a pool folder and write them; returns the summary.

    ``batch_order="clusters"`` writes the rows in blocks of ``batch_size`` from one query cluster each, shuffled
    with ``params.seed`` (:mod:`minenegs.batching`); ``"pool"`` keeps the pool's query order.

    The selection is :func:`select_from_pool`'s. With ``cross_encoder`` (a CrossEncoder name or folder),
    candidates up to ``params.ce_depth`` and the positives are scored (cached in the pool) for the ``ce_max`` and ``promote`` thresholds and ``--scores``.
    """
    started = time.perf_counter()
    pool = Path(pool)
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    check_output(Path(output), force)
    read_manifest(pool, POOL_KIND)  # a folder that is not a pool: one line, before anything reads it
    clusters = _clusters(pool)
    check_order(batch_order, batch_size, fmt, clusters is not None)
    opened, selection = select_from_pool(pool, params, cross_encoder, ce_batch_size, progress)
    manifest, emb = opened.manifest, opened.emb
    by_position = None if clusters is None else {i: clusters[int(q)] for i, q in enumerate(selection.query_idx)}
    summary = selection.summary(params.num_negatives)
    used = manifest.get("index_used") or {}  # what was searched, without timings: the output's bytes stay the same
    index = {k: v for k, v in used.items() if k not in ("reused", "build_seconds") and v is not None}
    metadata = {
        "params": {**asdict(params), "format": fmt, "scores": scores,
                   **({"batch_order": batch_order, "batch_size": batch_size} if batch_order != "pool" else {})},
        "pool": {k: manifest.get(k) for k in ("retriever", "depth", "index", "rrf_k", "query_clusters")},
        "index_used": index,
        "model": emb.manifest["model"], "fingerprint": emb.manifest["fingerprint"],
        "inputs": emb.manifest.get("sources", {}), "seed": params.seed, "counts": summary,
    }
    rows = write_output(selection, emb, output, fmt=fmt, num_negatives=params.num_negatives, scores=scores,
                        metadata=metadata, force=force, clusters=by_position, corpus_texts=opened.corpus.texts,
                        batches=(batch_size, params.seed) if batch_order == "clusters" else None)
    return {"pool": str(pool), **({"index": index} if index else {}), **summary, "rows": rows,
            "seconds": round(time.perf_counter() - started, 3)}


def validate_coverage(min_coverage: float | None) -> None:
    if min_coverage is not None and not 0 <= min_coverage <= 1:
        raise InputError(f"--min-coverage {min_coverage:g}: give a share between 0 and 1")


def check_coverage(summary: dict[str, Any], min_coverage: float | None) -> None:
    """Raise :class:`AcceptanceError` when no row was written, or fewer than ``min_coverage`` of the queries got
    all their negatives."""
    if summary.get("rows") == 0:
        raise AcceptanceError(f"no rows were written: none of the {summary['queries']} queries kept a negative "
                              "(loosen the filters or the rank window); the empty output was written")
    if min_coverage is None:
        return
    validate_coverage(min_coverage)
    coverage = 1 - summary["queries_short"] / max(1, summary["queries"])
    if coverage < min_coverage:
        raise AcceptanceError(f"only {coverage:.1%} of queries got {summary['num_negatives']} negatives "
                              f"({summary['queries_short']} short), below --min-coverage {min_coverage:g}; "
                              "the output was written, short query ids are in OUT.short.txt")


def _grid_uses_ce(base: MineParams, grid: dict[str, list]) -> bool:
    """Whether a grid needs cross-encoder scores; every setting is checked first, before any work starts."""
    from .sweep import grid_settings

    for _ in grid_settings(base, grid):
        pass
    return any(base.thresholds.get(k) is not None or any(v is not None for v in grid.get(k, []))
               for k in CE_FILTERS)


def sweep_pool(pool: Path | str, base: MineParams, grid: dict[str, list], *, cross_encoder: str | None = None,
               ce_batch_size: int = 64, progress: Any = None) -> list[dict[str, Any]]:
    """``sweep`` over a pool folder: negatives kept and queries short per setting of ``grid``."""
    from .sweep import sweep

    _, _, engine = open_pool(Path(pool), base, cross_encoder, ce_batch_size, progress, _grid_uses_ce(base, grid))
    return sweep(engine, base, grid)


def calibrate_pool(pool: Path | str, base: MineParams, grid: dict[str, list] | None = None, *,
                   cross_encoder: str | None = None, ce_batch_size: int = 64, progress: Any = None,
                   **options: Any) -> list[Any]:
    """``calibrate`` over a pool folder: the leak estimate, hardness and shortfall of each setting
    (``calibrate.DEFAULT_GRID`` when ``grid`` is None); ``options`` go to :func:`calibrate.calibrate`."""
    from .calibrate import DEFAULT_GRID, calibrate

    grid_used = DEFAULT_GRID if grid is None else grid
    _, _, engine = open_pool(Path(pool), base, cross_encoder, ce_batch_size, progress, _grid_uses_ce(base, grid_used))
    return calibrate(engine, base, grid_used, **options)


def calibrated_params(pool: Path | str, base: MineParams, max_leak: float, max_short: float = 0.0,
                      **options: Any) -> tuple[MineParams, dict[str, Any]]:
    """The hardest setting of the default grid (other settings from ``base``) whose leak upper bound is at
    most ``max_leak``, and what calibration found for it."""
    from .calibrate import pick

    row = pick(calibrate_pool(pool, base, None, **options), max_leak, max_short)
    return row.params, row.to_dict()
