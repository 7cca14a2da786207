"""The candidate pool: each query's top documents, retrieved once and kept as Parquet.

A pool folder (``kind: pool``) lives under ``<embeddings>/pools/<key>/``, the key covering the embeddings
and the retrieval parameters, so re-mining with other strategies or thresholds reuses it:

    manifest.json        embeddings folder and digest, retriever, depth, index parameters, counts
    candidates.parquet   one row per (query, candidate): query_idx, doc_idx, query_id, doc_id, rank (1-based,
                         null for a positive that was not retrieved), score (dense, exact for positives),
                         is_positive, source (dense | bm25 | both | qrels), bm25 (BM25 score or null)
    queries.parquet      query_idx, query_id, n_positives, min_positive_score, cluster_id (or null)

Rows are grouped by query and ordered by rank; the file is written in row groups while searching.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import output_dir, read_manifest, write_manifest
from .embeddings import Embeddings
from .errors import InputError
from .index import IndexParams, open_index

KIND = "pool"
RETRIEVERS = ("dense", "bm25", "hybrid")
QUERY_BATCH = 1024
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PoolParams:
    depth: int = 100
    retriever: str = "dense"
    index: IndexParams = field(default_factory=IndexParams)
    rrf_k: int = 60
    query_clusters: int = 0

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise InputError(f"--depth {self.depth}: must be at least 1")
        if self.retriever not in RETRIEVERS:
            raise InputError(f"--retriever {self.retriever}: choose one of {', '.join(RETRIEVERS)}")
        if self.query_clusters < 0:
            raise InputError("--query-clusters must be 0 (off) or more")

    def key_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["index"] = asdict(self.index) if self.retriever != "bm25" else None
        return d


def _schema():
    import pyarrow as pa

    return pa.schema([
        ("query_idx", pa.int32()), ("doc_idx", pa.int32()),
        ("query_id", pa.string()), ("doc_id", pa.string()),
        ("rank", pa.int32()), ("score", pa.float32()), ("is_positive", pa.bool_()),
        ("source", pa.string()), ("bm25", pa.float32()),
    ])


class _Bm25:
    """bm25s over the corpus texts, retrieving document indices and scores."""

    def __init__(self, texts: list[str]) -> None:
        try:
            import bm25s
        except ImportError:
            raise InputError("--retriever bm25/hybrid needs the bm25s package: pip install bm25s") from None
        self._bm25s = bm25s
        self.retriever = bm25s.BM25()
        self.retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        self.n = len(texts)

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        tokens = self._bm25s.tokenize(queries, stopwords="en", show_progress=False)
        docs, scores = self.retriever.retrieve(tokens, k=min(k, self.n), show_progress=False, n_threads=1)
        return np.asarray(docs, dtype=np.int64), np.asarray(scores, dtype=np.float32)


def _cluster(queries: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    import faiss

    n = queries.shape[0]
    if k > n:
        raise InputError(f"--query-clusters {k} is more than the {n} queries")
    km = faiss.Kmeans(queries.shape[1], k, niter=25, seed=seed, spherical=True, min_points_per_centroid=1)
    data = np.ascontiguousarray(queries, dtype=np.float32)
    km.train(data)
    return km.index.search(data, 1)[1][:, 0].astype(np.int32)


def _fuse(lists: dict[str, np.ndarray], rrf_k: int) -> tuple[list[int], list[str]]:
    """Reciprocal-rank fusion of several ranked doc lists: the fused order and the source of each document."""
    ranks = {name: {int(d): r for r, d in enumerate(docs, 1) if d >= 0} for name, docs in lists.items()}
    fused: dict[int, float] = {}
    for per in ranks.values():
        for d, r in per.items():
            fused[d] = fused.get(d, 0.0) + 1.0 / (rrf_k + r)
    order = sorted(fused, key=lambda d: (-fused[d], d))
    source = ["both" if all(d in per for per in ranks.values()) else next(n for n, per in ranks.items() if d in per)
              for d in order]
    return order, source


def build_pool(emb: Embeddings, params: PoolParams = PoolParams(), *, progress: Progress | None = None,
               out: Path | str | None = None, force: bool = False) -> Path:
    """The pool folder for ``emb`` and ``params``: reused when it exists, else retrieved and written.

    It goes under ``<embeddings>/pools/`` unless ``out`` names a folder; a folder holding a pool made with other
    embeddings or settings is replaced only with ``force``.
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

    started = time.perf_counter()
    corpus, queries = emb.vectors("corpus"), emb.vectors("queries")
    query_ids, doc_ids = emb.ids("queries"), emb.ids("corpus")
    if not query_ids:
        raise InputError(f"{emb.folder}: has no queries to mine for; encode with queries and qrels")
    doc_index = {d: i for i, d in enumerate(doc_ids)}
    positives: dict[int, list[int]] = {}
    q_index = {q: i for i, q in enumerate(query_ids)}
    for qrel in emb.qrels():
        if qrel.is_positive and qrel.query_id in q_index:
            positives.setdefault(q_index[qrel.query_id], []).append(doc_index[qrel.doc_id])
    depth = min(params.depth, len(doc_ids))
    dense = open_index(emb, params.index) if params.retriever != "bm25" else None
    bm25 = _Bm25(emb.table("corpus").texts) if params.retriever != "dense" else None
    query_texts = emb.table("queries").texts if bm25 is not None else None
    clusters = _cluster(queries, params.query_clusters) if params.query_clusters else None

    n_rows = 0
    min_pos = np.full(len(query_ids), np.nan, dtype=np.float32)
    with output_dir(folder, force=True) as stage:
        writer = pq.ParquetWriter(stage / "candidates.parquet", _schema())
        try:
            for start in range(0, len(query_ids), QUERY_BATCH):
                stop = min(start + QUERY_BATCH, len(query_ids))
                qv = np.ascontiguousarray(queries[start:stop], dtype=np.float32)
                lists: list[dict[str, np.ndarray]] = [{} for _ in range(stop - start)]
                bm25_scores: list[dict[int, float]] = [{} for _ in range(stop - start)]
                if dense is not None:
                    _, idx = dense.index.search(qv, depth)
                    for j in range(stop - start):
                        lists[j]["dense"] = idx[j]
                if bm25 is not None:
                    bdocs, bscores = bm25.search(query_texts[start:stop], depth)
                    for j in range(stop - start):
                        keep = bscores[j] > 0
                        lists[j]["bm25"] = bdocs[j][keep]
                        bm25_scores[j] = dict(zip(bdocs[j][keep].tolist(), bscores[j][keep].tolist()))
                cols: dict[str, list] = {name: [] for name in _schema().names}
                for j in range(stop - start):
                    qi = start + j
                    order, source = _fuse(lists[j], params.rrf_k)
                    pos = positives.get(qi, [])
                    pos_set, retrieved = set(pos), set(order)
                    missing = [d for d in pos if d not in retrieved]
                    docs = order + missing
                    # exact dense scores for every row: one scale for all filters
                    scores = corpus[np.asarray(docs, dtype=np.int64)] @ qv[j] if docs else np.zeros(0, np.float32)
                    ranks = list(range(1, len(order) + 1)) + [None] * len(missing)
                    sources = source + ["qrels"] * len(missing)
                    if pos:
                        min_pos[qi] = float(np.min(scores[[docs.index(d) for d in pos]]))
                    n = len(docs)
                    cols["query_idx"] += [qi] * n
                    cols["doc_idx"] += docs
                    cols["query_id"] += [query_ids[qi]] * n
                    cols["doc_id"] += [doc_ids[d] for d in docs]
                    cols["rank"] += ranks
                    cols["score"] += scores.astype(np.float32).tolist()
                    cols["is_positive"] += [d in pos_set for d in docs]
                    cols["source"] += sources
                    cols["bm25"] += [bm25_scores[j].get(d) for d in docs]
                writer.write_batch(pa.RecordBatch.from_pydict(cols, schema=_schema()))
                n_rows += len(cols["query_idx"])
                if progress is not None:
                    progress(stop, len(query_ids))
        finally:
            writer.close()
        pq.write_table(pa.table({
            "query_idx": pa.array(np.arange(len(query_ids), dtype=np.int32)),
            "query_id": query_ids,
            "n_positives": pa.array([len(positives.get(i, [])) for i in range(len(query_ids))], pa.int32()),
            "min_positive_score": pa.array(min_pos, pa.float32(), mask=np.isnan(min_pos)),
            "cluster_id": pa.array(clusters if clusters is not None else [None] * len(query_ids), pa.int32()),
        }), stage / "queries.parquet")
        write_manifest(stage, {
            "kind": KIND, "key": key, "embeddings": str(emb.folder.resolve()), "model": emb.manifest["model"],
            "fingerprint": emb.manifest["fingerprint"], **params.key_dict(), "rows": n_rows,
            "queries": len(query_ids), "seconds": round(time.perf_counter() - started, 3),
            "index_path": str(dense.path) if dense is not None else None,
        })
    return folder
