"""A pool folder opened for selection: its manifest, its embeddings, the corpus's vectors and texts, and the
judge's scores for any of its rows (scored once, cached in the pool). ``sweep``, ``calibrate``, ``mine``,
``filter`` and the drop-in all select through here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifacts import read_manifest
from ..encode.folder import Embeddings
from ..errors import InputError
from ..retrieve.search import KIND as POOL_KIND
from .candidates import corpus_view, judge_pairs, pool_chunks, read_pool_arrays
from .engine import Selector
from .filters import needs_judge
from .params import MineParams
from .selection import Selection


class OpenedPool:
    """A pool folder ready to select from; ``judge`` scores the pairs the judge filters read (None: no judge,
    and no filter that needs one may be set: ``needs_judge``)."""

    def __init__(self, pool: Path | str, params: MineParams, judge: Any = None, progress: Any = None,
                 needs: bool | None = None) -> None:
        self.pool, self.params, self.judge, self.progress = Path(pool), params, judge, progress
        self.manifest = read_manifest(self.pool, POOL_KIND)
        self.emb = Embeddings(self.manifest["embeddings"])
        self.corpus = corpus_view(self.emb)
        if judge is None and (needs_judge(params.thresholds) if needs is None else needs):
            raise InputError("--ce-max and --promote need --cross-encoder NAME_OR_PATH")
        self.queries = self.emb.table("queries").texts if judge is not None else None

    def selector(self, arrays: dict[str, Any]) -> Selector:
        """The selection engine over ``arrays`` (all of the pool, or a chunk of its queries)."""
        logits = None
        if self.judge is not None:
            logits = self.judge.scores(self.pool, judge_pairs(arrays, self.params), self.queries.__getitem__,
                                       self.corpus.text, self.progress)
        return Selector(arrays, self.corpus, logits)

    def whole(self) -> Selector:
        """The engine over all of the pool at once (``sweep``, ``calibrate``)."""
        return self.selector(read_pool_arrays(self.pool))

    def select(self, arrays: dict[str, Any] | None = None) -> Selection:
        """Each query's negatives under the params, a chunk of queries at a time (:func:`.candidates.pool_chunks`):
        every filter and draw is per query, so the result is the same as over the whole pool, in memory bounded by
        a chunk; or over ``arrays``, the whole pool already read."""
        chunks = [arrays] if arrays is not None else pool_chunks(self.pool)
        return Selection.merge([self.selector(chunk).selection(self.params) for chunk in chunks])
