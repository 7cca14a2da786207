"""What every judge speaks: the verdicts, and the question (:class:`Ask`) it is asked about a candidate."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

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
