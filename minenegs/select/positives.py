"""What each candidate row shares with its query's positives, with any one positive held out.

``calibrate`` treats one labelled positive at a time as unlabelled, so every filter that compares a candidate
with the positives must be able to leave one of them out. For a value defined per (candidate, positive) and
reduced over the positives by a maximum (cosine, text equality) or a minimum (the positive score ``p``), it is
enough to keep, per row, the best and second-best value and which positive gave the best: without positive
``h`` the value is the second best where ``h`` gave the best, else the best. Everything here is computed once
per pool, as arrays over all its rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PAIR_CHUNK = 1 << 15  # (candidate, positive) pairs whose vectors are gathered at once


@dataclass(frozen=True)
class BestTwo:
    """Per group: the largest value, the second largest (``fill`` when there is none) and the id that gave the
    largest (-1 for an empty group)."""

    first: np.ndarray
    second: np.ndarray
    arg: np.ndarray

    def without(self, groups: np.ndarray, held_out: np.ndarray) -> np.ndarray:
        """Each of ``groups``' value once the id ``held_out`` (one per group asked, -1: none) is left out."""
        return np.where(self.arg[groups] == held_out, self.second[groups], self.first[groups])


def best_two(values: np.ndarray, sizes: np.ndarray, ids: np.ndarray, fill: float = -np.inf) -> BestTwo:
    """Reduce ``values`` (grouped consecutively, ``sizes[g]`` values for group ``g``, ``ids`` naming each)
    to the two largest per group, in linear time."""
    n = len(sizes)
    first = np.full(n, fill, dtype=np.float64)
    second = np.full(n, fill, dtype=np.float64)
    arg = np.full(n, -1, dtype=np.int64)
    full = np.flatnonzero(sizes > 0)
    if not len(full):
        return BestTwo(first, second, arg)
    values = np.asarray(values, dtype=np.float64)
    starts = (np.cumsum(sizes) - sizes)[full]
    first[full] = np.maximum.reduceat(values, starts)
    group = np.repeat(np.arange(n), sizes)
    position = np.arange(len(values))
    at_best = np.where(values == first[group], position, len(values))
    best_pos = np.minimum.reduceat(at_best, starts)
    arg[full] = ids[best_pos]
    rest = values.copy()
    rest[best_pos] = -np.inf
    second[full] = np.maximum.reduceat(rest, starts)
    second[full] = np.where(sizes[full] > 1, second[full], fill)
    return BestTwo(first, second, arg)


@dataclass(frozen=True)
class PositivePairs:
    """Every (pool row, positive of the same query) pair, grouped by pool row.

    ``cand`` and ``pos`` are pool rows; ``sizes[r]`` is how many positives row ``r``'s query has.
    """

    cand: np.ndarray
    pos: np.ndarray
    sizes: np.ndarray

    @classmethod
    def of(cls, segment_of_row: np.ndarray, is_positive: np.ndarray) -> "PositivePairs":
        pos_rows = np.flatnonzero(is_positive)
        n_segments = int(segment_of_row.max()) + 1 if len(segment_of_row) else 0
        npos = np.bincount(segment_of_row[pos_rows], minlength=n_segments)
        pos_start = np.cumsum(npos) - npos
        sizes = npos[segment_of_row]
        cand = np.repeat(np.arange(len(segment_of_row)), sizes)
        offset = np.arange(len(cand)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        pos = pos_rows[np.repeat(pos_start[segment_of_row], sizes) + offset]
        return cls(cand, pos, sizes)

    def reduce(self, value: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> BestTwo:
        """The two largest ``value(candidate rows, positive rows)`` per pool row, computed in chunks."""
        return best_two(self._values(value), self.sizes, self.pos)

    def reduce_any(self, value: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> BestTwo:
        """The same for a 0/1 ``value``, cheaper: per row, 1 if some positive gives 1, the second value 1 if
        two do, and one positive that does."""
        hit = self._values(value) > 0
        rows, pos = self.cand[hit], self.pos[hit]
        count = np.bincount(rows, minlength=len(self.sizes))
        arg = np.full(len(self.sizes), -1, dtype=np.int64)
        arg[rows] = pos
        return BestTwo((count > 0).astype(np.float64), (count > 1).astype(np.float64), arg)

    def _values(self, value: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
        parts = [value(self.cand[i:i + PAIR_CHUNK], self.pos[i:i + PAIR_CHUNK])
                 for i in range(0, len(self.cand), PAIR_CHUNK)]
        return np.concatenate(parts) if parts else np.zeros(0)


def cosine(vectors: np.ndarray, doc_idx: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Pair values: the inner product of the two rows' document vectors (cosine for unit vectors)."""

    def value(cand: np.ndarray, pos: np.ndarray) -> np.ndarray:
        # a chunk's pairs lie within a few queries: read the span of pool rows they touch once
        lo, hi = min(int(cand[0]), int(pos.min())), max(int(cand[-1]), int(pos.max())) + 1
        span = np.asarray(vectors[doc_idx[lo:hi]], dtype=np.float32)
        return np.einsum("ij,ij->i", span[cand - lo], span[pos - lo])

    return value


def same_key(keys: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Pair values: 1 where the two rows' keys are equal (documents with the same normalised text), else 0."""

    def value(cand: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return (keys[cand] == keys[pos]).astype(np.float64)

    return value
