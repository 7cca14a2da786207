"""An embeddings folder, opened: its manifest, its vectors (memory-mapped, or read a block at a time) and its
id and text tables. What ``encode_dataset`` writes, every later stage reads through here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import read_manifest, read_parquet
from ..records import Qrel, TextTable

KIND = "embeddings"


class Embeddings:
    """An embeddings folder, opened without loading its arrays (they are memory-mapped)."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder, KIND)

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    def vectors(self, side: str) -> np.ndarray:
        """The ``corpus`` or ``queries`` matrix, memory-mapped read-only, in the stored dtype."""
        return np.load(self.folder / f"{side}.npy", mmap_mode="r")

    def reader(self, side: str) -> "VectorFile":
        """The ``corpus`` or ``queries`` matrix read a block at a time as float32 (see :class:`VectorFile`)."""
        return VectorFile(self.folder / f"{side}.npy")

    def table(self, side: str) -> TextTable:

        t = read_parquet(self.folder / f"{side}.parquet")
        return TextTable(t.column("id").to_pylist(), t.column("text").to_pylist())

    def id_array(self, side: str):
        """A side's ids as one pyarrow string array (row ``i`` is vector ``i``)."""
        return read_parquet(self.folder / f"{side}.parquet", columns=["id"]).column("id").combine_chunks()

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
