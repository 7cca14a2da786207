"""What every judge speaks: the verdicts, and the question (:class:`Ask`) it is asked about a candidate."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ...records import setting

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
    """Anything that gives verdicts: ``name`` for reports, ``fingerprint()`` for the cache,
    ``verdicts(asks, done)`` -> one of ``relevant``/``not_relevant``/``unsure``/None per ask, calling
    ``done(i, verdict)`` as each arrives."""

    name: str

    def fingerprint(self) -> str: ...

    def verdicts(self, asks: list[Ask], done: Callable[[int, str | None], None]) -> list[str | None]: ...


@dataclass(frozen=True)
class JudgeOptions:
    """The ``--judge-*`` options a kind of judge may read when built (the LLM client's; others ignore them).
    ``template``: the prompt template, its text or a file holding it; with ``batch`` > 1 a listwise one."""

    key_env: str | None = setting(None, "The environment variable holding the LLM server's API key.",
                                  flag="--judge-key-env")
    template: Path | str | None = setting(None, "A prompt template file with {query}, {candidate} and optionally "
                                          "{positives}.", flag="--judge-template")
    batch: int = setting(1, "Candidates of one query an LLM judges in one request (listwise: the instructions, query "
                         "and positives sent once; verdicts cached per pair whatever K).", flag="--judge-batch", min=1)
    concurrency: int = setting(8, "LLM requests at once.", flag="--judge-concurrency", min=1)
    timeout: float = setting(60.0, "Seconds to wait for one LLM answer.", flag="--judge-timeout")

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
