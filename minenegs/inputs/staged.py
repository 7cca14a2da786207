"""A corpus file read once, a block at a time, into a Parquet file of (id, text) rows: each shard of a sharded
encode (``encode --shards N``) reads its own row range back, so no process holds every text of the corpus.

The rows are checked as :func:`~minenegs.inputs.tables.read_corpus` checks them (an id and a text on every row,
an id repeated with the same text kept once, with another text refused), with 8 bytes per document held while
reading: a hash of its id, to find repeats.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..records import TextTable
from .readers import RowReader
from .tables import Columns, _source, check_row, conflict, iter_docs

ROWS = 1 << 16  # rows per Parquet row group: a row range is read a group at a time
FILE = "corpus.input.parquet"


class StagedCorpus:
    """The corpus as staged rows; ``keep`` (file rows, ascending) leaves out repeated documents."""

    def __init__(self, path: Path, rows: int, keep: np.ndarray | None = None) -> None:
        self.path, self.keep = path, keep
        self.count = rows if keep is None else len(keep)

    def __len__(self) -> int:
        return self.count

    def rows(self, lo: int, hi: int) -> TextTable:
        """Rows ``lo:hi`` (after repeats are left out), read from the row groups that hold them."""
        wanted = self.keep[lo:hi] if self.keep is not None else np.arange(lo, min(hi, self.count), dtype=np.int64)
        ids, texts = _take(self.path, wanted)
        return TextTable(ids, texts)


def _take(path: Path, rows: np.ndarray) -> tuple[list[str], list[str]]:
    """The ids and texts of the ascending file ``rows``."""
    import pyarrow.parquet as pq

    if not len(rows):
        return [], []
    first, last = int(rows[0]) // ROWS, int(rows[-1]) // ROWS
    table = pq.ParquetFile(path).read_row_groups(list(range(first, last + 1)))
    table = table.take(np.asarray(rows, dtype=np.int64) - first * ROWS)
    return table.column("id").to_pylist(), table.column("text").to_pylist()


def stage_corpus(path: Path | str, columns: Columns, folder: Path,
                 wanted: set[str]) -> tuple[StagedCorpus, dict[str, str], set[str]]:
    """The corpus file ``path`` checked and written to ``folder``/corpus.input.parquet in blocks; returns it, its
    source record, and which ``wanted`` ids (the qrels' documents) it holds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    reader = RowReader.open(path)
    out = Path(folder) / FILE
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    ids: list[str] = []
    texts: list[str] = []
    hashes: list[np.ndarray] = []
    found: set[str] = set()
    with pq.ParquetWriter(out, schema) as writer:
        def flush() -> None:
            writer.write_table(pa.table({"id": ids, "text": texts}, schema=schema), row_group_size=ROWS)
            hashes.append(np.fromiter((int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "little")
                                       for i in ids), dtype=np.uint64, count=len(ids)))
            ids.clear()
            texts.clear()

        for where, doc in iter_docs(reader, columns):
            text = doc.full_text
            check_row(reader.path, "document", where, doc.id, text)
            if doc.id in wanted:
                found.add(doc.id)
            ids.append(doc.id)
            texts.append(text)
            if len(ids) == ROWS:
                flush()
        if ids:
            flush()
    every = np.concatenate(hashes)
    return StagedCorpus(out, len(every), _repeats_left_out(reader, columns, out, every)), _source(reader), found


def _repeats_left_out(reader: RowReader, columns: Columns, staged: Path, hashes: np.ndarray) -> np.ndarray | None:
    """The file rows to keep when an id comes again (None: every row); a repeat with another text is refused,
    naming both rows as the file does."""
    order = np.argsort(hashes, kind="stable")
    same = np.flatnonzero(hashes[order][1:] == hashes[order][:-1])
    if not len(same):
        return None
    rows = np.unique(np.concatenate([order[same], order[same + 1]]))  # every row whose id hash is shared
    first: dict[str, tuple[int, str]] = {}
    dropped = []
    for row, id_, text in zip(rows.tolist(), *_take(staged, rows)):
        if id_ not in first:
            first[id_] = (row, text)
        elif first[id_][1] == text:
            dropped.append(row)
        else:
            where = {}
            for k, (w, _) in enumerate(iter_docs(RowReader.open(reader.path), columns)):
                if k in (first[id_][0], row):
                    where[k] = w
                if len(where) == 2:
                    break
            raise conflict(reader.path, "document", id_, where[row], where[first[id_][0]])
    return np.delete(np.arange(len(hashes), dtype=np.int64), dropped) if dropped else None
