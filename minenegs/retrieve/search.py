"""Retrieving one query batch's pool rows: the retrievers (dense index, BM25, their fusion), the positives and
earlier rounds' candidates added and scored exactly, and the batch written as a part file. Opened once per
process: the driver of a local run, or each Ray worker (``on_ray``). The pool folder is :mod:`.pool`'s."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .. import recipe
from ..artifacts import read_manifest, read_parquet, write_atomic
from ..encode.folder import Embeddings
from ..errors import InputError
from ..settings import setting
from .index import IndexParams, open_index, open_sharded
from .shards import ShardLists

KIND = "pool"
RETRIEVERS = ("dense", "bm25", "hybrid")


@dataclass(frozen=True)
class PoolParams:
    depth: int = setting(recipe.DEPTH, "Candidates retrieved per query.", min=1)
    retriever: str = setting(recipe.RETRIEVER, "dense, bm25 or hybrid (union fused by reciprocal rank).", choices=RETRIEVERS)
    index: IndexParams = field(default_factory=IndexParams)
    rrf_k: int = 60
    query_clusters: int = setting(0, "k-means clusters of queries, written as cluster_id (0: off).", min=0)
    shards: int = setting(1, "Search the corpus as this many shards, each for its own top-k, merged exactly per query "
                          "(flat or IVF-Flat index: the same pool as one shard; hybrid: BM25 stays one index over "
                          "every text, its statistics global).", min=1, panel="Retrieval and index")
    previous: tuple[str, ...] = setting((), "A pool of an earlier round (e.g. mined before fine-tuning; repeatable): its candidates join this round's, all scored and ranked by these embeddings.", flag="--previous-pool", type="paths")

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise InputError(f"--depth {self.depth}: must be at least 1")
        if self.retriever not in RETRIEVERS:
            raise InputError(f"--retriever {self.retriever}: choose one of {', '.join(RETRIEVERS)}")
        if self.shards < 1:
            raise InputError(f"--shards {self.shards}: must be at least 1")
        if self.shards > 1 and (self.index.kind not in ("flat", "ivf", "auto") or self.retriever == "bm25"):
            raise InputError(f"--shards {self.shards}: sharded search is the dense one (--retriever dense or hybrid), "
                             "with a flat or an IVF index")
        if self.query_clusters < 0:
            raise InputError("--query-clusters must be 0 (off) or more")
        if self.previous and self.retriever == "bm25":
            raise InputError("--previous-pool rescores candidates with the new model: use --retriever dense or hybrid")
        for folder in self.previous:
            if not (Path(folder) / "candidates.parquet").exists():
                raise InputError(f"--previous-pool {folder}: not a candidate pool folder (no candidates.parquet)")
        object.__setattr__(self, "previous", tuple(str(Path(f).resolve()) for f in self.previous))

    @classmethod
    def flat(cls, **settings: Any) -> "PoolParams":
        """From one flat set of settings: the pool's own and its index's (``IndexParams`` fields)."""
        index = {k: settings.pop(k) for k in list(settings) if k in {f.name for f in fields(IndexParams)}}
        return cls(**{**settings, "previous": tuple(map(str, settings.get("previous") or ()))},
                   index=IndexParams(**index))

    def key_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["index"] = asdict(self.index) if self.retriever != "bm25" else None
        del d["shards"]  # a sharded search gives the same pool as one index
        d["previous"] = [read_manifest(Path(f), KIND).get("key") for f in self.previous]
        if not self.previous:
            del d["previous"]  # pools made before rounds existed keep their keys
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
        """Each query's ``k`` best documents and their scores, best first, a tie going to the lower index: the
        same ranking whatever the versions of bm25s and NumPy (whose partial sorts order ties as they please)."""
        k = min(k, self.n)
        docs, scores = np.zeros((len(queries), k), np.int64), np.zeros((len(queries), k), np.float32)
        for i, tokens in enumerate(self._bm25s.tokenize(queries, stopwords="en", show_progress=False,
                                                        return_ids=False)):
            s = self.retriever.get_scores(tokens) if tokens else np.zeros(self.n, np.float32)
            docs[i] = top_k(s, k)
            scores[i] = s[docs[i]]
        return docs, scores


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The indices of the ``k`` highest ``scores``, highest first, ties to the lower index."""
    if k < len(scores):
        edge = scores[np.argpartition(-scores, k - 1)[:k]].min()
        above = np.flatnonzero(scores > edge)
        idx = np.concatenate([above, np.flatnonzero(scores == edge)[:k - len(above)]])
    else:
        idx = np.arange(len(scores))
    return idx[np.lexsort((idx, -scores[idx]))]


