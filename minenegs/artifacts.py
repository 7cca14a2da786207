"""Artifact folders and atomic writes.

Every artifact (embeddings, indexes, candidate pools) is a folder with a ``manifest.json``. It is
built in a hidden sibling folder and renamed into place only when complete, so an interrupted
run leaves the previous artifact intact and never a half-written one.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import InputError, MinenegsError, OutputExistsError

MANIFEST = "manifest.json"


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` that is renamed over it when the block ends without error and
    removed otherwise."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_staging_prefix(path), suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a whole file or nothing: ``write`` fills a temporary sibling that is renamed over ``path``.
    A sibling left by a killed writer is cleared first."""
    _sweep_stale(path)
    with _replacing(path) as tmp, open(tmp, "wb") as fh:
        write(fh)


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def is_stdout(path: Path | str) -> bool:
    """``-`` as an output: the rows go to standard output as JSON lines."""
    return str(path) == "-"


def check_output(path: Path, force: bool) -> None:
    """Fail before any work starts if ``path`` exists and ``force`` is off, or its folder cannot take it
    (standard output always can). What a killed writer left beside ``path`` is cleared first."""
    if is_stdout(path):
        return
    _sweep_stale(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists; pass --force to replace it or choose another output")
    parent = path.parent if str(path.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{parent} is not a folder; choose another output")
    try:  # a real write, not os.access: root passes access checks on read-only file systems
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".minenegs-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"cannot write to {parent} ({exc.strerror}); choose another output") from None


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn an I/O failure while writing ``path`` (disk full, folder gone read-only) into one clear line."""
    try:
        yield
    except OSError as exc:
        raise MinenegsError(f"cannot write {path} ({exc.strerror or exc}); nothing was written, "
                            "the previous output (if any) is unchanged") from exc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _staging_prefix(path: Path) -> str:
    """Hidden siblings of ``path`` carry the writer's process id, so a later run can tell a killed
    writer's leftovers from a live writer's work."""
    return f".{path.name}.{os.getpid()}."


def _sweep_stale(path: Path) -> None:
    """Clear what a killed run left beside ``path``: its staging files and folders are removed, and a
    previous output it had moved aside but not yet replaced is put back."""
    name = glob.escape(path.name)
    for leftover in sorted(path.parent.glob(f".{name}.*.old")) + sorted(path.parent.glob(f".{name}.*.tmp")):
        owner = leftover.name[len(path.name) + 2:].split(".", 1)[0]
        if not owner.isdigit() or _pid_alive(int(owner)):
            continue
        previous = leftover / "previous"
        if leftover.suffix == ".old" and previous.exists() and not path.exists():
            os.replace(previous, path)
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                leftover.unlink()


def _prepare(path: Path | str, force: bool) -> Path:
    path = Path(path)
    check_output(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def scratch_dir(path: Path | str, force: bool = False) -> Iterator[Path]:
    """Yield an empty folder beside ``path``, removed when the block ends (a killed run's is swept by the next)."""
    path = _prepare(path, force)
    with _writing(path):
        folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=_staging_prefix(path), suffix=".tmp"))
    try:
        yield folder
    finally:
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def output_dir(path: Path | str, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder that becomes ``path`` when the block finishes without error."""
    with scratch_dir(path, force) as staging:
        path = Path(path)
        with _writing(path):
            yield staging
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=_staging_prefix(path), suffix=".old"))
            os.replace(path, old / "previous")
            os.replace(staging, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, path)


@contextlib.contextmanager
def output_file(path: Path | str, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` when the block finishes without error."""
    path = _prepare(path, force)
    with _writing(path), _replacing(path) as tmp:
        yield tmp


def read_parquet(path: Path | str, columns: list[str] | None = None):
    """A Parquet file as a pyarrow Table. Reads through ``ParquetFile``: ``pq.read_table`` goes through
    ``pyarrow.dataset``, which imports pandas and costs a fifth of a second at start-up."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).read(columns=columns)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    write_text_atomic(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(folder: Path | str, kind: str) -> dict[str, Any]:
    """The manifest of an artifact folder, checked to be of ``kind``."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.exists():
        maker = "encode" if kind == "embeddings" else "mine"
        raise InputError(f"{folder}: not a minenegs {kind} folder (no {MANIFEST}); create it with `minenegs {maker}`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable manifest ({exc}); recreate the folder") from None
    if manifest.get("kind") != kind:
        raise InputError(f"{folder}: is a {manifest.get('kind')!r} folder, not {kind!r}")
    return manifest


def text_hash(text: str) -> bytes:
    """What names a text in the chunk cache and in a staged corpus: its 16-byte BLAKE2b."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def file_digest(path: Path | str, digest: Any = None) -> Any:
    """``digest`` (a new SHA-256 when None) updated with the bytes of the file at ``path``, read a block at a
    time; ``.hexdigest()`` gives the file's SHA-256."""
    digest = hashlib.sha256() if digest is None else digest
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest
