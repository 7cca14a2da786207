"""Typed records at the seams of the pipeline, and the column tables that hold many of them."""

from __future__ import annotations

from dataclasses import dataclass, field


def join_title(title: str, text: str) -> str:
    """Join a document's title and text the way BEIR does: ``(title + " " + text).strip()``."""
    return f"{title} {text}".strip() if title else text.strip()


@dataclass(frozen=True, slots=True)
class Doc:
    id: str
    text: str
    title: str = ""

    @property
    def full_text(self) -> str:
        """What gets encoded: title and text joined as BEIR does."""
        return join_title(self.title, self.text)


@dataclass(frozen=True, slots=True)
class Query:
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class Qrel:
    query_id: str
    doc_id: str
    score: int = 1

    @property
    def is_positive(self) -> bool:
        return self.score > 0


@dataclass(frozen=True)
class TextTable:
    """Ids and the texts to encode, row-aligned. Ids are unique."""

    ids: list[str]
    texts: list[str]

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.texts):
            raise ValueError("ids and texts differ in length")

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, lo: int, hi: int) -> "TextTable":
        """Rows ``lo:hi``, as a staged corpus (:class:`~minenegs.inputs.staged.StagedCorpus`) gives them too."""
        return TextTable(self.ids[lo:hi], self.texts[lo:hi])


@dataclass(frozen=True)
class Dataset:
    """A corpus, the queries to mine for, and their relevance judgements (qrels).

    ``sources`` maps each input's role (``corpus``, ``queries``, ``qrels``, ``pairs``) to
    ``{"path": ..., "sha256": ...}`` for provenance.
    """

    corpus: TextTable  # or a StagedCorpus: read back a row range at a time
    queries: TextTable
    qrels: list[Qrel]
    sources: dict[str, dict[str, str]] = field(default_factory=dict)

    def positives(self) -> dict[str, list[str]]:
        """Query id -> ids of its positive documents, in qrels order."""
        out: dict[str, list[str]] = {}
        for qrel in self.qrels:
            if qrel.is_positive:
                out.setdefault(qrel.query_id, []).append(qrel.doc_id)
        return out
