"""A content-addressed cache of embedding chunks.

A chunk is a run of unique texts; its key is the SHA-256 of the encoder's fingerprint, every setting
that changes the vectors, the prompt and the chunk's texts. Chunks are written whole (temporary file,
then rename), so a run killed at any point loses at most the chunk it was encoding.

Chunk boundaries are content-defined: texts are ordered by (length, hash) and a chunk ends after a
text whose hash says so, between ``size // 2`` and ``2 * size`` texts. Adding a few documents to a
corpus therefore changes only the chunks they fall into; the rest stay cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import write_atomic

CACHE_ENV = "MINENEGS_CACHE"
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """``$MINENEGS_CACHE``, else ``$XDG_CACHE_HOME/minenegs``, else ``~/.cache/minenegs``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "minenegs"


def settings_key(fingerprint: str, settings: dict[str, Any], prompt: str | None) -> str:
    """What, besides the texts, decides the vectors."""
    blob = json.dumps({"v": FORMAT_VERSION, "model": fingerprint, "settings": settings, "prompt": prompt or ""},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Chunk:
    key: str
    start: int  # first position in the ordered unique texts
    stop: int


def plan_chunks(lengths: Sequence[int], hashes: list[bytes], settings: str, size: int) -> tuple[list[int], list[Chunk]]:
    """Order unique texts, given by their lengths and :func:`text_hash` es, for encoding and cut them into chunks.

    Returns ``(order, chunks)``: ``order[j]`` is the index of the j-th text to encode; a chunk covers positions
    ``start:stop`` of that order.
    """
    order = sorted(range(len(hashes)), key=lambda i: (lengths[i], hashes[i]))
    low, high = max(1, size // 2), max(1, 2 * size)
    chunks: list[Chunk] = []
    start = 0
    digest = hashlib.sha256(settings.encode())
    for pos, i in enumerate(order):
        digest.update(hashes[i])
        length = pos + 1 - start
        cut = int.from_bytes(hashes[i][:4], "little") % max(1, size // 2) == 0
        if (length >= low and cut) or length >= high or pos == len(order) - 1:
            chunks.append(Chunk(digest.hexdigest(), start, pos + 1))
            start = pos + 1
            digest = hashlib.sha256(settings.encode())
    return order, chunks


class ChunkCache:
    """Chunks stored as ``.npy`` files under ``root/chunks/<ab>/<key>.npy``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / "chunks" / key[:2] / f"{key}.npy"

    def has(self, key: str) -> bool:
        return self.path(key).exists()

    def get(self, key: str) -> np.ndarray | None:
        path = self.path(key)
        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # unreadable: treat as missing, it will be encoded again
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def put(self, key: str, array: np.ndarray) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda fh: np.save(fh, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False))
