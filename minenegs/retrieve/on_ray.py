"""The retrieve stage on a Ray cluster.

The driver builds (or reuses) the index under the embeddings folder, then query batches go to a pool of
retrieval actors, each holding the index once. Each batch is written as a part file (whole or not at all) and
the driver joins the parts in query order into the pool folder, so a retried batch can neither duplicate nor
drop a row.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..distributed.runner import RaySettings, kill_point, run
from ..encode.folder import Embeddings
from .search import Retrieval, write_part


class _RetrieveWorker:
    """A retrieval actor: opens the index (and BM25) once, then writes the pool rows of query batches."""

    def __init__(self, embeddings: str, params: Any, parts: str) -> None:
        self.retrieval = Retrieval(Embeddings(embeddings), params)
        self.parts = Path(parts)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows = []
        for start, stop in zip(batch["start"], batch["stop"]):
            kill_point()
            rows.append(write_part(self.parts, int(start), self.retrieval.batch(int(start), int(stop))))
        return {"stop": batch["stop"], "rows": rows}


def retrieve_batches(settings: RaySettings, embeddings: Path, params: Any, batches: list[tuple[int, int]],
                     parts: Path, progress: Callable[[int], None]) -> None:
    """Write each ``(start, stop)`` query batch's pool rows to a part file under ``parts`` (a folder every node
    shares), calling ``progress(queries)`` as batches finish."""
    items = [{"start": start, "stop": stop} for start, stop in batches]
    sizes = {stop: stop - start for start, stop in batches}
    run(settings, items, _RetrieveWorker,
        {"embeddings": str(Path(embeddings).resolve()), "params": params, "parts": str(Path(parts).resolve())},
        lambda row: progress(sizes[int(row["stop"])]))
