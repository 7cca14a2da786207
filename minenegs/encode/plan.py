"""The encode's plan, from the texts' hashes and lengths alone: the corpus shards (one side unsharded) then the
queries, each side's unique texts cut into content-addressed chunks, and every repeat of a text (within a side,
in an earlier shard, or a query with a document's text and prompt) taken from where it is encoded, so no text is
encoded twice."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..inputs.staged import digests, in_buckets, repeats
from ..records import TextTable
from .cache import Chunk, plan_chunks, settings_key
from .folder import shard_bounds, shard_names


@dataclass
class Side:
    """What one side (a corpus shard, or the queries) stores, planned from its texts' hashes and lengths alone.

    Its unique texts (local rows ``unique``, in row order) go through the chunk cache, cut by ``order``/``chunks``;
    local row ``rows[k]`` takes unique text ``text_index[k]``'s vector; local rows ``copied`` take the vectors of
    the earlier stored global rows ``sources``."""

    name: str
    lo: int
    count: int
    prompt: str | None
    unique: np.ndarray
    rows: np.ndarray
    text_index: np.ndarray
    copied: np.ndarray
    sources: np.ndarray
    order: list[int]
    chunks: list[Chunk]

    @classmethod
    def plan(cls, name: str, lo: int, hashes: np.ndarray, lengths: np.ndarray, later: np.ndarray, first: np.ndarray,
             prompt: str | None, settings: str, size: int) -> "Side":
        """``later``: the local rows whose text an earlier row has; ``first``: that row, numbered globally (this
        side's rows from ``lo``): one of this side's is encoded once, a stored one (before ``lo``) copied."""
        inside = first >= lo
        owner = np.arange(len(hashes), dtype=np.int64)
        owner[later[inside]] = first[inside] - lo
        copied, sources = later[~inside], first[~inside]
        own = np.setdiff1d(np.arange(len(hashes), dtype=np.int64), copied, assume_unique=True)
        unique = own[owner[own] == own]
        index_of = np.full(len(hashes), -1, dtype=np.int64)
        index_of[unique] = np.arange(len(unique))
        raw = np.ascontiguousarray(hashes[unique]).tobytes()
        order, chunks = plan_chunks(lengths[unique].tolist(), [raw[i:i + 16] for i in range(0, len(raw), 16)],
                                    settings, size)
        return cls(name, lo, len(hashes), prompt, unique, own, index_of[owner[own]], copied, sources, order, chunks)

    def chunk_rows(self, chunk: Chunk) -> np.ndarray:
        """The local rows of a chunk's texts, in encoding order."""
        return self.unique[np.asarray(self.order[chunk.start:chunk.stop], dtype=np.int64)]


class Scatter:
    """Writes each chunk's vectors to every row whose text is in the chunk."""

    def __init__(self, side: Side) -> None:
        pos_of_text = np.empty(len(side.order), dtype=np.int64)
        pos_of_text[np.asarray(side.order, dtype=np.int64)] = np.arange(len(side.order))
        pos = pos_of_text[side.text_index] if len(side.text_index) else side.text_index
        perm = np.argsort(pos, kind="stable")
        self.rows, self.sorted_pos = side.rows[perm], pos[perm]

    def __call__(self, output: np.ndarray, start: int, stop: int, vectors: np.ndarray) -> None:
        lo, hi = np.searchsorted(self.sorted_pos, [start, stop])
        if hi > lo:
            output[self.rows[lo:hi]] = vectors[self.sorted_pos[lo:hi] - start]


class InMemory:
    """A corpus table held in memory, planned as a staged corpus is (:class:`~minenegs.inputs.staged.StagedCorpus`):
    its texts' hashes and lengths by row range, and its repeated texts."""

    def __init__(self, table: TextTable) -> None:
        self.hashes, self.lengths = digests(table.texts)

    def digests(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        return self.hashes[lo:hi], self.lengths[lo:hi]

    def repeats(self, others: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return repeats(in_buckets(self.hashes), others)


def plan_sides(corpus: Any, queries: TextTable, shards: int, corpus_prompt: str | None, query_prompt: str | None,
               fingerprint: str, settings: dict[str, Any], size: int) -> Iterator[Side]:
    """The corpus shards (one side unsharded), then the queries, each planned when it is reached (so the plans
    held are one side's). A text is encoded once: a repeat within a side is in one chunk, a text of an earlier
    shard (or a query with a document's text and prompt) is copied."""
    texts = corpus if hasattr(corpus, "digests") else InMemory(corpus)
    asked = InMemory(queries)
    later, first, q_source = texts.repeats(asked.hashes if query_prompt == corpus_prompt else None)
    corpus_key, query_key = (settings_key(fingerprint, settings, p) for p in (corpus_prompt, query_prompt))
    bounds = shard_bounds(len(corpus), shards) if shards > 1 else [(0, len(corpus))]
    for name, (lo, hi) in zip(shard_names(len(bounds)) if shards > 1 else ["."], bounds):
        at = slice(*np.searchsorted(later, [lo, hi]))
        yield Side.plan(name, lo, *texts.digests(lo, hi), later[at] - lo, first[at], corpus_prompt, corpus_key, size)
    # the queries are numbered after the documents: a query with a document's text is copied from its row
    q_later, q_first, _ = asked.repeats()
    q_source = q_source if q_source is not None else np.full(len(queries), -1, dtype=np.int64)
    copied = np.flatnonzero(q_source >= 0)
    yield Side.plan("queries", len(corpus), asked.hashes, asked.lengths, np.r_[q_later, copied],
                    np.r_[q_first + len(corpus), q_source[copied]], query_prompt, query_key, size)


def ray_job(side: Side, chunk: Chunk, corpus: Any, queries: TextTable) -> dict[str, Any]:
    """A chunk for a Ray worker: its texts, or where a worker reads them (a staged corpus' file rows, and the
    span of its shard's rows there)."""
    rows = side.chunk_rows(chunk)
    job = {"key": chunk.key, "prompt": side.prompt, "source": "", "span": [0, 0], "rows": []}
    if side.name == "queries":
        return {**job, "texts": [queries.texts[i] for i in rows]}
    if not hasattr(corpus, "file_rows"):
        return {**job, "texts": [corpus.texts[side.lo + i] for i in rows]}
    files = corpus.file_rows(side.lo, side.lo + side.count)
    return {**job, "texts": [], "source": str(corpus.path), "span": [int(files[0]), int(files[-1]) + 1],
            "rows": files[rows].tolist()}
