"""Judging the candidates a selection would hand out, lazily, with a chain of judges.

After the cheap guards (the filters) and the strategy's order, each query's candidates are walked in that order:
the next ones it still needs go to the judges, a batch across all queries at a time, until the query has its
``num_negatives`` cleared negatives, its candidates run out, or ``MineParams.ce_depth`` of them (``--judge-depth``, 30) were judged. So judge calls grow
with ``--num-negatives``, not with ``--depth``; ``budget`` caps the calls of a run (a query left unjudged is short).

Two ways to chain judges, cheapest first:

- ``veto``: a candidate must be cleared ("not relevant") by every judge; each judge sees only what the ones
  before it cleared.
- ``confirm`` (RLHN's cascade): the first judge screens every candidate; what it does not clear goes to the next
  judge, whose verdict stands; so a cheap judge's false alarms do not cost good hard negatives.

A candidate called relevant is *flagged*: dropped (``action="drop"``), or written as a positive of its query
(``"promote"``); with ``max_flagged``, a query with more flagged candidates than that is dropped whole. A flagged
candidate then counts as a positive for the positive-similarity guard: a later candidate of its query with cosine
>= the guard's threshold to it is set aside without a call (counted as ``near_flagged``; ``guard_flags=False``
turns this off). A candidate left unsure, or without a verdict (a failed or malformed answer), is neither cleared
nor flagged: it is not handed out. Every verdict is cached in the pool folder under the judge's fingerprint and
the pair's texts (``judges/<fingerprint>.jsonl``, appended as answers arrive), so a rerun, a new threshold or
strategy, or a run killed half-way never asks again for a pair already answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..errors import InputError
from ..settings import setting
from .contamination import MAX_PROBES, Flags
from .judges.base import NOT_RELEVANT, RELEVANT, Ask, Judge, JudgeOptions, VerdictCache, key_of, verdict_of
from .judges.cross_encoder import CrossEncoderJudge

if TYPE_CHECKING:
    from .engine import Picked, RowsView
    from .params import MineParams

MODES = ("veto", "confirm")
ACTIONS = ("drop", "promote")


class Walked(NamedTuple):
    """What :meth:`Judging.walk` found, per query: candidates cleared, flagged, set aside unasked; asked about."""

    cleared: list[list[int]]
    flagged: list[list[int]]
    aside: list[list[int]]
    asked: list[int]


@dataclass
class JudgeStats:
    calls: int = 0
    cache_hits: int = 0
    seconds: float = 0.0  # wall time of this judge's calls (a cached verdict costs none)
    verdicts: dict[str, int] = field(default_factory=lambda: {"relevant": 0, "not_relevant": 0, "unsure": 0,
                                                              "none": 0})


@dataclass
class Judging:
    """A chain of judges and how it is run (see the module); and ``scorer``, the cross-encoder whose probabilities
    the ``ce_max`` and ``promote`` filters read (scored before the strategy, to ``MineParams.ce_depth``), cached in
    the same verdict cache. Either may be missing, not both."""

    judges: list[Judge] = field(default_factory=list)
    mode: str = setting("veto", "veto (every judge must clear a candidate) or confirm (what a judge does not clear "
                        "goes to the next, whose word stands).", flag="--judge-mode", choices=MODES)
    budget: int | None = setting(None, "Judge calls per run at most (cached verdicts are free).", flag="--judge-budget",
                                 min=1)
    action: str = setting("drop", "drop (a flagged candidate) or promote (write it as a positive).",
                          flag="--judge-action", choices=ACTIONS)
    max_flagged: int | None = setting(None, "Drop a query with more flagged candidates than this.",
                                      flag="--judge-max-flagged", min=0)
    guard_flags: bool = setting(True, "Flagged candidates count as positives for the positive-similarity guard: a "
                                "later candidate as close to one is set aside unasked.",
                                flag="--judge-guard/--no-judge-guard")
    probes: int = setting(MAX_PROBES, "Held-out positives and far documents (each) the judges are asked about to "
                          "estimate, from their flags, the relevant share of the negatives handed out (0: no "
                          "estimate).", flag="--judge-probes", min=0)
    scorer: CrossEncoderJudge | None = None
    stats: dict[str, JudgeStats] = field(default_factory=dict)
    tally: list[Flags] = field(default_factory=list, init=False, repr=False)  # what each judged selection saw
    budget_left: int | None = field(default=None, init=False)
    _caches: dict[tuple[str, str], VerdictCache] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.judges and self.scorer is None:
            raise InputError("judging needs at least one judge (--judge) or a --cross-encoder")
        if self.mode not in MODES:
            raise InputError(f"--judge-mode {self.mode}: choose one of {', '.join(MODES)}")
        if self.action not in ACTIONS:
            raise InputError(f"--judge-action {self.action}: choose one of {', '.join(ACTIONS)}")
        if self.budget is not None and self.budget < 1:
            raise InputError(f"--judge-budget {self.budget}: must be at least 1")
        if self.probes < 0:
            raise InputError(f"--judge-probes {self.probes}: must be 0 or more")
        if self.max_flagged is not None and self.max_flagged < 0:
            raise InputError(f"--judge-max-flagged {self.max_flagged}: must be 0 or more")
        self.budget_left = self.budget
        self.stats = {j.name: JudgeStats() for j in self.judges}

    @classmethod
    def of(cls, judges: list[str] | None = None, cross_encoder: str | None = None, **settings: Any) -> "Judging | None":
        """The judging the options ask for (``--judge`` specs, ``--cross-encoder``, and ``settings``: this record's
        and :class:`~.judges.base.JudgeOptions`' fields by name), or None for none. A judging option without a
        judge to use it is an error, not ignored."""
        from .judges import parse_judge

        names = {f.name: f for f in fields(cls) if "flag" in f.metadata}
        options = JudgeOptions(**{k: v for k, v in settings.items() if k not in names})
        scorer = CrossEncoderJudge(cross_encoder, options.ce_batch_size) if cross_encoder else None
        if not judges:
            declared = {f.name: f for f in (*names.values(), *fields(JudgeOptions))}
            given = [declared[k] for k, v in settings.items()  # (NaN differs from every default too)
                     if declared[k].default != v and not (scorer and k == "ce_batch_size")]
            if given:
                raise InputError(f"{given[0].metadata['flag'].split('/')[0]} needs --judge SPEC")
            return cls(scorer=scorer) if scorer else None
        return cls([parse_judge(spec, options) for spec in judges], scorer=scorer,
                   **{k: v for k, v in settings.items() if k in names})

    def cache(self, pool: Path, judge: Judge) -> VerdictCache:
        """The verdict cache of ``judge`` in ``pool``, read once per run."""
        key = (str(pool), judge.fingerprint())
        if key not in self._caches:
            self._caches[key] = VerdictCache(pool, key[1])
        return self._caches[key]

    def probe(self) -> None:
        """Judges that call a server: fail in seconds, before any work, when nothing answers there."""
        for judge in self.judges:
            if hasattr(judge, "probe"):
                judge.probe()

    def close(self) -> None:
        for cache in self._caches.values():
            cache.close()
        self._caches.clear()

    def __enter__(self) -> "Judging":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def calls(self) -> int:
        """Judge calls so far, over every judge."""
        return sum(s.calls for s in self.stats.values())

    @property
    def asked(self) -> int:
        """Verdicts wanted so far, over every judge, whether called for or read from the cache: the calls a run
        with an empty cache would make."""
        return sum(s.calls + s.cache_hits for s in self.stats.values())

    def summary(self) -> dict[str, Any]:
        return {"mode": self.mode, "action": self.action, **({"budget": self.budget} if self.budget else {}),
                "judges": {name: {"calls": s.calls, "cache_hits": s.cache_hits, "verdicts": s.verdicts,
                                  "seconds": round(s.seconds, 3), **_usage(j)}
                           for (name, s), j in zip(self.stats.items(), self.judges)}}

    # -- one judge over a batch ------------------------------------------------------------------------------
    def verdicts(self, pool: Path, judge: Judge, asks: list[Ask]) -> list[str | None]:
        """Verdicts for ``asks`` from ``judge``: cached answers (in ``pool``) without a call, the rest asked while
        the budget lasts (beyond it: None)."""
        cache, stats = self.cache(pool, judge), self.stats[judge.name]
        keys = [key_of(judge, a) for a in asks]
        answers: list[str | float | None] = [cache.known.get(k) for k in keys]
        todo = [i for i, v in enumerate(answers) if v is None]
        stats.cache_hits += len(asks) - len(todo)
        if self.budget_left is not None:
            todo, self.budget_left = todo[:self.budget_left], max(0, self.budget_left - len(todo))
        if todo:
            stats.calls += len(todo)

            def done(j: int, answer: str | float | None) -> None:
                if answer is not None:
                    cache.add(keys[todo[j]], answer)

            started = time.perf_counter()
            for i, answer in zip(todo, judge.verdicts([asks[i] for i in todo], done)):
                answers[i] = answer
            stats.seconds += time.perf_counter() - started
        out = [verdict_of(judge, a) for a in answers]
        for v in out:
            stats.verdicts[v or "none"] += 1
        return out

    def decide(self, pool: Path, asks: list[Ask]) -> list[str | None]:
        """The chain's verdict per ask: ``not_relevant`` (cleared), ``relevant`` (flagged) or None (neither)."""
        final: list[str | None] = [None] * len(asks)
        live = list(range(len(asks)))
        for step, judge in enumerate(self.judges):
            last = step == len(self.judges) - 1
            said = self.verdicts(pool, judge, [asks[i] for i in live])
            passed = []
            for i, v in zip(live, said):
                if self.mode == "veto":
                    if v == NOT_RELEVANT and not last:
                        passed.append(i)  # cleared here: the next judge looks too
                    else:
                        final[i] = v if v in (RELEVANT, NOT_RELEVANT) else None
                else:  # confirm: what this judge does not clear goes on, the last judge's word stands
                    if v == NOT_RELEVANT or last:
                        final[i] = v if v in (RELEVANT, NOT_RELEVANT) else None
                    else:
                        passed.append(i)
            live = passed
            if not live:
                break
        return final

    # -- the lazy walk ---------------------------------------------------------------------------------------
    def walk(self, pool: Path, ordered: list[np.ndarray], need: int, depth: int, ask: Callable[[int, int], Ask],
             near: Callable[[list[int], int], bool] | None = None) -> Walked:
        """Each query's cleared candidates (at most ``need``, in order), flagged ones, ones set aside unasked and
        how many were asked about, from ``ordered`` (each query's candidates in preference order, as indices ``ask(query, index)``
        understands). ``near(flagged, index)``: whether a candidate is as close to one of its query's flagged
        candidates as the positive-similarity guard allows to a positive; such a candidate is set aside without
        a call, as the guard would drop it beside a positive."""
        cleared: list[list[int]] = [[] for _ in ordered]
        flagged: list[list[int]] = [[] for _ in ordered]
        aside: list[list[int]] = [[] for _ in ordered]
        at = [0] * len(ordered)
        limit = [min(len(o), depth) for o in ordered]
        while self.budget_left is None or self.budget_left > 0:
            batch = []
            for q, cands in enumerate(ordered):
                take = need - len(cleared[q])
                while take > 0 and at[q] < limit[q]:
                    c = int(cands[at[q]])
                    at[q] += 1
                    if near is not None and flagged[q] and near(flagged[q], c):
                        aside[q].append(c)
                        continue
                    batch.append((q, c))
                    take -= 1
            if not batch:
                break
            for (q, c), verdict in zip(batch, self.decide(pool, [ask(q, c) for q, c in batch])):
                if verdict == NOT_RELEVANT:
                    cleared[q].append(c)
                elif verdict == RELEVANT:
                    flagged[q].append(c)
        return Walked(cleared, flagged, aside, [at[q] - len(aside[q]) for q in range(len(ordered))])


def parts(judging: Judging | None) -> tuple[CrossEncoderJudge | None, Judging | None]:
    """``judging``'s scorer for the filters, and ``judging`` itself where it has a chain of judges (else None)."""
    if judging is None:
        return None, None
    return judging.scorer, judging if judging.judges else None


def provenance(judging: Judging) -> dict[str, Any]:
    """What an output records of the judging that made it (no run counts: the bytes stay the same on a rerun)."""
    return {"mode": judging.mode, "action": judging.action, "budget": judging.budget,
            "max_flagged": judging.max_flagged, **({} if judging.guard_flags else {"guard_flags": False}),
            "judges": [j.fingerprint() for j in judging.judges]}


def running(judging: Judging | None) -> AbstractContextManager:
    """``judging`` as a context that closes its verdict caches at the end (nothing to do without judges)."""
    return judging if judging is not None else nullcontext()


def _usage(judge: Judge) -> dict[str, Any]:
    usage = getattr(judge, "usage", None)
    return {"usage": usage.to_dict()} if usage is not None and hasattr(usage, "to_dict") else {}


def judged(picked: Picked, view: RowsView, params: MineParams, judging: Judging, pool: Path,
           ask: Callable[[int, int], Ask]) -> Picked:
    """``picked`` (a selection's :class:`~.engine.Picked` over ``view``) with its negatives judged: the first
    ``num_negatives`` cleared candidates of each instance, flagged ones dropped or promoted. ``ask(instance, row)``
    is the question about view row ``row`` for instance ``instance``."""
    n_inst = len(picked.counts)
    owner = view.inst.owner[picked.ordered]
    bounds = np.cumsum(np.bincount(owner, minlength=n_inst))[:-1] if n_inst else []
    ordered = np.split(picked.ordered, bounds) if n_inst else []
    near = _near_flagged(view, params) if judging.guard_flags else None
    cleared, flagged, aside, asked = judging.walk(pool, ordered, params.num_negatives, params.ce_depth, ask, near)
    if judging.max_flagged is not None:  # RLHN: a query with too many flagged candidates is dropped whole
        for q in range(n_inst):
            if len(flagged[q]) > judging.max_flagged:
                cleared[q], asked[q] = [], 0
    judging.tally.append(Flags(np.asarray(asked, np.int64), np.asarray([len(f) if a else 0 for f, a in
                                                                        zip(flagged, asked)], np.int64),
                               np.asarray([len(c) for c in cleared], np.int64)))
    chosen = np.asarray([r for rows in cleared for r in rows], dtype=np.int64)
    counts = np.asarray([len(rows) for rows in cleared], dtype=np.int64)
    lifted = picked.lifted
    n_flagged = sum(len(f) for f in flagged)
    if judging.action == "promote" and n_flagged:
        extra = np.zeros(len(view.rows), dtype=bool)
        extra[[r for rows in flagged for r in rows]] = True
        lifted = extra if lifted is None else lifted | extra
    removed = {**picked.removed, "judges": n_flagged,
               **({} if near is None else {"near_flagged": sum(len(a) for a in aside)})}
    return replace(picked, chosen=chosen, counts=counts, lifted=lifted, removed=removed)


def _near_flagged(view: RowsView, params: MineParams) -> Callable[[list[int], int], bool] | None:
    """The positive-similarity guard with the judges' flags as positives: whether view row ``row`` has cosine
    >= the guard's threshold with one of the rows in ``flagged`` (None without the guard or the corpus's
    vectors)."""
    from .filters.max_positive_similarity import FILTER as GUARD

    t, corpus = (params.thresholds or {}).get(GUARD.name), view.pool.corpus
    if t is None or corpus is None:
        return None
    seen: dict[int, np.ndarray] = {}

    def vector(row: int) -> np.ndarray:
        if row not in seen:
            seen[row] = np.asarray(corpus.vectors[view.doc_idx[[row]]], dtype=np.float32)[0]
        return seen[row]

    return lambda flagged, row: any(float(vector(row) @ vector(f)) >= t for f in flagged)

