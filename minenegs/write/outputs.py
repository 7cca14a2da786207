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
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import recipe
from ..artifacts import is_stdout, output_dir, output_file, write_text_atomic
from ..settings import setting
from .batching import ORDERS, in_batches
from ..select.adaptive import RECIPES
from ..select.selection import Selection

ROW_BATCH = 4096
Rows = Iterator[dict[str, Any]]


class _Texts:
    """Query texts, and the texts of just the documents the selection uses (taken from the arrow column)."""

    def __init__(self, emb, sel: Selection, corpus_texts) -> None:
        import pyarrow as pa

        t = emb.table("queries")
        self.queries = dict(zip(t.ids, t.texts))
        parts = [*sel.positives, *sel.negatives, *sel.promoted]
        rows = np.unique(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)
        self.docs = dict(zip(rows.tolist(), corpus_texts.take(pa.array(rows)).to_pylist()))


@dataclass(frozen=True)
class Shape:
    """Column names: the query's and the positive's, the scores list's; ``judge`` adds the judge's scores
    (``ce_score``) where one ran. ``SENTENCE_TRANSFORMERS`` is the shape of its ``mine_hard_negatives``."""

    anchor: str = "anchor"
    positive: str = "positive"
    score: str = "score"
    judge: bool = True


MINENEGS = Shape()


@dataclass
class _Query:
    """One query's output material; promoted pseudo-positives are among its positives."""

    i: int
    qid: str
    pos: np.ndarray
    pscore: np.ndarray
    neg: np.ndarray
    nscore: np.ndarray
    pce: np.ndarray | None
    nce: np.ndarray | None

    def score_lists(self, shape: Shape, scores: bool, p: int | None = None) -> dict[str, list[float]]:
        """The dense scores (and the judge's logits, where one ran): positive(s) then negatives."""
        if not scores:
            return {}
        pick = (lambda a: [float(a[p])]) if p is not None else (lambda a: [float(x) for x in a])
        out = {shape.score: pick(self.pscore) + [float(x) for x in self.nscore]}
        if self.pce is not None and shape.judge:
            out["ce_score"] = pick(self.pce) + [float(x) for x in self.nce]
        return out


def _per_query(sel: Selection) -> Iterator[_Query]:
    has_ce = bool(sel.negative_ce)
    for i, qid in enumerate(sel.query_ids):
        promoted = sel.promoted[i] if sel.promoted else sel.positives[i][:0]
        pos = np.concatenate([sel.positives[i], promoted])
        pscore = np.concatenate([sel.positive_scores[i], sel.promoted_scores[i] if sel.promoted else promoted[:0]])
        pce = np.concatenate([sel.positive_ce[i], sel.promoted_ce[i]]) if has_ce else None
        yield _Query(i, qid, pos, pscore, sel.negatives[i], sel.negative_scores[i], pce,
                     sel.negative_ce[i] if has_ce else None)


def _triplet(sel, tx, n, scores, clusters, shape=MINENEGS) -> Rows:
    for q in _per_query(sel):
        for k, p in enumerate(q.pos):
            lists = q.score_lists(shape, scores, k)
            for j, d in enumerate(q.neg):
                row = {shape.anchor: tx.queries[q.qid], shape.positive: tx.docs[p], "negative": tx.docs[d]}
                row.update({name: [v[0], v[1 + j]] for name, v in lists.items()})
                yield _with_cluster(row, clusters, q.i)


def _ntuple(sel, tx, n, scores, clusters, shape=MINENEGS) -> Rows:
    for q in _per_query(sel):
        if len(q.neg) < n:
            continue
        for k, p in enumerate(q.pos):
            row = {shape.anchor: tx.queries[q.qid], shape.positive: tx.docs[p]}
            row.update({f"negative_{j}": tx.docs[d] for j, d in enumerate(q.neg, 1)})
            row.update(q.score_lists(shape, scores, k))
            yield _with_cluster(row, clusters, q.i)


def _labeled_list(sel, tx, n, scores, clusters, shape=MINENEGS) -> Rows:
    for q in _per_query(sel):
        row = {shape.anchor: tx.queries[q.qid], "documents": [tx.docs[d] for d in [*q.pos, *q.neg]],
               "labels": [1] * len(q.pos) + [0] * len(q.neg)}
        row.update({f"{k}s": v for k, v in q.score_lists(shape, scores).items()})
        yield _with_cluster(row, clusters, q.i)