# source codes 0..4; a fused candidate's bits: 1 dense, 2 bm25; "previous": only an earlier round's pool had it
SOURCES = ("dense", "bm25", "both", "qrels", "previous")


@dataclass
class _Rows:
    """One query batch's pool rows as columns, grouped by query (batch-relative ``q``) and ordered by rank."""

    q: np.ndarray
    doc: np.ndarray
    rank: np.ndarray  # 0 for a positive not retrieved
    source: np.ndarray  # index into SOURCES
    score: np.ndarray  # float32, NaN where not known yet
    bm25: np.ndarray  # float32, NaN where none

    def columns(self) -> list[np.ndarray]:
        return [getattr(self, f.name) for f in fields(self)]

    def take(self, order: np.ndarray) -> "_Rows":
        return _Rows(*(c[order] for c in self.columns()))

    def __add__(self, other: "_Rows") -> "_Rows":
        """These rows, then ``other``'s."""
        return _Rows(*(np.concatenate(pair) for pair in zip(self.columns(), other.columns())))


def _ranked(ids: np.ndarray, valid: np.ndarray, source: int, score: np.ndarray | None = None,
            bm25: np.ndarray | None = None) -> _Rows:
    """Rows from ranked id lists (one row per query, best first), keeping the ``valid`` entries."""
    b, k = ids.shape
    q = np.repeat(np.arange(b), k)[valid.ravel()]
    rank = np.cumsum(valid, axis=1)[valid].astype(np.int32)
    nan = np.full(len(q), np.nan, np.float32)
    return _Rows(q, ids[valid].astype(np.int64), rank, np.full(len(q), source, np.int8),
                 score[valid].astype(np.float32) if score is not None else nan,
                 bm25[valid].astype(np.float32) if bm25 is not None else nan)


def _fuse(dense: _Rows, bm25: _Rows, rrf_k: int) -> _Rows:
    """Reciprocal-rank fusion of two ranked lists per query: a candidate's fused score is the sum of
    1 / (rrf_k + rank) over the lists that hold it; order by fused score, then document."""
    both = dense + bm25
    contrib = 1.0 / (rrf_k + both.rank.astype(np.float64))
    bits = np.where(both.source == 0, 1, 2).astype(np.int8)
    order = np.lexsort((np.arange(len(both.q)), both.doc, both.q))  # dense entry first within a pair
    both, contrib, bits = both.take(order), contrib[order], bits[order]
    first = np.flatnonzero(np.r_[True, (np.diff(both.q) != 0) | (np.diff(both.doc) != 0)])
    fused = np.add.reduceat(contrib, first) if len(first) else contrib
    source = np.bitwise_or.reduceat(bits, first) if len(first) else bits
    out = both.take(first)
    out.source = np.select([source == 3, source == 2], [2, 1], 0).astype(np.int8)
    out.score = np.fmax.reduceat(both.score, first) if len(first) else both.score  # the dense score where known
    out.bm25 = np.fmax.reduceat(both.bm25, first) if len(first) else both.bm25
    order = np.lexsort((out.doc, -fused, out.q))
    out = out.take(order)
    starts = np.searchsorted(out.q, out.q)  # first row of each row's query
    out.rank = (np.arange(len(out.q)) - starts + 1).astype(np.int32)
    return out


def _by_query(tables: list, query_ids, doc_ids) -> tuple[np.ndarray, np.ndarray]:
    """The (query_id, doc_id) pairs of ``tables`` as ``(ptr, docs)`` over this folder's query and document rows:
    query ``i``'s documents are ``docs[ptr[i]:ptr[i+1]]``, in table order, each once; unknown ids dropped."""
    import pyarrow as pa
    import pyarrow.compute as pc

    q = np.concatenate([pc.index_in(t["query_id"], value_set=query_ids).fill_null(-1).to_numpy() for t in tables])
    d = _rows_of(pa.chunked_array([t["doc_id"] for t in tables]), doc_ids)
    q, d = q.astype(np.int64), d.astype(np.int64)
    keep = (q >= 0) & (d >= 0)
    q, d = q[keep], d[keep]
    _, first = np.unique((q << 32) | d, return_index=True)
    first.sort()
    q, d = q[first], d[first]
    order = np.argsort(q, kind="stable")
    ptr = np.concatenate([[0], np.cumsum(np.bincount(q, minlength=len(query_ids)))])
    return ptr, d[order]


