"""The encode stage on a Ray cluster.

The driver reads the inputs and plans the content-addressed chunks as a local run does; the chunks not yet
cached go through Ray Data to a pool of model actors, which write them to the chunk cache (a folder every node
must share). The driver then assembles the embeddings folder from the cache, exactly as a local run whose
chunks were all cached: same manifest, same bytes. A job killed half-way keeps every chunk written; the next
run, on the cluster or not, encodes only the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..distributed.runner import RaySettings, kill_point, run
from ..errors import MinenegsError
from .cache import ChunkCache
from .models import encode_chunk


class _EncodeWorker:
    """A model actor: encodes a chunk's texts and writes them to the shared chunk cache."""

    def __init__(self, encoder: Any, cache_root: str) -> None:
        self.encoder = encoder
        self.cache = ChunkCache(cache_root)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        for key, prompt, texts in zip(batch["key"], batch["prompt"], batch["texts"]):
            kill_point()
            if not self.cache.has(key):  # a retried chunk may have been written before its worker died
                vectors = encode_chunk(self.encoder, [str(t) for t in texts], str(prompt) or None)
                self.cache.put(key, vectors)
        return {"key": batch["key"], "texts": [len(t) for t in batch["texts"]]}


def encode_chunks(settings: RaySettings, encoder: Any, chunks: list[tuple[str, str | None, list[str]]],
                  cache_root: Path, tick: Callable[[int], None]) -> None:
    """Encode ``(key, prompt, texts)`` chunks on the cluster into the chunk cache at ``cache_root``, which the
    workers must see at the same path. Every chunk is in the cache when this returns."""
    if not chunks:
        return
    items = [{"key": key, "prompt": prompt or "", "texts": texts} for key, prompt, texts in chunks]
    run(settings, items, _EncodeWorker, {"encoder": encoder, "cache_root": str(Path(cache_root).resolve())},
        lambda row: tick(int(row["texts"])))
    cache = ChunkCache(cache_root)
    lost = [key for key, _, _ in chunks if not cache.has(key)]
    if lost:
        raise MinenegsError(f"{len(lost)} chunks the Ray workers encoded are not in {cache_root}: --cache-dir must "
                            "be a folder every node of the cluster shares at the same path")
