"""FAISS indexes over an embeddings folder's corpus: exact (flat), IVF (flat or PQ) and HNSW, or ``auto``: the
kind that suits the corpus size.

An index is saved under ``<embeddings>/indexes/<key>/`` with a manifest; the key covers the embeddings'
manifest and the parameters that change what is built, so an unchanged request reuses the saved index. Vectors
are read from the embeddings folder a block at a time (float16 folders included), never all at once.

``auto`` (the default): up to :data:`FLAT_MAX` documents an exact flat index; up to :data:`IVF_FLAT_MAX` IVF
over full vectors; above that IVF-PQ (``dim / 8`` bytes a vector) whose candidates are rescored exactly.
For IVF without ``--nprobe``, the number of cells searched is tuned when the index is opened: the fewest
(doubling from 8) whose recall@k against exact search, on a sample of the folder's own queries, reaches
:data:`RECALL_TARGET`; the recall measured is kept in the index folder and reported.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import output_dir, read_manifest, write_manifest, write_text_atomic
from ..encode.folder import Embeddings, VectorFile
from ..errors import InputError
from ..settings import setting
from .shards import SLACK, ShardedIndex, bounds, canonical, rescore_top, set_nprobe, shard_index

KIND = "index"
INDEX_TYPES = ("auto", "flat", "ivf", "hnsw")
ADD_BATCH = 65536
FLAT_MAX = 100_000
IVF_FLAT_MAX = 1_500_000
RECALL_TARGET = 0.96  # tuned on a sample; a margin above the 0.95 the defaults promise
TUNE_QUERIES = 256
TRAIN_PER_CELL = 40  # FAISS warns below 39 training points a cell


@dataclass(frozen=True)
class IndexParams:
    """``flat``: exact inner product. ``ivf``: ``nlist`` cells, ``nprobe`` of them searched, PQ codes with
    ``pq_m`` sub-quantisers when ``pq_m > 0`` (each query's ``refine`` x k nearest by code rescored exactly).
    ``hnsw``: graph with ``hnsw_m`` links and ``ef_search`` candidates at search time. ``auto``: see the module.
    """

    kind: str = setting("auto", "auto (by corpus size: flat to 100k documents, IVF to 1.5M, IVF-PQ above), flat (exact), ivf or hnsw.", flag="--index", choices=INDEX_TYPES)
    nlist: int | None = setting(help="IVF cells [default: min(2*sqrt(docs), docs/40)].", min=1)
    nprobe: int | None = setting(help="IVF cells searched [default: tuned for recall@depth >= 0.96 on a sample of the queries].", min=1)
    pq_m: int = setting(0, "IVF-PQ sub-quantisers (0: IVF-Flat; auto above 1.5M documents: dim/8).", min=0)
    hnsw_m: int = setting(32, "HNSW links per node.", min=2)
    ef_construction: int = 200
    ef_search: int = setting(128, "HNSW search breadth.", min=1)
    refine: int = setting(4, "IVF-PQ: fetch refine x depth by code, keep the depth best by exact score.", min=1)

    def __post_init__(self) -> None:
        if self.kind not in INDEX_TYPES:
            raise InputError(f"--index {self.kind}: choose one of {', '.join(INDEX_TYPES)}")
        for name in ("nlist", "nprobe", "hnsw_m", "ef_construction", "ef_search", "refine"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name.replace('_', '-')} {value}: must be at least 1")
        if self.pq_m < 0:
            raise InputError(f"--pq-m {self.pq_m}: must be 0 (IVF-Flat) or more")

    def resolved(self, n: int, dim: int) -> "IndexParams":
        """The concrete parameters for a corpus of ``n`` vectors of dimension ``dim``."""
        p = self
        if p.kind == "auto":
            if n <= FLAT_MAX:
                return replace(p, kind="flat")
            p = replace(p, kind="ivf", pq_m=p.pq_m or (_pq_m(dim) if n > IVF_FLAT_MAX else 0))
        if p.kind == "ivf" and p.nlist is None:
            p = replace(p, nlist=max(1, min(int(2 * math.sqrt(n)), n // TRAIN_PER_CELL)))
        if p.kind == "ivf" and p.nlist > n:
            raise InputError(f"--nlist {p.nlist} is more than the {n} documents; choose fewer cells")
        if p.kind == "ivf" and p.pq_m and dim % p.pq_m:
            raise InputError(f"--pq-m {p.pq_m} must divide the dimension {dim}")
        return p

    def build_params(self) -> dict[str, Any]:
        """The parameters that change what is built (search-time ones are left out)."""
        if self.kind == "ivf":
            return {"type": "ivf", "nlist": self.nlist, "pq_m": self.pq_m}
        if self.kind == "hnsw":
            return {"type": "hnsw", "hnsw_m": self.hnsw_m, "ef_construction": self.ef_construction}
        return {"type": self.kind}


def _pq_m(dim: int) -> int:
    """Sub-quantisers for ``dim / 8`` bytes a vector (the largest divisor of ``dim`` not above it)."""
    return next(m for m in range(max(1, dim // 8), 0, -1) if dim % m == 0)


def _manifest_digest(emb: Embeddings) -> str:
    return hashlib.sha256(json.dumps(emb.manifest, sort_keys=True).encode()).hexdigest()


def _build(params: IndexParams, vectors: VectorFile) -> Any:
    import faiss

    n, dim = vectors.shape
    if params.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif params.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params.ef_construction
    else:
        index = trained_ivf(params, vectors)
        _add_ivf(index, vectors)
        return index
    for _, block in vectors.blocks(ADD_BATCH):
        index.add(block)
    return index


def trained_ivf(params: IndexParams, vectors: VectorFile) -> Any:
    """An empty IVF index with its cells (and PQ codebooks) trained on a seeded sample of ``vectors``: the same
    for the whole corpus and for every shard of it."""
    import faiss

    n, dim = vectors.shape
    quantizer = faiss.IndexFlatIP(dim)
    if params.pq_m:
        index = faiss.IndexIVFPQ(quantizer, dim, params.nlist, params.pq_m, 8, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(quantizer, dim, params.nlist, faiss.METRIC_INNER_PRODUCT)
    sample = min(n, max(params.nlist * TRAIN_PER_CELL, 10000 if not params.pq_m else 65536))
    index.train(vectors[np.sort(np.random.default_rng(0).choice(n, size=sample, replace=False))])
    return index


def open_sharded(emb: Embeddings, shards: int, params: IndexParams, k: int) -> ShardedIndex:
    """The corpus of ``emb`` as ``shards`` row ranges searched one by one and merged exactly
    (:mod:`.shards`): flat indexes, or IVF ones sharing one set of trained cells (and PQ codebooks), so that a
    query searches the same ``nprobe`` cells in every shard: the merged lists are those of one IVF-Flat index; with
    PQ, each shard rescores its own ``refine`` x k best by code, a superset of what one index would rescore
    (``nprobe`` tuned on the sharded search as for one index when not given)."""
    corpus = emb.reader("corpus")
    params = params.resolved(*corpus.shape)
    if params.kind not in ("flat", "ivf"):
        raise InputError(f"--shards {shards}: sharded search takes a flat or an IVF index")
    started = time.perf_counter()
    trained = trained_ivf(params, corpus) if params.kind == "ivf" else None
    parts = [shard_index(corpus, lo, hi, trained) for lo, hi in bounds(len(corpus), shards)]
    sharded = ShardedIndex(parts, params, corpus, time.perf_counter() - started)
    if params.kind == "ivf":
        nprobe = params.nprobe or _tune(sharded, _tune_sample(emb, corpus), k)[0]
        sharded.params = replace(params, nprobe=nprobe)
        sharded._set_breadth(nprobe)
    return sharded


def _add_ivf(index: Any, vectors: VectorFile) -> None:
    """Add every vector to a trained IVF index with each inverted list allocated once, at its final size.

    ``index.add`` grows the lists as it goes (up to twice the memory they end up needing); here a first pass
    assigns each vector its cell, the lists are sized, and a second pass writes the codes in place. The
    lists hold the same entries in the same order as ``index.add`` would give.
    """
    import faiss

    n, nlist = len(vectors), index.nlist
    cells = np.empty(n, np.int64)
    for start, block in vectors.blocks(ADD_BATCH):
        cells[start:start + len(block)] = index.quantizer.search(block, 1)[1][:, 0]
    counts = np.bincount(cells, minlength=nlist)
    invlists = index.invlists
    for cell in np.flatnonzero(counts).tolist():
        invlists.resize(cell, int(counts[cell]))
    filled = np.zeros(nlist, np.int64)
    for start, block in vectors.blocks(ADD_BATCH):
        own = cells[start:start + len(block)]
        codes = np.empty((len(block), index.code_size), np.uint8)
        index.encode_vectors(len(block), faiss.swig_ptr(block), faiss.swig_ptr(own), faiss.swig_ptr(codes))
        order = np.argsort(own, kind="stable")
        own, ids, codes = own[order], order.astype(np.int64) + start, np.ascontiguousarray(codes[order])
        edges = np.flatnonzero(np.r_[True, own[1:] != own[:-1], True])
        for a, b in zip(edges[:-1].tolist(), edges[1:].tolist()):
            cell = int(own[a])
            invlists.update_entries(cell, int(filled[cell]), b - a, faiss.swig_ptr(ids[a:b]),
                                    faiss.swig_ptr(codes[a:b]))
            filled[cell] += b - a
    index.ntotal = n


@dataclass
class LoadedIndex:
    index: Any
    path: Path
    reused: bool
    build_seconds: float
    params: IndexParams
    corpus: VectorFile
    recall: float | None = None  # recall@k measured against exact search when the search breadth was tuned

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each query's ``k`` nearest documents (-1 past the end) and their exact inner products, best first.
        PQ indexes fetch ``refine * k`` by code and rescore them from the stored vectors."""
        n = self.index.ntotal
        k = min(k, n)
        if self.params.kind == "flat" or (self.params.kind == "ivf" and not self.params.pq_m):  # ties by id, as a
            # sharded search breaks them (:mod:`.shards`)
            return canonical(*self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(n, k + SLACK)), k)
        if not (self.params.kind == "ivf" and self.params.pq_m):
            return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        _, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(n, k * self.params.refine))
        return rescore_top(queries, ids, self.corpus, k)

    def _set_breadth(self, nprobe: int) -> None:
        set_nprobe(self.index, nprobe)


