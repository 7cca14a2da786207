"""Reading a candidate pool for selection: its columns as arrays, all at once or a chunk of queries at a time;
the corpus's vectors and texts for the filters that need them; the pairs a judge must score."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .filters import CorpusView
from .params import MineParams


POOL_COLUMNS = ["query_idx", "doc_idx", "query_id", "rank", "score", "is_positive"]
CHUNK_ROWS = 1 << 20  # pool rows selected from at once by `mine` and `filter`


def _pool_arrays(t) -> dict[str, np.ndarray]:
    rank = t.column("rank")
    return {
        "query_idx": t.column("query_idx").to_numpy(),
        "doc_idx": t.column("doc_idx").to_numpy(),
        "rank": rank.fill_null(0).to_numpy(),
        "retrieved": rank.is_valid().to_numpy(zero_copy_only=False),
        "score": t.column("score").to_numpy(),
        "is_positive": t.column("is_positive").to_numpy(zero_copy_only=False),
        "query_id": t.column("query_id").combine_chunks(),
    }


def _pool_file(pool: Path):
    import pyarrow.parquet as pq

    return pq.ParquetFile(pool / "candidates.parquet", read_dictionary=["query_id"])


def read_pool_arrays(pool: Path) -> dict[str, np.ndarray]:
    """A pool's columns, every row (query ids dictionary-encoded: one small integer a row)."""
    return _pool_arrays(_pool_file(pool).read(columns=POOL_COLUMNS))


def pool_chunks(pool: Path, rows: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """A pool's columns about ``rows`` (default :data:`CHUNK_ROWS`) at a time, never splitting a query: memory
    bounded by a chunk."""
    import pyarrow as pa

    rows = rows or CHUNK_ROWS
    pfile = _pool_file(pool)
    held, n = [], 0
    for i in range(pfile.num_row_groups):
        held.append(pfile.read_row_group(i, columns=POOL_COLUMNS))
        n += held[-1].num_rows
        last = i == pfile.num_row_groups - 1
        if n < rows and not last:
            continue
        t = pa.concat_tables(held).unify_dictionaries().combine_chunks()
        q = t.column("query_idx").to_numpy()
        cut = len(q) if last else int(np.searchsorted(q, q[-1]))  # the last query may go on in the next group
        if cut == 0:  # one query spans every group held so far
            continue
        yield _pool_arrays(t.slice(0, cut))
        held, n = ([t.slice(cut)], len(q) - cut) if cut < len(q) else ([], 0)


def corpus_view(emb) -> CorpusView:
    """Vectors and texts of an embeddings folder's corpus, for the filters that need them."""

    return CorpusView(emb.reader("corpus"), lambda: emb.column("corpus", "text"))


def judge_pairs(a: dict[str, np.ndarray], params: MineParams) -> np.ndarray:
    """The (query row, corpus row) pairs a cross-encoder must score: positives and candidates to ``ce_depth``."""
    need = a["is_positive"] | (a["retrieved"] & (a["rank"] <= params.ce_depth))
    return np.stack([a["query_idx"][need], a["doc_idx"][need]], axis=1)


_LAST_READ: dict[str, tuple[tuple, dict[str, np.ndarray]]] = {}  # the last pool read, while its file is unchanged


def cached_pool_arrays(pool: Path) -> dict[str, np.ndarray]:
    """:func:`read_pool_arrays`, kept in memory for the next call while the pool's file is unchanged (the drop-in
    is called again and again on one pool)."""
    st = (Path(pool) / "candidates.parquet").stat()
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    if _LAST_READ.get(str(pool), (None,))[0] != stamp:
        _LAST_READ.clear()
        _LAST_READ[str(pool)] = (stamp, read_pool_arrays(pool))
    return _LAST_READ[str(pool)][1]


def without_docs(arrays: dict[str, np.ndarray], own_doc: np.ndarray) -> dict[str, np.ndarray]:
    """The pool's arrays with corpus row ``own_doc[query]`` (-1: none) of each query no longer a retrieved
    candidate (sentence-transformers 6.3 never hands out a corpus text equal to the query's own)."""
    own = (arrays["doc_idx"] == own_doc[arrays["query_idx"]]) & ~arrays["is_positive"]
    return {**arrays, "retrieved": arrays["retrieved"] & ~own} if own.any() else arrays
