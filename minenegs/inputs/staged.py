"""A corpus file read once, a block at a time, into a Parquet file of (id, text) rows: each shard of a sharded
encode (``encode --shards N``) reads its own row range back, so no process holds every text of the corpus.

The rows are checked as :func:`~minenegs.inputs.tables.read_corpus` checks them (an id and a text on every row,
an id repeated with the same text kept once, with another text refused). Beside the rows, each document's text
hash and length go to flat files (an encode plans its chunks from them, a shard's range at a time), and its id
and text hashes to 256 bucket files by their first byte, so repeated ids and texts are found a bucket at a time:
nothing held in memory grows with the corpus but the repeats themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ..artifacts import text_hash
from ..records import TextTable
from .readers import RowReader
from .tables import Columns, _source, check_row, conflict, iter_docs

ROWS = 1 << 16  # rows per Parquet row group: a row range is read a group at a time
FILE = "corpus.input.parquet"


class StagedCorpus:
    """The corpus as staged rows; ``keep`` (file rows, ascending) leaves out repeated documents."""

    def __init__(self, folder: Path, count: int, keep: np.ndarray | None = None) -> None:
        self.folder, self.path, self.keep = folder, folder / FILE, keep
        self.count = count if keep is None else len(keep)

    def __len__(self) -> int:
        return self.count

    def file_rows(self, lo: int, hi: int) -> np.ndarray:
        """The file rows of rows ``lo:hi``."""
        return self.keep[lo:hi] if self.keep is not None else np.arange(lo, min(hi, len(self)), dtype=np.int64)

    def rows(self, lo: int, hi: int) -> TextTable:
        """Rows ``lo:hi`` (after repeats are left out), read from the row groups that hold them."""
        ids, texts = _take(self.path, self.file_rows(lo, hi))
        return TextTable(ids, texts)

    def digests(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``lo:hi``'s :func:`~minenegs.artifacts.text_hash` es and lengths, read from the flat files."""
        rows = self.file_rows(lo, hi)
        if not len(rows):
            return np.zeros(0, "S16"), np.zeros(0, np.int32)
        first, count = int(rows[0]), int(rows[-1]) + 1 - int(rows[0])
        hashes, lengths = (np.fromfile(self.folder / name, dtype, count, offset=first * np.dtype(dtype).itemsize)
                           for name, dtype in (("hashes.bin", "S16"), ("lengths.bin", np.int32)))
        return hashes[rows - first], lengths[rows - first]

    def repeats(self, others: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """:func:`repeats` of the texts, from the bucket files, in rows after repeated documents are left out."""
        later, first, found = repeats(_buckets(self.folder, "texts", "S16"), others)
        if self.keep is None:
            return later, first, found
        kept = np.isin(later, self.keep)  # a left-out document repeats an earlier one's text: it has no row
        later, first = np.searchsorted(self.keep, later[kept]), np.searchsorted(self.keep, first[kept])
        return later, first, np.where(found >= 0, np.searchsorted(self.keep, found), -1) if found is not None else None


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
    group = np.searchsorted(starts, rows, side="right") - 1
    groups = np.unique(group)  # only the groups holding a row asked for, however far apart the rows are
    sizes = np.diff(starts)[groups]
    at = np.cumsum(np.r_[0, sizes[:-1]])[np.searchsorted(groups, group)] + np.asarray(rows) - starts[group]
    table = file.read_row_groups(groups.tolist()).take(at)
    return table.column("id").to_pylist(), table.column("text").to_pylist()


def digests(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each text's :func:`~minenegs.artifacts.text_hash` and length, what an encode is planned from."""
    return (np.array([text_hash(t) for t in texts], dtype="S16"),
            np.fromiter(map(len, texts), dtype=np.int32, count=len(texts)))


def repeats(buckets: Iterable[tuple[np.ndarray, np.ndarray]],
            others: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The rows whose key (a hash) an earlier row has, ascending, with the first row that has it; and for each of
    ``others``' keys, the first row with it (-1: none). ``buckets``: (keys, rows) in row order, every key in one
    bucket, chosen by its first byte (:func:`in_buckets`), so one bucket is sorted at a time."""
    other_byte = _first_byte(others) if others is not None else None
    rows, firsts, found = [], [], np.full(len(others) if others is not None else 0, -1, dtype=np.int64)
    for b, (keys, mine) in enumerate(buckets):
        order = np.argsort(keys, kind="stable")  # stable: a group's first row is its smallest
        ordered, mine = keys[order], mine[order]
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


def _first_byte(keys: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(keys).view(np.uint8).reshape(len(keys), -1)[:, 0] if len(keys) else np.zeros(0, np.uint8)


def in_buckets(keys: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Keys held in memory, as :func:`repeats` takes them."""
    byte = _first_byte(keys)
    for b in range(256):
        rows = np.flatnonzero(byte == b)
        yield keys[rows], rows


def _buckets(folder: Path, name: str, key: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The bucket files ``name``-XX.bin (records of key and row), one at a time."""
    for b in range(256):
        path = folder / f"{name}-{b:02x}.bin"
        records = np.fromfile(path, np.dtype([("key", key), ("row", "<i8")])) if path.exists() else None
        yield (records["key"], records["row"]) if records is not None else (np.zeros(0, key), np.zeros(0, np.int64))


def _to_buckets(folder: Path, name: str, keys: np.ndarray, first_row: int) -> None:
    """Append a block's keys, with their rows, to the bucket files."""
    records = np.empty(len(keys), np.dtype([("key", keys.dtype), ("row", "<i8")]))
    records["key"], records["row"] = keys, np.arange(first_row, first_row + len(keys))
    byte = _first_byte(keys)
    for b in np.unique(byte).tolist():
        with open(folder / f"{name}-{b:02x}.bin", "ab") as fh:
            records[byte == b].tofile(fh)


def stage_corpus(path: Path | str, columns: Columns, folder: Path,
                 wanted: set[str]) -> tuple[StagedCorpus, dict[str, str], set[str]]:
    """The corpus file ``path`` checked and written to ``folder`` in blocks; returns it, its source record, and
    which ``wanted`` ids (the qrels' documents) it holds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    reader = RowReader.open(path)
    folder = Path(folder)
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    ids: list[str] = []
    texts: list[str] = []
    found: set[str] = set()
    count = 0
    with pq.ParquetWriter(folder / FILE, schema) as writer, open(folder / "hashes.bin", "wb") as hashes, \
            open(folder / "lengths.bin", "wb") as lengths:
        def flush() -> None:
            nonlocal count
            writer.write_table(pa.table({"id": ids, "text": texts}, schema=schema), row_group_size=ROWS)
            text_hashes, text_lengths = digests(texts)
            text_hashes.tofile(hashes)
            text_lengths.tofile(lengths)
            _to_buckets(folder, "texts", text_hashes, count)
            _to_buckets(folder, "ids", np.fromiter((int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(),
                                                                   "little") for i in ids), np.uint64, len(ids)), count)
            count += len(ids)
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
    keep = _repeats_left_out(reader, columns, folder, count)
    return StagedCorpus(folder, count, keep), _source(reader), found


def _repeats_left_out(reader: RowReader, columns: Columns, folder: Path, count: int) -> np.ndarray | None:
    """The file rows to keep when an id comes again (None: every row); a repeat with another text is refused,
    naming both rows as the file does."""
    later, earlier, _ = repeats(_buckets(folder, "ids", "<u8"))
    if not len(later):
        return None
    rows = np.unique(np.concatenate([later, earlier]))  # every row whose id hash is shared
    first: dict[str, tuple[int, str]] = {}
    dropped = []
    for row, id_, text in zip(rows.tolist(), *_take(folder / FILE, rows)):
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
    return np.delete(np.arange(count, dtype=np.int64), dropped) if dropped else None