def exact_top(queries: np.ndarray, corpus: VectorFile, k: int, block: int = 16384) -> np.ndarray:
    """Each query's ``k`` nearest corpus rows by exact inner product, in one pass over the corpus in blocks
    (memory: a block of scores and two k-wide lists per query)."""
    queries = np.asarray(queries, np.float32)
    k = min(k, len(corpus))
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start, vectors in corpus.blocks(block):
        s = queries @ vectors.T
        if s.shape[1] > k:
            top = np.argpartition(-s, k - 1, axis=1)[:, :k]
            s = np.take_along_axis(s, top, 1)
        else:
            top = np.broadcast_to(np.arange(s.shape[1]), s.shape)
        s, i = np.concatenate([best_s, s], axis=1), np.concatenate([best_i, top + start], axis=1)
        keep = np.argpartition(-s, k - 1, axis=1)[:, :k] if s.shape[1] > k else np.argsort(-s, axis=1)
        best_s, best_i = np.take_along_axis(s, keep, 1), np.take_along_axis(i, keep, 1)
    return best_i


def recall_at(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact top-k that ``found`` holds."""
    k = exact.shape[1]
    return float(np.mean([len(np.intersect1d(a[a >= 0], b)) / k for a, b in zip(found, exact)]))


def _tune(loaded: LoadedIndex, sample: np.ndarray, k: int) -> tuple[int, float]:
    """The fewest IVF cells to search (doubling from 8) for recall@k >= RECALL_TARGET on ``sample``."""
    import faiss

    exact = exact_top(sample, loaded.corpus, k)
    nlist = faiss.extract_index_ivf(loaded.index).nlist
    nprobe = min(8, nlist)
    while True:
        loaded._set_breadth(nprobe)
        recall = recall_at(loaded.search(sample, k)[1], exact)
        if recall >= RECALL_TARGET or nprobe >= nlist:
            return nprobe, recall
        nprobe = min(nlist, nprobe * 2)


def _tune_sample(emb: Embeddings, corpus: VectorFile) -> np.ndarray:
    side = emb.reader("queries") if emb.manifest["count"].get("queries") else corpus
    rows = np.sort(np.random.default_rng(0).choice(len(side), size=min(TUNE_QUERIES, len(side)), replace=False))
    return side[rows]


def open_index(emb: Embeddings, params: IndexParams = IndexParams(), k: int = 100) -> LoadedIndex:
    """The saved index for these embeddings and parameters, built and saved first if there is none, with its
    search breadth set (tuned for recall@``k`` when IVF is given no ``nprobe``)."""
    import faiss

    corpus = emb.reader("corpus")
    params = params.resolved(*corpus.shape)
    key = hashlib.sha256(json.dumps({"emb": _manifest_digest(emb), **params.build_params()},
                                    sort_keys=True).encode()).hexdigest()[:16]
    folder = emb.folder / "indexes" / f"{params.kind}-{key}"
    if (folder / "index.faiss").exists():
        read_manifest(folder, KIND)
        loaded = LoadedIndex(faiss.read_index(str(folder / "index.faiss")), folder, True, 0.0, params, corpus)
    else:
        start = time.perf_counter()
        index = _build(params, corpus)
        seconds = time.perf_counter() - start
        with output_dir(folder, force=True) as stage:
            faiss.write_index(index, str(stage / "index.faiss"))
            write_manifest(stage, {"kind": KIND, "embeddings": _manifest_digest(emb), "ntotal": int(index.ntotal),
                                   "build_seconds": round(seconds, 3), **params.build_params()})
        loaded = LoadedIndex(index, folder, False, seconds, params, corpus)
    if params.kind == "hnsw":
        loaded.index.hnsw.efSearch = params.ef_search
    elif params.kind == "ivf":
        loaded.params = replace(params, nprobe=params.nprobe or _tuned(loaded, emb, k))
        loaded._set_breadth(loaded.params.nprobe)
    return loaded


def _tuned(loaded: LoadedIndex, emb: Embeddings, k: int) -> int:
    """The tuned ``nprobe`` for recall@k, measured once per index, depth and refine factor and kept beside it."""
    path = loaded.path / "tuned.json"
    tuned = json.loads(path.read_text()) if path.exists() else {}
    slot = f"k={min(k, loaded.index.ntotal)},refine={loaded.params.refine}"
    if slot not in tuned:
        nprobe, recall = _tune(loaded, _tune_sample(emb, loaded.corpus), k)
        tuned[slot] = {"nprobe": nprobe, "recall": round(recall, 4), "sample": TUNE_QUERIES}
        write_text_atomic(path, json.dumps(tuned, indent=2, sort_keys=True) + "\n")
    loaded.recall = tuned[slot]["recall"]
    return int(tuned[slot]["nprobe"])


def describe(loaded: LoadedIndex) -> dict[str, Any]:
    """What was used, for summaries and manifests."""
    p = loaded.params
    fields = {"flat": (), "hnsw": ("hnsw_m", "ef_construction", "ef_search"),
              "ivf": ("nlist", "nprobe", "pq_m") + (("refine",) if p.pq_m else ())}[p.kind]
    return {"kind": p.kind, **{k: getattr(p, k) for k in fields}, "recall_at_k": loaded.recall,
            "reused": loaded.reused, "build_seconds": round(loaded.build_seconds, 3)}
