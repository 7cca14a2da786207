"""Training rows from a selection: texts are joined here, and only here."""

from __future__ import annotations

from pathlib import Path

from .artifacts import output_file
from .embeddings import Embeddings
from .mine import Selection

ROW_BATCH = 4096


def write_ntuple(selection: Selection, emb: Embeddings, out: Path | str, num_negatives: int,
                 force: bool = False) -> int:
    """``anchor, positive, negative_1..n``: one row per (query, positive) of every query with n negatives.

    Queries short of negatives are left out (they are listed in ``selection.short``). Returns the row count.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    corpus = emb.table("corpus").texts
    queries = dict(zip(*(lambda t: (t.ids, t.texts))(emb.table("queries"))))
    names = ["anchor", "positive"] + [f"negative_{i}" for i in range(1, num_negatives + 1)]
    schema = pa.schema([(name, pa.string()) for name in names])
    rows = 0
    with output_file(out, force) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            batch: dict[str, list[str]] = {name: [] for name in names}
            for qid, negs, positives in zip(selection.query_ids, selection.negatives, selection.positives):
                if len(negs) < num_negatives:
                    continue
                for pos in positives:
                    batch["anchor"].append(queries[qid])
                    batch["positive"].append(corpus[pos])
                    for i, d in enumerate(negs, 1):
                        batch[f"negative_{i}"].append(corpus[d])
                    rows += 1
                if len(batch["anchor"]) >= ROW_BATCH:
                    writer.write_batch(pa.RecordBatch.from_pydict(batch, schema=schema))
                    batch = {name: [] for name in names}
            writer.write_batch(pa.RecordBatch.from_pydict(batch, schema=schema))
    return rows