def _ids(sel, tx, n, scores, clusters, shape=MINENEGS, doc_ids=None) -> Rows:
    for q in _per_query(sel):
        for k, p in enumerate(q.pos):
            lists = q.score_lists(shape, True, k)
            row = {"query_id": q.qid, "document_ids": [doc_ids[d] for d in [p, *q.neg]], "scores": lists[shape.score]}
            if scores and "ce_score" in lists:
                row["ce_scores"] = lists["ce_score"]
            yield _with_cluster(row, clusters, q.i)


def _flag(sel, tx, n, scores, clusters, shape=MINENEGS) -> Rows:
    """FlagEmbedding rows; with ``scores``, ``pos_scores``/``neg_scores`` are the cross-encoder's logits where
    one ran (the teacher scores FlagEmbedding distils from), else the dense scores."""
    for q in _per_query(sel):
        row = {"query": tx.queries[q.qid], "pos": [tx.docs[d] for d in q.pos], "neg": [tx.docs[d] for d in q.neg]}
        if scores:
            pos, neg = (q.pce, q.nce) if q.pce is not None else (q.pscore, q.nscore)
            row["pos_scores"] = [float(s) for s in pos]
            row["neg_scores"] = [float(s) for s in neg]
        yield _with_cluster(row, clusters, q.i)


def _st_labeled_pair(sel, tx, n, scores, clusters, shape=MINENEGS) -> Rows:
    """sentence-transformers' labeled-pair: per query, a row per positive (label 1, or its score) then per negative
    (label 0, or its score)."""
    for q in _per_query(sel):
        for docs, values, label in ((q.pos, q.pscore, 1), (q.neg, q.nscore, 0)):
            for d, v in zip(docs, values):
                yield {shape.anchor: tx.queries[q.qid], shape.positive: tx.docs[d],
                       **({"score": float(v)} if scores else {"label": label})}


def _st_labeled_list(sel, tx, n, scores, clusters, shape=MINENEGS) -> Rows:
    """sentence-transformers' labeled-list: a row per (query, positive) of queries with negatives, the positive
    first in the list, labels (or scores) beside."""
    for q in _per_query(sel):
        if not len(q.neg):
            continue
        for k, p in enumerate(q.pos):
            lists = q.score_lists(shape, True, k)
            yield {shape.anchor: tx.queries[q.qid], shape.positive: [tx.docs[d] for d in [p, *q.neg]],
                   **({"scores": lists[shape.score]} if scores else {"labels": [1] + [0] * len(q.neg)})}


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
# sentence-transformers' formats, as its ``mine_hard_negatives`` returns them (``minenegs.mine_hard_negatives``)
ST_FORMATS: dict[str, Callable[..., Rows]] = {
    "triplet": _triplet,
    "n-tuple": _ntuple,
    "labeled-pair": _st_labeled_pair,
    "labeled-list": _st_labeled_list,
}


@dataclass(frozen=True)
class Writing:
    """Where and how ``mine`` and ``filter`` write their rows, and when they refuse to: the ``output`` and keyword
    settings of :func:`minenegs.api.mine` and :func:`minenegs.api.filter`, as the command line sets them."""

    output: Path = setting(..., "The file to write (NAME.arrow: a Hugging Face dataset folder; -: standard output).",
                           short="-o")
    force: bool = setting(False, "Replace an existing output.")
    fmt: str = setting(recipe.FORMAT, "triplet, n-tuple, labeled-list, ids or flag-jsonl.", flag="--format",
                       choices=FORMATS)
    scores: bool = setting(False, "Add the positives' and negatives' scores.", flag="--scores")
    batch_order: str = setting("pool", "pool (the pool's query order) or clusters: blocks of --batch-size rows from one "
                               "query cluster (pool mined with --query-clusters), blocks shuffled with --seed, no "
                               "anchor or positive text twice in a block. Train without reshuffling (README).",
                               choices=ORDERS)
    batch_size: int = setting(32, "Rows per block with --batch-order clusters: the trainer's batch size.", min=1)
    min_coverage: float | None = setting(help="Exit 3 unless this share of queries got all their negatives (e.g. "
                                         "0.95).")
    adapt: str = setting("adaptive", "adaptive: where the data looks densely relevant (most top candidates outrank the "
                         "labelled positive), the default options mine the dense recipe instead: one negative a query "
                         "from further down the pool, unlike every positive (README: dense relevance); fixed: the "
                         "options as given, always.", flag="--recipe", choices=RECIPES, panel="Strategy")
    fail_on_dense: bool = setting(False, "Exit 3, writing nothing, instead of warning when the negatives asked for "
                                  "look likely to hurt (dense relevance).", flag="--fail-on-dense", panel="Strategy")