def _rows_of(wanted, doc_ids) -> np.ndarray:
    """The corpus row of each id in ``wanted`` (its first, -1 for an unknown id), with a lookup built over the
    wanted ids, not over the whole corpus's: one pass over ``doc_ids``, memory by the wanted ones."""
    import pyarrow.compute as pc

    distinct = pc.unique(wanted)
    hit = pc.index_in(doc_ids, value_set=distinct)
    rows = np.flatnonzero(hit.is_valid().to_numpy(zero_copy_only=False))
    which = hit.filter(hit.is_valid()).to_numpy()
    row_of = np.full(len(distinct), -1, np.int64)
    row_of[which[::-1]] = rows[::-1]  # the first row of an id given twice, as a lookup over the corpus gives it
    return row_of[pc.index_in(wanted, value_set=distinct).fill_null(-1).to_numpy()] if len(distinct) else \
        np.full(len(wanted), -1, np.int64)


def _positives(emb: Embeddings, query_ids, doc_ids) -> tuple[np.ndarray, np.ndarray]:
    """Each query's positive corpus rows (qrels with a score above 0), as :func:`_by_query` gives them."""
    import pyarrow.compute as pc

    t = read_parquet(emb.folder / "qrels.parquet")
    return _by_query([t.filter(pc.greater(t["score"], 0))], query_ids, doc_ids)


def _previous_candidates(folders: tuple[str, ...], query_ids, doc_ids) -> tuple[np.ndarray, np.ndarray]:
    """The candidates (retrieved rows, not positives added from the qrels) of earlier rounds' pools, as
    :func:`_by_query` gives them."""
    import pyarrow.compute as pc

    tables = [read_parquet(Path(f) / "candidates.parquet", columns=["query_id", "doc_id", "rank"]) for f in folders]
    return _by_query([t.filter(pc.is_valid(t["rank"])) for t in tables], query_ids, doc_ids)


def _add_positives(rows: _Rows, ptr: np.ndarray, docs: np.ndarray, start: int, stop: int) -> tuple[_Rows, np.ndarray]:
    """``rows`` with each query's positives that were not retrieved appended after its candidates, and which
    rows are positives."""
    counts = np.diff(ptr[start:stop + 1])
    pq_ = np.repeat(np.arange(stop - start), counts)
    pdoc = docs[ptr[start]:ptr[stop]]
    cand_keys, pos_keys = (rows.q << 32) | rows.doc, (pq_ << 32) | pdoc
    missing = ~np.isin(pos_keys, cand_keys)
    n = int(missing.sum())
    nan = np.full(n, np.nan, np.float32)
    extra = _Rows(pq_[missing], pdoc[missing], np.zeros(n, np.int32), np.full(n, 3, np.int8), nan, nan)
    both = rows + extra
    out = both.take(np.argsort(both.q, kind="stable"))
    return out, np.isin((out.q << 32) | out.doc, pos_keys)


def _union(rows: _Rows, earlier: _Rows) -> _Rows:
    """``rows`` plus the ``earlier`` candidates they lack, grouped by query (``rows``' entry kept on a tie)."""
    both = rows + earlier
    order = np.lexsort((np.arange(len(both.q)), both.doc, both.q))
    both = both.take(order)
    first = np.r_[True, (np.diff(both.q) != 0) | (np.diff(both.doc) != 0)]
    return both.take(np.flatnonzero(first))


def _by_score(rows: _Rows) -> _Rows:
    """Rows re-ranked within each query by score (best first, then by document)."""
    out = rows.take(np.lexsort((rows.doc, -rows.score, rows.q)))
    out.rank = (np.arange(len(out.q)) - np.searchsorted(out.q, out.q) + 1).astype(np.int32)
    return out


