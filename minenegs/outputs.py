"""Training rows from a selection: texts are joined here, and only here.

Formats (``--format``), column names as sentence-transformers and FlagEmbedding read them:

- ``triplet``: ``anchor, positive, negative``, one row per (query, positive, negative)
- ``n-tuple``: ``anchor, positive, negative_1..n``, one row per (query, positive) of queries with n negatives
- ``labeled-list``: ``anchor, documents, labels``: one row per query, its positives (label 1) then negatives (0)
- ``ids``: ``query_id, document_ids, scores``: one row per (query, positive), the positive first; the shape
  sentence-transformers' ``resolve_ids`` reads
- ``flag-jsonl``: FlagEmbedding's ``{"query", "pos", "neg"}`` JSON lines, one per query

``scores=True`` adds the dense scores (``score``: the positive's then the negatives', or ``pos_scores`` and
``neg_scores`` in flag-jsonl), ready for Margin-MSE. ``cluster_id`` is carried when the pool has it.
Parquet outputs carry their provenance as key-value metadata under ``minenegs``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import output_file, write_text_atomic
from .mine import Selection

ROW_BATCH = 4096
Rows = Iterator[dict[str, Any]]


class _Texts:
    def __init__(self, emb) -> None:
        self.docs = emb.table("corpus").texts
        t = emb.table("queries")
        self.queries = dict(zip(t.ids, t.texts))


def _per_query(sel: Selection) -> Iterator[tuple[int, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    for i, qid in enumerate(sel.query_ids):
        yield i, qid, sel.positives[i], sel.positive_scores[i], sel.negatives[i], sel.negative_scores[i]


def _triplet(sel, tx, n, scores, clusters) -> Rows:
    for i, qid, pos, pscore, neg, nscore in _per_query(sel):
        for p, ps in zip(pos, pscore):
            for d, ds in zip(neg, nscore):
                row = {"anchor": tx.queries[qid], "positive": tx.docs[p], "negative": tx.docs[d]}
                if scores:
                    row["score"] = [float(ps), float(ds)]
                yield _with_cluster(row, clusters, i)


def _ntuple(sel, tx, n, scores, clusters) -> Rows:
    for i, qid, pos, pscore, neg, nscore in _per_query(sel):
        if len(neg) < n:
            continue
        for p, ps in zip(pos, pscore):
            row = {"anchor": tx.queries[qid], "positive": tx.docs[p]}
            row.update({f"negative_{k}": tx.docs[d] for k, d in enumerate(neg, 1)})
            if scores:
                row["score"] = [float(ps)] + [float(s) for s in nscore]
            yield _with_cluster(row, clusters, i)


def _labeled_list(sel, tx, n, scores, clusters) -> Rows:
    for i, qid, pos, pscore, neg, nscore in _per_query(sel):
        row = {"anchor": tx.queries[qid], "documents": [tx.docs[d] for d in list(pos) + list(neg)],
               "labels": [1] * len(pos) + [0] * len(neg)}
        if scores:
            row["scores"] = [float(s) for s in list(pscore) + list(nscore)]
        yield _with_cluster(row, clusters, i)


def _ids(sel, tx, n, scores, clusters, doc_ids=None) -> Rows:
    for i, qid, pos, pscore, neg, nscore in _per_query(sel):
        for p, ps in zip(pos, pscore):
            row = {"query_id": qid, "document_ids": [doc_ids[d] for d in [p, *neg]],
                   "scores": [float(ps)] + [float(s) for s in nscore]}
            yield _with_cluster(row, clusters, i)


def _flag(sel, tx, n, scores, clusters) -> Rows:
    for i, qid, pos, pscore, neg, nscore in _per_query(sel):
        row = {"query": tx.queries[qid], "pos": [tx.docs[d] for d in pos], "neg": [tx.docs[d] for d in neg]}
        if scores:
            row["pos_scores"] = [float(s) for s in pscore]
            row["neg_scores"] = [float(s) for s in nscore]
        yield _with_cluster(row, clusters, i)


def _with_cluster(row: dict, clusters: dict[int, int] | None, i: int) -> dict:
    if clusters is not None:
        row["cluster_id"] = clusters[i]
    return row


FORMATS: dict[str, Callable[..., Rows]] = {
    "triplet": _triplet,
    "n-tuple": _ntuple,
    "labeled-list": _labeled_list,
    "ids": _ids,
    "flag-jsonl": _flag,
}


def _write_parquet(rows: Rows, tmp: Path, metadata: dict[str, Any]) -> int:
    """Rows to Parquet in batches; ``metadata`` (plus the row count) goes in the footer under ``minenegs``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    count = 0
    batch: list[dict] = []
    try:
        for row in itertools.chain(rows, [None]):
            if row is not None:
                batch.append(row)
                count += 1
            if batch and (row is None or len(batch) >= ROW_BATCH):
                table = pa.Table.from_pylist(batch, schema=writer.schema if writer else None)
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                batch = []
        writer = writer or pq.ParquetWriter(tmp, pa.schema([]))
        writer.add_key_value_metadata({"minenegs": json.dumps({**metadata, "rows": count}, sort_keys=True)})
    finally:
        if writer is not None:
            writer.close()
    return count


def write_output(selection: Selection, emb, out: Path | str, *, fmt: str = "n-tuple", num_negatives: int,
                 scores: bool = False, metadata: dict[str, Any] | None = None, force: bool = False,
                 clusters: dict[int, int] | None = None) -> int:
    """Write the selection as ``fmt`` to ``out`` (all or nothing); return the number of rows.

    Short queries (fewer than ``num_negatives`` negatives) are listed in ``<out>.short.txt``.
    """
    out = Path(out)
    tx = _Texts(emb)
    kwargs = {"doc_ids": emb.ids("corpus")} if fmt == "ids" else {}
    rows = FORMATS[fmt](selection, tx, num_negatives, scores, clusters, **kwargs)
    meta = {**(metadata or {}), "format": fmt, "short_queries": len(selection.short)}
    with output_file(out, force) as tmp:
        if fmt == "flag-jsonl":
            count = 0
            with open(tmp, "w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                    count += 1
        else:
            count = _write_parquet(rows, tmp, meta)
    side = out.with_name(out.name + ".short.txt")
    if selection.short:
        write_text_atomic(side, "".join(q + "\n" for q in selection.short))
    elif side.exists():
        side.unlink()
    return count