def output_rows(selection: Selection, emb, fmt: str, num_negatives: int, scores: bool, shape: Shape = MINENEGS,
         formats: dict[str, Callable[..., Rows]] = FORMATS, corpus_texts=None,
         clusters: dict[int, int] | None = None) -> Rows:
    """The selection's rows in ``fmt`` (of ``formats``), texts joined from the embeddings folder ``emb``."""
    if corpus_texts is None:
        corpus_texts = emb.column("corpus", "text")
    kwargs = {"doc_ids": emb.ids("corpus")} if fmt == "ids" else {}
    return formats[fmt](selection, _Texts(emb, selection, corpus_texts), num_negatives, scores, clusters, shape,
                        **kwargs)


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


def _write_dataset(rows: Rows, folder: Path, metadata: dict[str, Any]) -> int:
    """Rows as a Hugging Face dataset folder (``Dataset.save_to_disk``; ``datasets.load_from_disk`` opens it),
    the provenance in its description."""
    import pyarrow as pa
    from datasets import Dataset, DatasetInfo
    from datasets.table import InMemoryTable
    from datasets.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    parts, batch = [], []
    for row in itertools.chain(rows, [None]):
        if row is not None:
            batch.append(row)
        if batch and (row is None or len(batch) >= ROW_BATCH):
            parts.append(pa.Table.from_pylist(batch, schema=parts[0].schema if parts else None))
            batch = []
    table = pa.concat_tables(parts) if parts else pa.table({})
    info = DatasetInfo(description=json.dumps({"minenegs": {**metadata, "rows": table.num_rows}}, sort_keys=True))
    shown = not are_progress_bars_disabled()
    disable_progress_bars()  # progress is the command's to show, on its own terms
    try:
        Dataset(InMemoryTable(table), info=info).save_to_disk(str(folder))
    finally:
        if shown:
            enable_progress_bars()
    return table.num_rows


def write_output(selection: Selection, emb, out: Path | str, *, fmt: str = "n-tuple", num_negatives: int,
                 scores: bool = False, metadata: dict[str, Any] | None = None, force: bool = False,
                 clusters: dict[int, int] | None = None, corpus_texts=None,
                 batches: tuple[int, int] | None = None) -> int:
    """Write the selection as ``fmt`` to ``out`` (all or nothing); return the number of rows.

    Short queries (fewer than ``num_negatives`` negatives) are listed in ``<out>.short.txt``. ``batches``
    (batch size, seed) writes the rows in topic-homogeneous blocks (:func:`~minenegs.write.batching.in_batches`).
    """
    to_stdout = is_stdout(out)
    out = Path(out)
    rows = output_rows(selection, emb, fmt, num_negatives, scores, corpus_texts=corpus_texts, clusters=clusters)
    if batches is not None:
        rows = in_batches(rows, *batches)
    meta = {**(metadata or {}), "format": fmt, "short_queries": len(selection.short)}
    if to_stdout:  # JSON lines, for jq and friends
        count = 0
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
        sys.stdout.flush()
        return count
    if out.suffix.lower() == ".arrow":
        with output_dir(out, force) as stage:
            count = _write_dataset(rows, stage, meta)
    else:
        with output_file(out, force) as tmp:
            count = _write_file(rows, tmp, fmt, meta)
    side = out.with_name(out.name + ".short.txt")
    if selection.short:
        write_text_atomic(side, "".join(q + "\n" for q in selection.short))
    elif side.exists():
        side.unlink()
    return count


def _write_file(rows: Rows, tmp: Path, fmt: str, meta: dict[str, Any]) -> int:
    """Rows as JSON lines (flag-jsonl) or Parquet into ``tmp``; returns the row count."""
    if fmt != "flag-jsonl":
        return _write_parquet(rows, tmp, meta)
    count = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count
