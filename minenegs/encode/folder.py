"""An embeddings folder, opened: its manifest, its vectors (memory-mapped, or read a block at a time) and its
id and text tables. What ``encode_dataset`` writes, every later stage reads through here.

A corpus may be stored as shards (``encode --shards N``): ``shards/00000-of-0000N/`` folders, each holding a
contiguous row range's ``corpus.npy`` and ``corpus.parquet`` and a manifest naming the encode it belongs to; the
queries and qrels stay one table each. Every reader here sees the shards as one corpus (row ``i`` of the whole is
row ``i - offset`` of its shard), so every stage runs on a sharded folder unchanged, and a worker that reads one
row range touches only its shards' files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import read_manifest, read_parquet
from ..errors import InputError
from ..records import Qrel, TextTable

KIND = "embeddings"
SHARD_KIND = "embeddings-shard"


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous row ranges covering ``n`` rows, as even as can be (none empty)."""
    shards = max(1, min(shards, n))
    cuts = np.linspace(0, n, shards + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]


def shard_names(n: int) -> list[str]:
    """The shard folders of a corpus stored as ``n`` shards, in row order."""
    return [f"shards/{i:05d}-of-{n:05d}" for i in range(n)]


class Embeddings:
    """An embeddings folder, opened without loading its arrays (they are memory-mapped)."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder, KIND)
        self.shards: list[dict] = self.manifest.get("shards") or []  # [{"folder", "rows"}], empty: one corpus file
        for shard in self.shards:  # every shard there and from this very encode, before any work
            where = self.folder / shard["folder"]
            try:
                own = read_manifest(where, SHARD_KIND)
            except Exception:
                raise InputError(f"{self.folder}: corpus shard {shard['folder']} is missing or unreadable; "
                                 "encode the corpus again (or restore the shard)") from None
            if own.get("encode") != self.manifest.get("encode") or own.get("rows") != shard["rows"]:
                raise InputError(f"{self.folder}: corpus shard {shard['folder']} is from another encode (its "
                                 f"fingerprint {str(own.get('encode'))[:12]}, this folder's "
                                 f"{str(self.manifest.get('encode'))[:12]}); encode the corpus again")

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    def _files(self, side: str, suffix: str) -> list[Path]:
        if side == "corpus" and self.shards:
            return [self.folder / s["folder"] / f"corpus{suffix}" for s in self.shards]
        return [self.folder / f"{side}{suffix}"]

    def vectors(self, side: str) -> np.ndarray | "ShardedRows":
        """The ``corpus`` or ``queries`` matrix, memory-mapped read-only, in the stored dtype (a sharded corpus:
        its shards' maps, read as one)."""
        return as_one([np.load(p, mmap_mode="r") for p in self._files(side, ".npy")])

    def reader(self, side: str) -> "VectorFile | ShardedRows":
        """The ``corpus`` or ``queries`` matrix read a block at a time as float32 (see :class:`VectorFile`)."""
        return as_one([VectorFile(p) for p in self._files(side, ".npy")])

    def column(self, side: str, name: str):
        """One column (``id`` or ``text``) of a side's table as a pyarrow array (row ``i`` is vector ``i``)."""
        import pyarrow as pa

        chunks = [read_parquet(p, columns=[name]).column(name) for p in self._files(side, ".parquet")]
        return pa.chunked_array([c for chunked in chunks for c in chunked.chunks], type=chunks[0].type)

    def table(self, side: str) -> TextTable:
        return TextTable(self.column(side, "id").to_pylist(), self.column(side, "text").to_pylist())

    def id_array(self, side: str):
        """A side's ids as one pyarrow string array (row ``i`` is vector ``i``)."""
        return self.column(side, "id").combine_chunks()

    def ids(self, side: str) -> list[str]:
        return self.id_array(side).to_pylist()

    def qrels(self) -> list[Qrel]:

        t = read_parquet(self.folder / "qrels.parquet").to_pydict()
        return [Qrel(q, d, int(s)) for q, d, s in zip(t["query_id"], t["doc_id"], t["score"])]


class VectorFile:
    """A ``.npy`` matrix read as float32 a block at a time: ``f[rows]`` takes a slice or an index array.

    A file of up to ``map_max`` bytes is memory-mapped (repeated reads cost nothing). A larger one is read
    with ``preadv``, rows in file order: the pages stay in the operating system's cache but never count
    towards this process's memory (a mapping would: each random read maps a 64 KB neighbourhood), so a pass
    over a corpus larger than memory holds one block at a time.
    """

    def __init__(self, path: Path | str, map_max: int = 512 << 20) -> None:
        self.path = Path(path)
        m = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype, self.offset = m.shape, m.dtype, int(m.offset)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._map = m if self.path.stat().st_size <= map_max else None
        self._fd: int | None = None

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, rows: Any) -> np.ndarray:
        if self._map is not None:
            return np.array(self._map[rows], dtype=np.float32)
        if isinstance(rows, slice):
            start, stop, step = rows.indices(len(self))
            if step == 1:
                return self._read(np.arange(start, max(start, stop)), contiguous=True)
            rows = np.arange(start, stop, step)
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = np.where(rows < 0, rows + len(self), rows).astype(np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row out of range for {self.path} with {len(self)} rows")
        return self._read(rows)

    def _read(self, rows: np.ndarray, contiguous: bool = False) -> np.ndarray:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        rb = self.row_bytes
        if contiguous:
            raw = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
            if len(rows):
                os.preadv(self._fd, [memoryview(raw.reshape(-1).view(np.uint8))], self.offset + int(rows[0]) * rb)
            return raw.astype(np.float32, copy=False)
        wanted, inverse = np.unique(rows, return_inverse=True)  # each row read once, in file order
        raw = np.empty((len(wanted), *self.shape[1:]), dtype=self.dtype)
        view = memoryview(raw.reshape(-1).view(np.uint8))
        for k, r in enumerate(wanted.tolist()):
            os.preadv(self._fd, [view[k * rb:(k + 1) * rb]], self.offset + r * rb)
        return raw.astype(np.float32, copy=False)[inverse.reshape(-1)]

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def blocks(self, size: int = 65536):
        """``(start, block)`` over the whole matrix in order."""
        for start in range(0, len(self), size):
            yield start, self[start:start + size]


class ShardedRows:
    """Row ranges stored apart (a sharded corpus's ``.npy`` files, as maps or :class:`VectorFile`) read and written
    as one matrix: ``m[rows]`` with a slice or an index array, ``m[rows] = values``; each shard is touched only
    for its own rows."""

    def __init__(self, parts: list) -> None:
        self.parts = parts
        self.starts = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        self.shape = (int(self.starts[-1]), *parts[0].shape[1:])
        self.dtype = parts[0].dtype

    def __len__(self) -> int:
        return int(self.shape[0])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The whole matrix in memory (``np.asarray(m)``), as for one memory-mapped file."""
        return np.asarray(self[:], dtype=dtype)

    def _rows(self, rows: Any) -> np.ndarray:
        if isinstance(rows, slice):
            return np.arange(*rows.indices(len(self)), dtype=np.int64)
        rows = np.asarray(rows)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        return np.where(rows < 0, rows + len(self), rows)

    def _shard_of(self, rows: np.ndarray) -> np.ndarray:
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row out of range for a corpus of {len(self)} rows")
        return np.searchsorted(self.starts, rows, side="right") - 1

    def __getitem__(self, rows: Any) -> np.ndarray:
        if isinstance(rows, (int, np.integer)):
            return self[np.asarray([rows])][0]
        if isinstance(rows, slice) and rows.indices(len(self))[2] == 1:  # a range: each shard's slice, in order
            start, stop, _ = rows.indices(len(self))
            pieces = [np.asarray(p[max(start, lo) - lo:min(stop, hi) - lo])
                      for p, lo, hi in zip(self.parts, self.starts[:-1], self.starts[1:]) if start < hi and stop > lo]
            return np.concatenate(pieces) if pieces else np.asarray(self.parts[0][:0])
        rows = self._rows(rows)
        shard, out = self._shard_of(rows), None
        for k in np.unique(shard):
            mask = shard == k
            got = np.asarray(self.parts[k][rows[mask] - self.starts[k]])
            if out is None:
                out = np.empty((len(rows), *got.shape[1:]), dtype=got.dtype)
            out[mask] = got
        return out if out is not None else np.asarray(self.parts[0][:0])

    def __setitem__(self, rows: Any, values: np.ndarray) -> None:
        rows = self._rows(rows)
        shard = self._shard_of(rows)
        for k in np.unique(shard):
            mask = shard == k
            self.parts[k][rows[mask] - self.starts[k]] = values[mask]

    def flush(self) -> None:
        for part in self.parts:
            if hasattr(part, "flush"):
                part.flush()

    def blocks(self, size: int = 65536):
        """``(start, block)`` over the whole matrix in order."""
        for start in range(0, len(self), size):
            yield start, self[start:start + size]


def as_one(parts: list) -> Any:
    """One matrix's parts as one: the part itself when there is one, else :class:`ShardedRows` over them."""
    return parts[0] if len(parts) == 1 else ShardedRows(parts)
