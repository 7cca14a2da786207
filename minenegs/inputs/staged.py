"""A corpus file read once, a block at a time, into a Parquet file of (id, text) rows: each shard of a sharded
encode (``encode --shards N``) reads its own row range back, so no process holds every text of the corpus.

The rows are checked as :func:`~minenegs.inputs.tables.read_corpus` checks them (an id and a text on every row,
an id repeated with the same text kept once, with another text refused). Held while reading: 8 bytes a document
(a hash of its id, to find repeats); kept: 20 (a hash of its text and its length, to plan the encode).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import text_hash
from ..records import TextTable
from .readers import RowReader
from .tables import Columns, _source, check_row, conflict, iter_docs

ROWS = 1 << 16  # rows per Parquet row group: a row range is read a group at a time
FILE = "corpus.input.parquet"


class StagedCorpus:
    """The corpus as staged rows; ``keep`` (file rows, ascending) leaves out repeated documents. ``hashes`` and
    ``lengths`` (each kept row's :func:`~minenegs.artifacts.text_hash` and length) let an encode plan its
    chunks without the texts."""

    def __init__(self, path: Path, hashes: np.ndarray, lengths: np.ndarray, keep: np.ndarray | None = None) -> None:
        self.path, self.keep = path, keep
        self.hashes, self.lengths = (hashes, lengths) if keep is None else (hashes[keep], lengths[keep])

    def __len__(self) -> int:
        return len(self.hashes)

    def file_rows(self, lo: int, hi: int) -> np.ndarray:
        """The file rows of rows ``lo:hi``."""
        return self.keep[lo:hi] if self.keep is not None else np.arange(lo, min(hi, len(self)), dtype=np.int64)

    def rows(self, lo: int, hi: int) -> TextTable:
        """Rows ``lo:hi`` (after repeats are left out), read from the row groups that hold them."""
        ids, texts = _take(self.path, self.file_rows(lo, hi))
        return TextTable(ids, texts)


class ShardTexts:
    """Texts of a staged file by file row, for a Ray worker: the row groups of the last span asked for (a shard's)
    are kept, since a worker encodes chunk after chunk of one shard, each a scatter of its rows."""

    def __init__(self) -> None:
        self.span: tuple[str, int, int] | None = None
        self.texts: list[str] = []

    def __call__(self, path: str, span: tuple[int, int], rows: list[int]) -> list[str]:
        if self.span != (path, *span):
            self.texts = _take(Path(path), np.arange(span[0], span[1], dtype=np.int64))[1]
            self.span = (path, *span)
        return [self.texts[r - span[0]] for r in rows]


def _take(path: Path, rows: np.ndarray) -> tuple[list[str], list[str]]:
    """The ids and texts of the ascending file ``rows``."""
    import pyarrow.parquet as pq

    if not len(rows):
        return [], []
    file = pq.ParquetFile(path)
    starts = np.cumsum([0] + [file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)])
    first, last = (int(np.searchsorted(starts, r, side="right")) - 1 for r in (rows[0], rows[-1]))
    table = file.read_row_groups(list(range(first, last + 1))).take(np.asarray(rows, dtype=np.int64) - starts[first])
    return table.column("id").to_pylist(), table.column("text").to_pylist()


def repeats(keys: np.ndarray, others: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The rows whose key (a hash: uint64, or 16 bytes) an earlier row has, ascending, with the first row that has
    it; and for each of ``others``' keys, the first row with it (-1: none). Sorted a bucket at a time (by the
    key's first byte), so what it takes beside the keys is 1 byte a row and one bucket's arrays."""
    def first_byte(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a).view(np.uint8).reshape(len(a), -1)[:, 0] if len(a) else np.zeros(0, np.uint8)

    byte, other_byte = first_byte(keys), first_byte(others) if others is not None else None
    rows, firsts, found = [], [], np.full(len(others) if others is not None else 0, -1, dtype=np.int64)
    for b in range(256):
        mine = np.flatnonzero(byte == b)
        order = np.argsort(keys[mine], kind="stable")  # stable: a group's first row is its smallest
        ordered, mine = keys[mine][order], mine[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(mine) else np.zeros(0, np.int64)
        first = np.repeat(mine[starts], np.diff(np.r_[starts, len(mine)]))
        rows.append(mine[mine != first])
        firsts.append(first[mine != first])
        if other_byte is not None and len(starts):
            asked = np.flatnonzero(other_byte == b)
            at = np.minimum(np.searchsorted(ordered[starts], others[asked]), len(starts) - 1)
            hit = ordered[starts][at] == others[asked]
            found[asked[hit]] = mine[starts][at[hit]]
    rows, firsts = np.concatenate(rows), np.concatenate(firsts)
    order = np.argsort(rows)
    return rows[order], firsts[order], found if others is not None else None


def _joined(blocks: list[np.ndarray], dtype: Any) -> np.ndarray:
    """The blocks as one array, each let go once copied (so they are never held twice)."""
    out = np.empty(sum(len(b) for b in blocks), dtype=dtype)
    at = 0
    while blocks:
        block = blocks.pop(0)
        out[at:at + len(block)] = block
        at += len(block)
    return out


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
    id_hashes: list[np.ndarray] = []
    hashes: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    found: set[str] = set()
    with pq.ParquetWriter(out, schema) as writer:
        def flush() -> None:
            writer.write_table(pa.table({"id": ids, "text": texts}, schema=schema), row_group_size=ROWS)
            id_hashes.append(np.fromiter((int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "little")
                                          for i in ids), dtype=np.uint64, count=len(ids)))
            hashes.append(np.array([text_hash(t) for t in texts], dtype="S16"))
            lengths.append(np.fromiter(map(len, texts), dtype=np.int32, count=len(texts)))
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
    hashes, lengths = _joined(hashes, "S16"), _joined(lengths, np.int32)
    keep = _repeats_left_out(reader, columns, out, _joined(id_hashes, np.uint64))
    return StagedCorpus(out, hashes, lengths, keep), _source(reader), found


def _repeats_left_out(reader: RowReader, columns: Columns, staged: Path, hashes: np.ndarray) -> np.ndarray | None:
    """The file rows to keep when an id comes again (None: every row); a repeat with another text is refused,
    naming both rows as the file does."""
    later, earlier, _ = repeats(hashes)
    if not len(later):
        return None
    rows = np.unique(np.concatenate([later, earlier]))  # every row whose id hash is shared
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
