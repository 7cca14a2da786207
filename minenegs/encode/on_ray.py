"""The encode stage on a Ray cluster.

The driver reads the inputs and plans the content-addressed chunks as a local run does; the chunks not yet
cached go through Ray Data to a pool of model actors, which write them to the chunk cache (a folder every node
must share). A staged corpus (``encode --shards``) is read by the workers themselves, a shard's rows at a time,
from its file in the cache folder; the driver sends only row numbers. The driver then assembles the embeddings
folder from the cache, exactly as a local run whose chunks were all cached: same manifest, same bytes. A job
killed half-way keeps every chunk written; the next run, on the cluster or not, encodes only the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..distributed.runner import RaySettings, kill_point, run
from ..errors import MinenegsError
from .cache import ChunkCache
from .batches import encode_chunk


class _EncodeWorker:
    """A model actor: encodes a chunk's texts, given or read from a staged corpus file (its shard's rows kept
    between chunks), and writes them to the shared chunk cache."""

    def __init__(self, encoder: Any, cache_root: str) -> None:
        from ..inputs.staged import ShardTexts

        self.encoder = encoder
        self.cache = ChunkCache(cache_root)
        self.read = ShardTexts()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        done = []
        for key, prompt, texts, source, span, rows in zip(batch["key"], batch["prompt"], batch["texts"],
                                                          batch["source"], batch["span"], batch["rows"]):
            kill_point()
            texts = [str(t) for t in texts] if not source else self.read(str(source), tuple(int(x) for x in span),
                                                                          [int(r) for r in rows])
            if not self.cache.has(key):  # a retried chunk may have been written before its worker died
                self.cache.put(key, encode_chunk(self.encoder, texts, str(prompt) or None))
            done.append(len(texts))
        return {"key": batch["key"], "texts": done}


def encode_chunks(settings: RaySettings, encoder: Any, jobs: list[dict[str, Any]], cache_root: Path,
                  tick: Callable[[int], None]) -> None:
    """Encode chunks on the cluster into the chunk cache at ``cache_root``, which the workers must see at the same
    path. A job is ``key``, ``prompt`` and ``texts``, or, for a staged corpus (whose file the workers must see
    too), ``source``, the ``span`` of its shard's file rows and the chunk's ``rows``. Every chunk is in the cache
    when this returns."""
    if not jobs:
        return
    items = [{**job, "prompt": job["prompt"] or ""} for job in jobs]
    run(settings, items, _EncodeWorker, {"encoder": encoder, "cache_root": str(Path(cache_root).resolve())},
        lambda row: tick(int(row["texts"])))
    cache = ChunkCache(cache_root)
    lost = [job["key"] for job in jobs if not cache.has(job["key"])]
    if lost:
        raise MinenegsError(f"{len(lost)} chunks the Ray workers encoded are not in {cache_root}: --cache-dir must "
                            "be a folder every node of the cluster shares at the same path")
