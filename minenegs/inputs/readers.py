"""Low-level readers: rows of JSONL, CSV, TSV and Parquet files, with where each row came from.

Every reader hashes the bytes it reads (for provenance), turns I/O and decoding problems into
one-line :class:`InputError` messages naming the file and the line, and never loads more than
one row (or one Parquet batch) at a time.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifacts import file_digest
from ..errors import InputError

SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
}
FORMATS = sorted(set(SUFFIX_FORMATS.values()))


def table_files(folder: Path) -> list[Path]:
    """The Arrow or Parquet files of a Hugging Face dataset folder (``Dataset.save_to_disk``, or a folder of
    ``.arrow``/``.parquet`` files, also under ``data/``), in name order; empty for any other folder."""
    for where in (folder, folder / "data"):
        files = sorted(where.glob("*.arrow")) or sorted(where.glob("*.parquet"))
        if files:
            return files
    return []


def detect_format(path: Path) -> str:
    """The file format from the suffix (``.gz`` is looked through); ``dataset`` for a dataset folder."""
    if path.is_dir():
        if (path / "dataset_dict.json").exists():
            splits = sorted(p.name for p in path.iterdir() if p.is_dir())
            raise InputError.at(path, None, "holds a DatasetDict", f"name one split's folder: {', '.join(splits)}")
        if not table_files(path):
            raise InputError.at(path, None, "is a folder without .arrow or .parquet files",
                                "give a file, or a folder written by Dataset.save_to_disk")
        return "dataset"
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = SUFFIX_FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        known = ", ".join(sorted(SUFFIX_FORMATS))
        raise InputError.at(path, None, "unknown file type", f"use one of {known} (optionally .gz)")
    return fmt


_STDIN: Path | None = None


class _StdinPath(type(Path())):
    """The spooled copy of standard input; messages (f-strings) show it as ``<stdin>``."""

    def __format__(self, spec: str) -> str:
        return "<stdin>"


def stdin_path() -> Path:
    """Standard input (JSON lines) spooled once to a temporary file, so it can be read like any file."""
    global _STDIN
    if _STDIN is None:
        import atexit
        import sys
        import tempfile

        fd, name = tempfile.mkstemp(prefix="minenegs-stdin-", suffix=".jsonl")
        with os.fdopen(fd, "wb") as fh:
            for block in iter(lambda: sys.stdin.buffer.read(1 << 20), b""):
                fh.write(block)
        atexit.register(lambda: os.path.exists(name) and os.unlink(name))
        _STDIN = _StdinPath(name)
    return _STDIN


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError.at(path, None, "no such file", "check the path")
    if path.is_dir():
        return  # a dataset folder: detect_format says whether it is one
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InputError.at(path, None, f"cannot be read ({exc.strerror})", "check its permissions") from None
    if size == 0:
        raise InputError.at(path, None, "file is empty", "point to a file with data")


@dataclass
class RowReader:
    """Iterates ``(where, row)`` pairs of one file; ``sha256`` is complete once iteration ends."""

    path: Path
    fmt: str
    delimiter: str | None = None
    _sha: Any = field(default_factory=hashlib.sha256, repr=False)

    @classmethod
    def open(cls, path: Path | str, fmt: str | None = None) -> "RowReader":
        path = stdin_path() if str(path) == "-" else Path(path)
        _check_readable(path)
        return cls(path, fmt or detect_format(path))

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        readers = {"jsonl": self._jsonl, "csv": self._delimited, "tsv": self._delimited, "parquet": self._tables,
                   "arrow": self._tables, "dataset": self._tables}
        yielded = False
        for item in readers[self.fmt]():
            yielded = True
            yield item
        if not yielded:
            raise InputError.at(self.path, None, "has no data rows", "point to a file with data")

    # -- text formats -------------------------------------------------------------------
    def lines(self) -> Iterator[tuple[int, str]]:
        """Decoded lines with 1-based line numbers; bad UTF-8 is an error naming the line."""
        opener = gzip.open if self.path.suffix.lower() == ".gz" else open
        try:
            with opener(self.path, "rb") as fh:
                for lineno, raw in enumerate(fh, 1):
                    self._sha.update(raw)
                    if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a byte-order mark from Windows tools
                        raw = raw[3:]
                    try:
                        yield lineno, raw.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise InputError.at(
                            self.path, f"line {lineno}", f"invalid UTF-8 at byte {exc.start} of the line",
                            "re-encode the file as UTF-8 (for example with iconv)",
                        ) from None
        except (OSError, EOFError) as exc:
            raise InputError.at(self.path, None, f"cannot be read ({exc})", "check the file") from None

    def _jsonl(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for lineno, line in self.lines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError.at(
                    self.path, f"line {lineno}", f"not valid JSON ({exc.msg})", "write one JSON object per line"
                ) from None
            if not isinstance(row, dict):
                raise InputError.at(
                    self.path, f"line {lineno}", "is not a JSON object", "write one JSON object per line"
                )
            yield f"line {lineno}", row

    def _delimited(self) -> Iterator[tuple[str, dict[str, Any]]]:
        delimiter = self.delimiter or ("," if self.fmt == "csv" else "\t")
        quoting = csv.QUOTE_MINIMAL if self.fmt == "csv" else csv.QUOTE_NONE
        csv.field_size_limit(1 << 30)
        reader = csv.reader((line for _, line in self.lines()), delimiter=delimiter, quoting=quoting,
                            strict=self.fmt == "csv")
        header: list[str] | None = None
        start = 1  # the line the record being read starts on
        try:
            for values in reader:
                where, start = f"line {start}", reader.line_num + 1
                if not values or all(not v.strip() for v in values):
                    continue
                if header is None:
                    header = [v.strip() for v in values]
                    continue
                if len(values) != len(header):
                    raise InputError.at(
                        self.path, where, f"has {len(values)} fields but the header has {len(header)}",
                        "quote fields that contain the delimiter",
                    )
                yield where, dict(zip(header, values))
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise InputError.at(self.path, f"line {start}", "a quoted field opened here is never closed "
                                    "(unterminated quote)", 'close it, or double a quote inside a field ("")') from None
            raise InputError.at(self.path, f"line {reader.line_num}", f"malformed ({exc})", "fix the quoting") from None

    # -- parquet, arrow, dataset folders ----------------------------------------------------
    def _tables(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Rows of a Parquet or Arrow file (IPC stream, as ``datasets`` writes, or file), or of every file of a
        dataset folder in name order, a batch at a time."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = table_files(self.path) if self.fmt == "dataset" else [self.path]
        self._sha = hashlib.sha256()
        row = 0
        for path in files:
            self._sha.update(file_digest(path).digest())
            try:
                if path.suffix.lower() in (".parquet", ".pq"):
                    batches = pq.ParquetFile(path).iter_batches(batch_size=8192)
                else:
                    batches = _ipc_batches(path)
                for batch in batches:
                    for item in batch.to_pylist():
                        row += 1
                        yield f"row {row}", item
            except (pa.ArrowException, OSError) as exc:
                kind = "Parquet" if path.suffix.lower() in (".parquet", ".pq") else "Arrow"
                raise InputError.at(path, None, f"is not a readable {kind} file ({str(exc).splitlines()[0]})",
                                    "check the file") from None


def _ipc_batches(path: Path):
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        try:
            reader = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            source.seek(0)
            reader = pa.ipc.open_file(source)
            yield from (reader.get_batch(i) for i in range(reader.num_record_batches))
            return
        yield from reader


def pick_column(
    columns: list[str], candidates: tuple[str, ...], explicit: str | None, *, path: Path, what: str, flag: str
) -> str | None:
    """The column to use: ``explicit`` if given (it must exist), else the first candidate present.

    Returns None when no candidate is present and none was asked for.
    """
    if explicit:
        if explicit in columns:
            return explicit
        raise InputError.at(
            path, None, f"has no column {explicit!r} (it has: {', '.join(columns)})", f"fix {flag}"
        )
    lowered = {c.lower(): c for c in columns}
    for name in candidates:
        if name in columns:
            return name
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def require_column(
    columns: list[str], candidates: tuple[str, ...], explicit: str | None, *, path: Path, what: str, flag: str
) -> str:
    """Like :func:`pick_column`, but a missing column is an error naming the fix."""
    name = pick_column(columns, candidates, explicit, path=path, what=what, flag=flag)
    if name is None:
        looked = ", ".join(candidates)
        raise InputError.at(
            path, None, f"has no {what} column (looked for {looked}; it has: {', '.join(columns)})",
            f"name it with {flag}",
        )
    return name
