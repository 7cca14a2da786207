"""A pool folder opened for selection: its manifest, its embeddings, the corpus's vectors and texts, and the
judge's scores for any of its rows (scored once, cached in the pool). ``sweep``, ``calibrate``, ``mine``,
``filter`` and the drop-in all select through here."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..artifacts import read_manifest
from ..encode.folder import Embeddings
from ..errors import AcceptanceError, InputError
from ..retrieve.search import KIND as POOL_KIND
from .candidates import corpus_view, judge_pairs, pool_chunks, read_pool_arrays
from .contamination import Flags, Probes
from .engine import Picked, RowsView, Selector
from .filters import needs_judge
from .judges.base import Ask, VerdictCache
from .params import MineParams
from .selection import Selection

if TYPE_CHECKING:
    from .judges.cross_encoder import CrossEncoderJudge
    from .judging import Judging


def check_judge(judge: CrossEncoderJudge | None, needed: bool) -> None:
    """Filters that read a judge's scores need a judge."""
    if judge is None and needed:
        raise InputError("--ce-max and --promote need --cross-encoder NAME_OR_PATH")


class OpenedPool:
    """A pool folder ready to select from; ``judge`` scores the pairs the judge filters read (None: no judge,
    and no filter that needs one may be set: ``needs_judge``)."""

    def __init__(self, pool: Path | str, params: MineParams, judge: CrossEncoderJudge | None = None,
                 progress: Any = None, needs: bool | None = None) -> None:
        self.pool, self.params, self.judge, self.progress = Path(pool), params, judge, progress
        self.manifest = read_manifest(self.pool, POOL_KIND)
        self.emb = Embeddings(self.manifest["embeddings"])
        self.corpus = corpus_view(self.emb)
        check_judge(judge, needs_judge(params.thresholds) if needs is None else needs)

    def selector(self, arrays: dict[str, Any]) -> Selector:
        """The selection engine over ``arrays`` (all of the pool, or a chunk of its queries)."""
        logits = None
        if self.judge is not None:
            logits = self.judge.scores(self._scores, judge_pairs(arrays, self.params), self.queries.texts.__getitem__,
                                       self.corpus.text, self.progress)
        return Selector(arrays, self.corpus, logits)

    @cached_property
    def _scores(self) -> VerdictCache:
        """The cross-encoder's cached scores, read once (the cache every judge of the pool uses)."""
        return VerdictCache(self.pool, self.judge.fingerprint())

    @cached_property
    def queries(self) -> Any:
        """The queries' ids and texts (read when a judge first needs them)."""
        return self.emb.table("queries")

    @cached_property
    def query_text(self) -> dict[str, str]:
        return dict(zip(self.queries.ids, self.queries.texts))

    def whole(self) -> Selector:
        """The engine over all of the pool at once (``sweep``, ``calibrate``)."""
        return self.selector(read_pool_arrays(self.pool))

    def select(self, arrays: dict[str, Any] | None = None, judging: Judging | None = None) -> Selection:
        """Each query's negatives under the params, a chunk of queries at a time (:func:`.candidates.pool_chunks`):
        every filter and draw is per query, so the result is the same as over the whole pool, in memory bounded by
        a chunk; or over ``arrays``, the whole pool already read. ``judging`` (:class:`.judging.Judging`) judges
        the candidates each query would get, lazily."""
        chunks = [arrays] if arrays is not None else pool_chunks(self.pool)
        parts = []
        for chunk in chunks:
            selector = self.selector(chunk)
            parts.append(selector.selection(self.params, None if judging is None else self.step(selector, judging)))
        return Selection.merge(parts)

    def ask(self, selector: Selector, segment: int, doc: int, leave_out: int = -1) -> Ask:
        """The question a judge is asked about corpus row ``doc`` for the query of ``segment``: the query's text,
        its positives' texts (the pool row ``leave_out`` left out) and the document's text."""
        return Ask(*self._query_side(selector, segment, leave_out), self.corpus.text(doc))

    def _query_side(self, selector: Selector, segment: int, leave_out: int) -> tuple[str, tuple[str, ...]]:
        """The query's text and its positives' texts (the pool row ``leave_out`` left out)."""
        a, start = selector.arrays, selector.starts[segment]
        rows = start + np.flatnonzero(a["is_positive"][start:start + selector.sizes[segment]])
        return (self.query_text[selector.query_ids[segment]],
                tuple(self.corpus.text(int(a["doc_idx"][r])) for r in rows if r != leave_out))

    def first_chunk(self, arrays: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """``arrays``, else the pool's first chunk of queries (None: a pool without queries)."""
        return arrays if arrays is not None else next(iter(pool_chunks(self.pool)), None)

    def adapt(self, adapt: str, fail_on_dense: bool, arrays: dict[str, Any] | None = None) -> dict[str, Any]:
        """The density probe on the pool's first chunk (or ``arrays``), no judge; under the adaptive recipe it may
        switch ``params`` to the dense recipe. Returns what it measured and chose, with the line to print
        (``line``) and, for negatives likely to hurt, the ``warning`` (with ``fail_on_dense``: an
        :class:`AcceptanceError` instead, before anything is written)."""
        from .adaptive import choose

        chunk = self.first_chunk(arrays)
        if chunk is None:  # a pool without queries: nothing to measure or to write
            return {}
        choice = choose(Selector(chunk, self.corpus), self.params, adapt, self.emb.manifest.get("model"))
        self.params = choice.params
        info = {**choice.to_dict(), "line": choice.line()}
        if choice.risky:
            safer = f"Safer: minenegs filter {self.pool} -o OUT (the adaptive default)"
            info["warning"] = f"{choice.warning()}. {safer}"
            if fail_on_dense:
                raise AcceptanceError(f"--fail-on-dense: {choice.warning()}; nothing was written. {safer}")
        return info

    def flags_estimate(self, judging: Judging, arrays: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The relevant share of the negatives just selected, read from every judged chunk's flags
        (:meth:`contamination`), the probes asked over the first chunk of queries (or ``arrays``); None with
        ``--judge-probes 0``."""
        if not judging.probes:
            return None
        chunk = self.first_chunk(arrays)
        if chunk is None:
            return {"rate": None, "why": "the pool has no queries"}
        return self.step(self.selector(chunk), judging).contamination(Flags.merge(judging.tally))

    def step(self, selector: Selector, judging: Judging) -> JudgingStep:
        """The judging step of selections over ``selector``."""
        return JudgingStep(self, selector, judging)

    def judge_misses(self, selector: Selector, judging: Judging, max_holdouts: int, seed: int) -> dict[str, Any]:
        """Each judge's miss rate on known positives: every reached positive of a query with two or more held out
        in turn (as ``calibrate`` holds them out) and shown to the judge as a candidate, the query's other positives
        as reference; a miss is a "not relevant". 95 % interval as for the leak rate (clustered by query)."""
        from .calibrate import leak_interval
        from .judges.base import NOT_RELEVANT

        inst = selector.holdouts(max_holdouts, seed)
        a = selector.arrays
        asks = [self.ask(selector, int(s), int(a["doc_idx"][r]), int(r)) for s, r in zip(inst.segment, inst.held_out)]
        out = {}
        for judge in judging.judges:
            said = np.asarray(judging.verdicts(self.pool, judge, asks), dtype=object)
            answered = np.asarray([v is not None for v in said], dtype=bool)
            missed = np.asarray([v == NOT_RELEVANT for v in said], dtype=bool)[answered]
            e = leak_interval(missed, inst.segment[answered]) if answered.any() else None
            out[judge.name] = {"holdouts": len(asks), "no_verdict": int((~answered).sum()),
                               **({"miss_rate": round(e.rate, 4), "miss_low": round(e.low, 4),
                                   "miss_high": round(e.high, 4)} if e else {})}
        return out

    def probes(self, selector: Selector, judging: Judging, seed: int = 0) -> Probes:
        """The judges' chain's verdicts (cached with every verdict) on up to ``judging.probes`` held-out positives
        of ``selector``'s queries and as many documents drawn from outside their pools (:mod:`.contamination`)."""
        from .contamination import far_documents

        n, a = judging.probes, selector.arrays
        inst = selector.holdouts(n, seed)
        known = [self.ask(selector, int(s), int(a["doc_idx"][r]), int(r)) for s, r in zip(inst.segment, inst.held_out)]
        docs = [a["doc_idx"][start:start + size] for start, size in zip(selector.starts, selector.sizes)]
        segments, far = far_documents(docs, len(self.corpus.vectors), n, seed)
        far_asks = [self.ask(selector, int(s), int(d)) for s, d in zip(segments, far)]
        return Probes(judging.decide(self.pool, known), inst.segment, judging.decide(self.pool, far_asks), segments)


class JudgingStep:
    """The judging step of selections over one selector (:class:`~.engine.Step`): what a setting picked, judged
    lazily by ``judging`` (a held-out positive left out of the positives the judges are shown); with the counts
    ``calibrate`` reads and the flags estimate of a judged selection."""

    def __init__(self, opened: OpenedPool, selector: Selector, judging: Judging) -> None:
        self.opened, self.selector, self.judging = opened, selector, judging
        self._probes: Probes | None = None  # asked once, on the first estimate

    def __call__(self, picked: Picked, view: RowsView, params: MineParams) -> Picked:
        from functools import cache

        from .judging import judged

        opened, inst = self.opened, view.inst
        query_side = cache(lambda q: opened._query_side(self.selector, int(inst.segment[q]), int(inst.held_out[q])))
        return judged(picked, view, params, self.judging, opened.pool,
                      lambda q, row: Ask(*query_side(q), opened.corpus.text(int(view.doc_idx[row]))))

    @property
    def calls(self) -> int:
        """Judge calls made so far."""
        return self.judging.calls

    @property
    def asked(self) -> int:
        """Verdicts wanted so far, called for or cached."""
        return self.judging.asked

    @property
    def tally(self) -> list[Flags]:
        """What each judged selection so far saw and flagged."""
        return self.judging.tally

    def contamination(self, flags: Flags, seed: int = 0) -> dict[str, Any] | None:
        """The share of handed-out negatives that is relevant, read from what the judges flagged while making a
        selection over the selector (``flags``; :mod:`.contamination`). None with ``--judge-probes 0``."""
        from .contamination import estimate

        if not self.judging.probes:
            return None
        if self._probes is None:
            self._probes = self.opened.probes(self.selector, self.judging, seed)
        return estimate(flags, self._probes, seed=seed)
