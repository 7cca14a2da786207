"""Corpus shards and the exact merge of their top-k lists (faiss' ``IndexShards``, Milvus' proxy reduce): the
corpus split into contiguous row ranges with global id offsets, each shard searched on its own for its top-k,
the lists merged per query by (score descending, global id ascending). Exact for flat shards: a document of the
global top-k is in its own shard's top-k. Ties are broken by id, the same way for one shard and for many, so a
sharded search gives the same lists as an unsharded one (:func:`canonical` orders the unsharded one alike)."""

from __future__ import annotations

import numpy as np

from ..encode.folder import shard_bounds

SLACK = 16  # extra results fetched per list, so a tie straddling the k-th place is resolved by id, not by the index
RESCORE_ROWS = 65536


bounds = shard_bounds  # the row ranges of a sharded search: those of a corpus stored as that many shards


def canonical(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` best of (``scores``, ``ids``), by score descending then id ascending; -1 ids (nothing
    found) last, with score -inf."""
    valid = ids >= 0
    order = np.lexsort((np.where(valid, ids, np.iinfo(np.int64).max), np.where(valid, -scores, np.inf)), axis=-1)
    order = order[:, :k]
    top_s, top_i = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
    gone = top_i < 0
    return np.where(gone, -np.inf, top_s).astype(np.float32), np.where(gone, -1, top_i)


def merge(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-``k`` per query over the shards' lists (``(scores, global ids)`` each, one row a query)."""
    return canonical(np.concatenate([p[0] for p in parts], axis=1),
                     np.concatenate([np.asarray(p[1], np.int64) for p in parts], axis=1), k)


def flat_index(corpus, lo: int, hi: int, block: int = 65536):
    """A flat inner-product index over corpus rows ``lo:hi``, read a block at a time."""
    import faiss

    index = faiss.IndexFlatIP(corpus.shape[1])
    for start in range(lo, hi, block):
        index.add(np.ascontiguousarray(corpus[start:min(hi, start + block)], dtype=np.float32))
    return index


def shard_index(corpus, lo: int, hi: int, trained=None, nprobe: int | None = None, block: int = 65536):
    """Shard ``lo:hi`` of ``corpus`` as (id offset, faiss index): a flat index, or with ``trained`` (an empty,
    trained IVF index) a copy of it holding the shard's rows under their corpus ids, searching ``nprobe`` cells."""
    if trained is None:
        return lo, flat_index(corpus, lo, hi, block)
    import faiss

    index = faiss.clone_index(trained)
    for start in range(lo, hi, block):
        rows = np.ascontiguousarray(corpus[start:min(hi, start + block)], dtype=np.float32)
        index.add_with_ids(rows, np.arange(start, start + len(rows), dtype=np.int64))
    if nprobe is not None:
        set_nprobe(index, nprobe)
    return 0, index


def set_nprobe(index, nprobe: int) -> None:
    """Search ``nprobe`` cells (at most all of them) of an IVF index, or of the IVF index inside ``index``."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    ivf.nprobe = min(ivf.nlist, nprobe)


def shard_lists(offset: int, index, queries: np.ndarray, k: int, corpus=None,
                refine: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One shard's top-(k + ``SLACK``) for ``queries``: scores and global ids (-1 past the end). With ``refine``
    (an IVF-PQ shard), its ``refine`` x k best by code rescored exactly from ``corpus`` (whole-corpus rows)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if refine:
        _, ids = index.search(q, min(index.ntotal, k * refine))
        return rescore_top(q, np.where(ids >= 0, ids + offset, -1), corpus, k + SLACK)
    scores, ids = index.search(q, min(index.ntotal, k + SLACK))
    return scores, np.where(ids >= 0, ids + offset, -1)


def rescore_top(queries: np.ndarray, ids: np.ndarray, corpus, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores of each query's candidate ``ids`` (-1 = none) and the ``k`` best, best first (-1 and -inf
    past the end). Reads about ``RESCORE_ROWS`` vectors at a time."""
    queries = np.asarray(queries, np.float32)
    step = max(1, RESCORE_ROWS // max(1, ids.shape[1]))
    out_s, out_i = [], []
    for lo in range(0, len(ids), step):
        part, q = ids[lo:lo + step], queries[lo:lo + step]
        valid = part >= 0
        vec = corpus[np.where(valid, part, 0).ravel()].reshape(*part.shape, -1)
        scores = np.where(valid, np.einsum("bkd,bd->bk", vec, q), -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top, best = np.take_along_axis(scores, order, 1), np.take_along_axis(part, order, 1)
        out_s.append(top.astype(np.float32))
        out_i.append(np.where(np.isfinite(top), best, -1))
    return np.concatenate(out_s), np.concatenate(out_i)


class ShardedIndex:
    """Shards searched one by one, each for its top-(k + ``SLACK``), their lists merged exactly (:func:`merge`).
    ``parts``: (id offset, faiss index) per shard; ``params``, ``corpus`` and the rest are what the pool records
    of an index and what tuning its search breadth reads (:func:`.index.open_sharded` builds it)."""

    path = None  # built in memory each run, not saved
    recall = None
    reused = False

    def __init__(self, parts: list, params, corpus, build_seconds: float) -> None:
        self.parts, self.params, self.corpus, self.build_seconds = parts, params, corpus, build_seconds
        self.index = parts[0][1]  # one of them, for what they share (an IVF index's cells)
        self.n = sum(index.ntotal for _, index in parts)

    def _set_breadth(self, nprobe: int) -> None:
        for _, index in self.parts:
            set_nprobe(index, nprobe)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each query's ``k`` best documents (corpus rows) and their scores, as one index gives them."""
        k, refine = min(k, self.n), refine_of(self.params)
        return merge([shard_lists(offset, index, queries, k, self.corpus, refine) for offset, index in self.parts], k)


def refine_of(params) -> int:
    """How many times k an IVF-PQ shard fetches by code to rescore (0: its scores are exact already)."""
    return params.refine if getattr(params, "pq_m", 0) else 0


WORKER_BASE = 400 << 20  # what a Ray worker holds before its shard: Python, numpy, faiss, Ray (about 350 MB measured)


def shard_bytes(rows: int, dim: int, queries: int, block: int = 16384, code: int | None = None) -> int:
    """About what a worker searching a shard of ``rows`` vectors holds at its peak: the index's vectors (``code``
    bytes each: an IVF-PQ index's codes; default float32 vectors) and ids, a block being read, the query vectors,
    and the worker's own base."""
    return rows * ((dim * 4 if code is None else code) + 8) + block * dim * 4 + queries * dim * 4 + \
        (WORKER_BASE if block else 0)


def shard_part(parts, shard: int, start: int):
    """Where one shard's lists for the query batch from ``start`` are kept."""
    return parts / f"shard{shard:04d}-{start:010d}.npz"


def search_shard(corpus, queries, lo: int, hi: int, k: int, batches: list[tuple[int, int]], parts, shard: int,
                 trained=None, nprobe: int | None = None, block: int = 16384, refine: int = 0) -> int:
    """One shard's part of a sharded search, as one worker runs it: an index over corpus rows ``lo:hi`` only
    (:func:`shard_index`, read a block at a time), each query batch's top-(k + ``SLACK``) with global ids
    written to its part file (whole or not at all; a redone shard writes the same files). Returns the batches
    written."""
    import io

    from ..artifacts import write_atomic

    offset, index = shard_index(corpus, lo, hi, trained, nprobe, block)
    parts.mkdir(parents=True, exist_ok=True)
    for start, stop in batches:
        scores, ids = shard_lists(offset, index, queries[start:stop], k, corpus, refine)
        buffer = io.BytesIO()
        np.savez(buffer, scores=scores, ids=ids)
        write_atomic(shard_part(parts, shard, start), lambda fh: fh.write(buffer.getvalue()))
    return len(batches)


class ShardLists:
    """The driver's side of a sharded search run elsewhere: each query batch's lists, merged from every shard's
    part file. ``params``, ``path``, ``recall``, ``reused``, ``build_seconds``: what the pool records, as for a
    flat index."""

    path, recall, reused, build_seconds = None, None, False, 0.0

    def __init__(self, parts, shards: int, n_docs: int, params) -> None:
        self.parts, self.shards, self.n, self.params = parts, shards, n_docs, params

    def lists(self, start: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        found = []
        for shard in range(self.shards):
            with np.load(shard_part(self.parts, shard, start)) as part:
                found.append((part["scores"], part["ids"]))
        return merge(found, min(k, self.n))
