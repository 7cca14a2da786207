"""The candidate pool: each query's top documents, retrieved once and kept as Parquet.

A pool folder (``kind: pool``) lives under ``<embeddings>/pools/<key>/``, the key covering the embeddings
and the retrieval parameters, so re-mining with other strategies or thresholds reuses it:

    manifest.json        embeddings folder and digest, retriever, depth, index parameters, counts
    candidates.parquet   one row per (query, candidate): query_idx, doc_idx, query_id, doc_id, rank (1-based,
                         null for a positive that was not retrieved), score (dense, exact for positives),
                         is_positive, source (dense | bm25 | both | qrels), bm25 (BM25 score or null)
    queries.parquet      query_idx, query_id, n_positives, min_positive_score, cluster_id (or null)

A later round (``PoolParams.previous``: the pool folders of earlier rounds, e.g. mined with the model before
fine-tuning) adds the earlier pools' candidates to what this round retrieves: the union, every candidate scored
by this round's embeddings and ranked by that score (source ``previous`` where only an earlier pool had it).

Rows are grouped by query and ordered by rank; the file is written one query batch at a time, as columns
(retrieval, positive lookup and exact scores are array operations on the batch), so memory is bounded by a
batch, not by the corpus or the pool.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import replace
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..artifacts import output_dir, read_manifest, read_parquet, write_manifest
from ..encode.folder import Embeddings
from ..errors import InputError
from .index import describe, trained_ivf
from .search import KIND, PoolParams, Retrieval, _schema, part_path
from .shards import ShardLists, refine_of

if TYPE_CHECKING:
    from ..distributed.runner import RaySettings

QUERY_BATCH = 1024
Progress = Callable[[int, int], None]


def _cluster(queries: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    import faiss

    n = queries.shape[0]
    if k > n:
        raise InputError(f"--query-clusters {k} is more than the {n} queries")
    km = faiss.Kmeans(queries.shape[1], k, niter=25, seed=seed, spherical=True, min_points_per_centroid=1)
    data = np.ascontiguousarray(queries, dtype=np.float32)
    km.train(data)
    return km.index.search(data, 1)[1][:, 0].astype(np.int32)


def build_pool(emb: Embeddings, params: PoolParams = PoolParams(), *, progress: Progress | None = None,
               out: Path | str | None = None, force: bool = False, ray: "RaySettings | None" = None,
               query_batch: int = QUERY_BATCH) -> Path:
    """The pool folder for ``emb`` and ``params``: reused when it exists, else retrieved and written.

    It goes under ``<embeddings>/pools/`` unless ``out`` names a folder; a folder holding a pool made with other
    embeddings or settings is replaced only with ``force``. With ``ray``, the query batches are retrieved on a
    Ray cluster (see :mod:`minenegs.distributed.runner`); the folder is the same.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    key_blob = json.dumps({"emb": hashlib.sha256(json.dumps(emb.manifest, sort_keys=True).encode()).hexdigest(),
                           **params.key_dict()}, sort_keys=True)
    key = hashlib.sha256(key_blob.encode()).hexdigest()[:16]
    folder = Path(out) if out is not None else emb.folder / "pools" / f"{params.retriever}-{key}"
    if (folder / "candidates.parquet").exists():
        # under <embeddings>/pools/ the folder name carries the key; a folder the user named must say it
        if read_manifest(folder, KIND).get("key") == key or out is None:
            return folder
        if not force:
            raise InputError(f"{folder} holds a pool made from other embeddings or settings; "
                             "pass --force to replace it or choose another --pool")
    if query_batch < 1:
        raise InputError(f"query batch {query_batch}: must be at least 1")

    started = time.perf_counter()
    if ray is not None and params.shards == 1 and len(emb.shards) > 1 and params.retriever != "bm25" \
            and params.index.kind in ("flat", "ivf", "auto"):  # a corpus stored as shards: a worker a shard
        params = replace(params, shards=len(emb.shards))
    sharded = ray is not None and params.shards > 1  # shards searched on the cluster, merged here
    shard_params = params.index.resolved(*emb.reader("corpus").shape) if sharded else None
    if sharded and shard_params.kind == "ivf" and not shard_params.nprobe:
        raise InputError(f"--shards {params.shards} with --ray and an IVF index: give --nprobe (it is not tuned "
                         "across a cluster's shards yet)")
    retrieval = Retrieval(emb, params, searchers=ray is None or sharded,  # sharded: the rows are built here
                          dense=ShardLists(None, params.shards, 0, shard_params) if sharded else None)
    query_ids, ptr = retrieval.query_ids, retrieval.ptr
    index_used = describe(retrieval.dense) if retrieval.dense is not None else None
    index_path = str(retrieval.dense.path) if retrieval.dense is not None and retrieval.dense.path else None
    clusters = _cluster(retrieval.queries[:], params.query_clusters) if params.query_clusters else None
    batches = [(b, min(b + query_batch, len(query_ids))) for b in range(0, len(query_ids), query_batch)]

    n_rows = n_previous = 0
    min_pos = np.full(len(query_ids), np.nan, dtype=np.float32)
    with output_dir(folder, force=True) as stage:
        if sharded:  # the shards' lists first, on the cluster; the rows are then built here from them
            from .on_ray import search_shards

            trained = trained_ivf(shard_params, emb.reader("corpus")) if shard_params.kind == "ivf" else None
            n = len(search_shards(ray, emb.folder, params.shards, retrieval.depth, batches, stage / "shards",
                                  lambda _: None, trained, shard_params.nprobe, refine_of(shard_params),
                                  shard_params.pq_m or None))
            retrieval.dense = ShardLists(stage / "shards", n, len(retrieval.doc_ids), shard_params)
        if ray is not None and not sharded:
            retrieval = None  # the workers open their own; this process keeps no index
            from .on_ray import retrieve_batches

            done = 0

            def tick(n: int) -> None:
                nonlocal done
                done += n
                if progress is not None:
                    progress(done, len(query_ids))

            retrieve_batches(ray, emb.folder, params, batches, stage / "parts", tick)
            rows = (read_parquet(part_path(stage / "parts", b)) for b, _ in batches)
        else:
            rows = (pa.Table.from_batches([retrieval.batch(b, e)]) for b, e in batches)
        writer = pq.ParquetWriter(stage / "candidates.parquet", _schema())
        try:
            for (b, e), table in zip(batches, rows):
                writer.write_table(table)
                qi, positive = table["query_idx"].to_numpy(), table["is_positive"].to_numpy()
                np.fmin.at(min_pos, qi[positive], table["score"].to_numpy()[positive])
                n_rows += table.num_rows
                n_previous += int(np.count_nonzero(table["source"].to_numpy(zero_copy_only=False) == "previous"))
                if progress is not None and (ray is None or sharded):
                    progress(e, len(query_ids))
        finally:
            writer.close()
        shutil.rmtree(stage / "parts", ignore_errors=True)
        shutil.rmtree(stage / "shards", ignore_errors=True)
        pq.write_table(pa.table({
            "query_idx": pa.array(np.arange(len(query_ids), dtype=np.int32)),
            "query_id": query_ids,
            "n_positives": pa.array(np.diff(ptr).astype(np.int32)),
            "min_positive_score": pa.array(min_pos, pa.float32(), mask=np.isnan(min_pos)),
            "cluster_id": pa.array(clusters if clusters is not None else [None] * len(query_ids), pa.int32()),
        }), stage / "queries.parquet")
        write_manifest(stage, {
            "kind": KIND, "key": key, "embeddings": str(emb.folder.resolve()), "model": emb.manifest["model"],
            "fingerprint": emb.manifest["fingerprint"], **params.key_dict(), "rows": n_rows,
            "queries": len(query_ids), "seconds": round(time.perf_counter() - started, 3),
            "index_path": index_path, "index_used": index_used,
            **({"previous_pools": list(params.previous), "previous_only_rows": n_previous} if params.previous else {}),
        })
    return folder
