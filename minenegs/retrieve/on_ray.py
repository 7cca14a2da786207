"""The retrieve stage on a Ray cluster.

The driver builds (or reuses) the index under the embeddings folder, then query batches go to a pool of
retrieval actors, each holding the index once. Each batch is written as a part file (whole or not at all) and
the driver joins the parts in query order into the pool folder, so a retried batch can neither duplicate nor
drop a row.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..distributed.runner import RaySettings, kill_point, run
from ..encode.folder import Embeddings
from .search import Retrieval, write_part
from ..errors import InputError
from .shards import bounds, search_shard, shard_bytes

TRAINED = "trained.faiss"


class _RetrieveWorker:
    """A retrieval actor: opens the index (and BM25) once, then writes the pool rows of query batches."""

    def __init__(self, embeddings: str, params: Any, parts: str) -> None:
        self.retrieval = Retrieval(Embeddings(embeddings), params)
        self.parts = Path(parts)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows = []
        for start, stop in zip(batch["start"], batch["stop"]):
            kill_point()
            rows.append(write_part(self.parts, int(start), self.retrieval.batch(int(start), int(stop))))
        return {"stop": batch["stop"], "rows": rows}


def retrieve_batches(settings: RaySettings, embeddings: Path, params: Any, batches: list[tuple[int, int]],
                     parts: Path, progress: Callable[[int], None]) -> None:
    """Write each ``(start, stop)`` query batch's pool rows to a part file under ``parts`` (a folder every node
    shares), calling ``progress(queries)`` as batches finish."""
    items = [{"start": start, "stop": stop} for start, stop in batches]
    sizes = {stop: stop - start for start, stop in batches}
    run(settings, items, _RetrieveWorker,
        {"embeddings": str(Path(embeddings).resolve()), "params": params, "parts": str(Path(parts).resolve())},
        lambda row: progress(sizes[int(row["stop"])]))


class _ShardWorker:
    """A shard search actor: for each shard it is given, an index over that shard's rows only (flat, or IVF from the
    driver's trained cells), every query batch searched, its lists written as part files (``shards.search_shard``)."""

    def __init__(self, embeddings: str, k: int, batches: list[tuple[int, int]], parts: str,
                 nprobe: int | None = None, refine: int = 0) -> None:
        emb = Embeddings(embeddings)
        self.corpus, self.queries = emb.reader("corpus"), emb.reader("queries")
        self.k, self.batches, self.parts, self.nprobe, self.refine = k, batches, Path(parts), nprobe, refine
        self.trained = None
        if (self.parts / TRAINED).exists():  # IVF shards: the cells trained once by the driver
            import faiss

            self.trained = faiss.read_index(str(self.parts / TRAINED))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        written = []
        for shard, lo, hi in zip(batch["shard"], batch["lo"], batch["hi"]):
            kill_point()
            written.append(search_shard(self.corpus, self.queries, int(lo), int(hi), self.k, self.batches,
                                        self.parts, int(shard), self.trained, self.nprobe, refine=self.refine))
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB (Linux: kB)
        return {"shard": batch["shard"], "batches": written, "peak_mb": [peak] * len(written)}


def search_shards(settings: RaySettings, embeddings: Path, shards: int, k: int, batches: list[tuple[int, int]],
                  parts: Path, progress: Callable[[int], None], trained: Any = None,
                  nprobe: int | None = None, refine: int = 0, code: int | None = None) -> list[dict[str, Any]]:
    """The corpus of ``embeddings`` as ``shards`` row ranges, one task each on the cluster's actors: each
    shard's top-(k + slack) lists of every query batch written under ``parts`` (a folder every node shares), for
    the driver to merge (:class:`.shards.ShardLists`). Flat shards, or with ``trained`` (an empty trained IVF
    index, written beside the parts for the workers) IVF ones searching ``nprobe`` cells; IVF-PQ ones (``code``
    bytes a vector) rescore their ``refine`` x k best by code. A worker holds one
    shard's vectors and index at a time;
    a killed one's shard is redone whole. Returns a row a shard: its number and its worker's peak memory so far
    (``peak_mb``)."""
    emb = Embeddings(embeddings)
    n, dim = emb.reader("corpus").shape
    items = [{"shard": i, "lo": lo, "hi": hi} for i, (lo, hi) in enumerate(bounds(n, shards))]
    if settings.memory:  # before any work: a shard whose index would not fit in a worker's memory
        queries, cap = len(emb.reader("queries")), settings.memory * 2 ** 30
        for item in items:
            need = shard_bytes(item["hi"] - item["lo"], dim, queries, code=code)
            if need > cap:
                room = cap - shard_bytes(0, dim, queries)
                advice = (f"give at least --shards {-(-n * shard_bytes(1, dim, 0, 0, code) // int(room))}" if room > 0 else
                          "a worker needs about 0.4 GB before its shard: raise --ray-memory")
                raise InputError(f"shard {item['shard']} (corpus rows {item['lo']}-{item['hi']}) needs about "
                                 f"{need / 2 ** 30:.2f} GB, more than --ray-memory {settings.memory:g}: {advice}")
    if trained is not None:
        import faiss

        Path(parts).mkdir(parents=True, exist_ok=True)
        faiss.write_index(trained, str(Path(parts) / TRAINED))
    rows: list[dict[str, Any]] = []

    def done(row: dict[str, Any]) -> None:
        rows.append({"shard": int(row["shard"]), "peak_mb": float(row["peak_mb"])})
        progress(1)

    run(settings, items, _ShardWorker, {"embeddings": str(Path(embeddings).resolve()), "k": k, "batches": batches,
                                        "parts": str(Path(parts).resolve()), "nprobe": nprobe, "refine": refine}, done)
    return rows
