"""What every judge speaks: the verdicts, and the question (:class:`Ask`) it is asked about a candidate."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ...settings import setting

RELEVANT, NOT_RELEVANT, UNSURE = "relevant", "not_relevant", "unsure"
VERDICTS = (RELEVANT, NOT_RELEVANT, UNSURE)


@dataclass(frozen=True)
class Ask:
    """One question: the query's text, its labelled positives' texts, the candidate's text."""

    query: str
    positives: tuple[str, ...]
    candidate: str

    def key(self) -> str:
        """The pair's identity in the verdict cache: a digest of the three texts."""
        h = hashlib.sha256()
        for text in (self.query, *self.positives, "\x00", self.candidate):
            h.update(text.encode("utf-8") + b"\x1f")
        return h.hexdigest()[:32]


class Judge(Protocol):
    """Anything that judges pairs: ``name`` for reports, ``fingerprint()`` for the cache, ``verdicts(asks, done)``
    -> per ask a verdict (``relevant``/``not_relevant``/``unsure``) or None (no answer), calling ``done(i, answer)``
    as each arrives. A judge that scores pairs (a cross-encoder) answers with its score instead, and has
    ``verdict(score)`` (its threshold) and ``key(ask)`` (what of the ask its score depends on); its scores are cached,
    so another threshold asks nothing again."""

    name: str

    def fingerprint(self) -> str: ...

    def verdicts(self, asks: list[Ask], done: Callable[[int, str | float | None], None]) -> list[str | float | None]: ...


def verdict_of(judge: Judge, answer: str | float | None) -> str | None:
    """A judge's answer as a verdict: a score through the judge's threshold, a verdict as it is."""
    return judge.verdict(answer) if isinstance(answer, (int, float)) else answer


def key_of(judge: Judge, ask: Ask) -> str:
    """The cache key of ``ask`` for ``judge``: the ask's, unless the judge says what its answer depends on."""
    return judge.key(ask) if hasattr(judge, "key") else ask.key()


@dataclass(frozen=True)
class JudgeOptions:
    """The options a kind of judge may read when built (the LLM client's, the cross-encoder's; others ignore them).
    ``template``: the prompt template, its text or a file holding it; with ``batch`` > 1 a listwise one."""

    key_env: str | None = setting(None, "The environment variable holding the LLM server's API key.",
                                  flag="--judge-key-env")
    template: Path | str | None = setting(None, "A prompt template file with {query}, {candidate} and optionally "
                                          "{positives}.", flag="--judge-template")
    batch: int = setting(1, "Candidates of one query an LLM judges in one request (listwise: the instructions, query "
                         "and positives sent once; verdicts cached per pair whatever K).", flag="--judge-batch", min=1)
    concurrency: int = setting(8, "LLM requests at once.", flag="--judge-concurrency", min=1)
    timeout: float = setting(60.0, "Seconds to wait for one LLM answer.", flag="--judge-timeout")
    ce_batch_size: int = setting(64, "Pairs per cross-encoder batch (batches span queries).", flag="--ce-batch-size",
                                 min=1)

    def template_text(self) -> str | None:
        return self.template.read_text(encoding="utf-8") if isinstance(self.template, Path) else self.template


@dataclass(frozen=True)
class JudgeKind:
    """One kind of judge, as ``--judge NAME:REST`` names it: ``syntax`` (shown in help and errors), ``build(rest,
    options, given)`` -> a :class:`Judge` (``given``: the spec as typed, for its errors). Each module of
    :mod:`minenegs.select.judges` that defines a kind exports it as ``KIND``; the CLI, TOML recipes and the
    drop-in find it there."""

    name: str
    syntax: str
    build: Callable[[str, JudgeOptions, str], Judge]


class VerdictCache:
    """A judge's answers in a pool folder, appended as they arrive (a line an answer, flushed): a verdict, or a
    judge's score (a cross-encoder's logit), under the pair's key. One format for every kind of judge."""

    def __init__(self, pool: Path, fingerprint: str) -> None:
        self.path = Path(pool) / "judges" / f"{fingerprint}.jsonl"
        self.known: dict[str, str | float] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.known[entry["key"]] = entry["verdict"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line a killed run left half-written
        self._fh = None

    def add(self, key: str, verdict: str | float) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write(json.dumps({"key": key, "verdict": verdict}) + "\n")
        self._fh.flush()
        self.known[key] = verdict

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
