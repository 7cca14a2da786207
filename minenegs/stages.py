"""Whole stages as single calls, for the CLI and for Python users: pool -> negatives -> output file."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .artifacts import check_output, read_manifest, read_parquet
from .embeddings import Embeddings
from .errors import AcceptanceError, InputError
from .mine import MineParams, corpus_view, cross_encoder_pairs, read_pool_arrays, select
from .outputs import FORMATS, write_output
from .pool import KIND as POOL_KIND


def _clusters(pool: Path) -> dict[int, int] | None:

    col = read_parquet(pool / "queries.parquet", columns=["cluster_id"]).column("cluster_id")
    if col.null_count == len(col):
        return None
    return dict(enumerate(col.to_pylist()))


def negatives_from_pool(pool: Path | str, output: Path | str, params: MineParams, *, fmt: str = "n-tuple",
                        scores: bool = False, force: bool = False, cross_encoder: str | None = None,
                        ce_batch_size: int = 64, progress: Any = None) -> dict[str, Any]:
    """Select negatives from a pool folder and write them; returns the summary.

    With ``cross_encoder`` (a CrossEncoder name or folder), candidates up to ``params.ce_depth`` and the
    positives are scored (cached in the pool) for the ``ce_max`` and ``promote`` thresholds and ``--scores``.
    """
    started = time.perf_counter()
    pool = Path(pool)
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    check_output(Path(output), force)
    manifest = read_manifest(pool, POOL_KIND)
    emb = Embeddings(manifest["embeddings"])
    arrays = read_pool_arrays(pool)
    corpus = corpus_view(emb)
    logits = None
    if cross_encoder:
        from .cache import default_cache_dir
        from .rerank import CrossEncoderScorer, cached_logits

        scorer = CrossEncoderScorer(cross_encoder, batch_size=ce_batch_size,
                                    memo=default_cache_dir() / "fingerprints.json")
        queries = emb.table("queries").texts
        logits = cached_logits(pool, scorer, cross_encoder_pairs(arrays, params), queries.__getitem__, corpus.text,
                               progress)
    elif any(params.thresholds.get(k) is not None for k in ("ce_max", "promote")):
        raise InputError("--ce-max and --promote need --cross-encoder NAME_OR_PATH")
    selection = select(pool, params, corpus, logits, arrays)
    clusters = _clusters(pool)
    by_position = None if clusters is None else {i: clusters[int(q)] for i, q in enumerate(selection.query_idx)}
    summary = selection.summary(params.num_negatives)
    metadata = {
        "params": {**asdict(params), "format": fmt, "scores": scores},
        "pool": {k: manifest.get(k) for k in ("retriever", "depth", "index", "rrf_k", "query_clusters")},
        "model": emb.manifest["model"], "fingerprint": emb.manifest["fingerprint"],
        "inputs": emb.manifest.get("sources", {}), "seed": params.seed, "counts": summary,
    }
    rows = write_output(selection, emb, output, fmt=fmt, num_negatives=params.num_negatives, scores=scores,
                        metadata=metadata, force=force, clusters=by_position, corpus_texts=corpus.texts)
    return {"pool": str(pool), **summary, "rows": rows, "seconds": round(time.perf_counter() - started, 3)}


def validate_coverage(min_coverage: float | None) -> None:
    if min_coverage is not None and not 0 <= min_coverage <= 1:
        raise InputError(f"--min-coverage {min_coverage:g}: give a share between 0 and 1")


def check_coverage(summary: dict[str, Any], min_coverage: float | None) -> None:
    """Raise :class:`AcceptanceError` when fewer than ``min_coverage`` of the queries got all their negatives."""
    if min_coverage is None:
        return
    validate_coverage(min_coverage)
    coverage = 1 - summary["queries_short"] / max(1, summary["queries"])
    if coverage < min_coverage:
        raise AcceptanceError(f"only {coverage:.1%} of queries got {summary['num_negatives']} negatives "
                              f"({summary['queries_short']} short), below --min-coverage {min_coverage:g}; "
                              "the output was written, short query ids are in OUT.short.txt")