class Retrieval:
    """What query batches are retrieved against, opened once per process (the driver, or each Ray worker):
    the index or BM25, each query's positives, the ids. :meth:`batch` gives one batch's pool rows."""

    def __init__(self, emb: Embeddings, params: PoolParams, *, searchers: bool = True, dense: Any = None) -> None:
        """``searchers=False`` opens what the driver of a Ray job needs: the ids, the positives and the dense
        index (built and tuned if it is not yet saved), but not BM25. ``dense``: the dense lists of a sharded
        search run elsewhere (:class:`.shards.ShardLists`), instead of an index here."""
        self.corpus, self.queries = emb.reader("corpus"), emb.reader("queries")
        self.query_ids, self.doc_ids = emb.id_array("queries"), emb.id_array("corpus")
        if not len(self.query_ids):
            raise InputError(f"{emb.folder}: has no queries to mine for; encode with queries and qrels")
        self.ptr, self.pos_docs = _positives(emb, self.query_ids, self.doc_ids)
        self.depth = min(params.depth, len(self.doc_ids))
        self.rrf_k = params.rrf_k
        self.dense = dense if dense is not None or params.retriever == "bm25" else \
            open_index(emb, params.index, self.depth) if params.shards == 1 else \
            open_sharded(emb, params.shards, params.index, self.depth)
        use_bm25 = searchers and params.retriever != "dense"
        self.bm25 = _Bm25(emb.table("corpus").texts) if use_bm25 else None
        self.query_texts = emb.table("queries").texts if use_bm25 else None
        self.previous = _previous_candidates(params.previous, self.query_ids, self.doc_ids) if params.previous else None

    def _exact(self, rows: _Rows, qv: np.ndarray) -> None:
        """Fill the scores not known yet with exact dense ones: one scale for all filters."""
        unknown = np.flatnonzero(np.isnan(rows.score))
        if len(unknown):
            rows.score[unknown] = np.einsum("ij,ij->i", self.corpus[rows.doc[unknown]], qv[rows.q[unknown]])

    def _with_previous(self, rows: _Rows, start: int, stop: int, qv: np.ndarray) -> _Rows:
        """The union with earlier rounds' candidates, all scored by this model and ranked by that score."""
        ptr, docs = self.previous
        counts = np.diff(ptr[start:stop + 1])
        n = int(counts.sum())
        nan = np.full(n, np.nan, np.float32)
        earlier = _Rows(np.repeat(np.arange(stop - start), counts), docs[ptr[start]:ptr[stop]],
                        np.zeros(n, np.int32), np.full(n, SOURCES.index("previous"), np.int8), nan, nan.copy())
        rows = _union(rows, earlier)
        self._exact(rows, qv)
        return _by_score(rows)

    def batch(self, start: int, stop: int):
        """The pool rows of queries ``start:stop`` as one record batch, grouped by query, ordered by rank."""
        import pyarrow as pa

        qv = self.queries[start:stop]
        found = []
        if self.dense is not None:
            scores, ids = self.dense.lists(start, self.depth) if isinstance(self.dense, ShardLists) else \
                self.dense.search(qv, self.depth)
            found.append(_ranked(ids, ids >= 0, 0, score=scores))
        if self.bm25 is not None:
            bdocs, bscores = self.bm25.search(self.query_texts[start:stop], self.depth)
            found.append(_ranked(bdocs, bscores > 0, 1, bm25=bscores))
        rows = found[0] if len(found) == 1 else _fuse(*found, self.rrf_k)
        if self.previous is not None:
            rows = self._with_previous(rows, start, stop, qv)
        rows, positive = _add_positives(rows, self.ptr, self.pos_docs, start, stop)
        self._exact(rows, qv)  # positives not retrieved, bm25-only candidates
        qi = rows.q + start
        return pa.RecordBatch.from_arrays([
            pa.array(qi.astype(np.int32)), pa.array(rows.doc.astype(np.int32)),
            self.query_ids.take(pa.array(qi)), self.doc_ids.take(pa.array(rows.doc)),
            pa.array(rows.rank, mask=rows.rank == 0), pa.array(rows.score),
            pa.array(positive), pa.array(SOURCES).take(pa.array(rows.source)),
            pa.array(rows.bm25, mask=np.isnan(rows.bm25)),
        ], schema=_schema())


def part_path(parts: Path, start: int) -> Path:
    return parts / f"{start:010d}.parquet"


def write_part(parts: Path, start: int, batch) -> int:
    """A query batch's rows as a part file, written whole or not at all; returns its row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts.mkdir(parents=True, exist_ok=True)
    write_atomic(part_path(parts, start), lambda fh: pq.write_table(pa.Table.from_batches([batch]), fh))
    return batch.num_rows
