"""From a candidate pool to negatives: a strategy orders each query's candidates inside the rank window,
and the first ``num_negatives`` that pass every filter become its negatives. A query left with fewer is
reported short, never padded."""

from __future__ import annotations

import weakref
import zlib
from dataclasses import dataclass
from typing import Protocol
from functools import cached_property

import numpy as np

from .filters import REGISTRY, CorpusView
from .params import MineParams
from .positives import BestTwo, PositivePairs, best_two, cosine, same_key
from .selection import Selection
from .strategies import STRATEGIES


# -- the selection engine ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Instances:
    """Selections to make over one pool. Instance ``k`` is the query of segment ``segment[k]`` with the positive
    at pool row ``held_out[k]`` treated as unlabelled (-1: none held out). ``rows`` holds each instance's pool
    rows in pool (rank) order, one instance after another; ``owner`` names the instance of each."""

    segment: np.ndarray
    held_out: np.ndarray
    rows: np.ndarray
    owner: np.ndarray


def _uniforms(seed: int, query_keys: np.ndarray, doc_idx: np.ndarray) -> np.ndarray:
    """One number in (0, 1) per row, a hash of (seed, query, document): each query's draw depends on nothing
    else, and a query held out for calibration draws what it draws when mined."""

    def mix(x: np.ndarray) -> np.ndarray:  # splitmix64's finaliser
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))

    with np.errstate(over="ignore"):
        h = mix(mix(np.full(len(doc_idx), seed & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)) ^ query_keys)
        h = mix(h ^ doc_idx.astype(np.uint64))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0 ** -53


def _sort_bits(owner: np.ndarray, n_owners: int, key: np.ndarray) -> np.ndarray:
    """One unsigned integer per row that sorts like (owner, key): the owner in the high bits, the float key in
    the rest through the order-preserving map of IEEE bits (negatives flipped), truncated to fit. Keys closer
    than about 2^-(43 - owner bits) relative then tie, and a stable sort leaves ties in rank order. One radix
    sort of this is several times faster than a three-key lexsort."""
    owner_bits = max(1, int(n_owners - 1).bit_length())
    bits = np.ascontiguousarray(key, dtype=np.float64).view(np.uint64)
    negative = (bits >> np.uint64(63)).astype(bool)
    ordered = np.where(negative, ~bits, bits | np.uint64(1 << 63))
    return (owner.astype(np.uint64) << np.uint64(64 - owner_bits)) | (ordered >> np.uint64(owner_bits))


class Step(Protocol):
    """What runs after the filters and the strategy's order, before anything is handed out (judging:
    :class:`~minenegs.select.from_pool.JudgingStep`): what ``picked`` over ``view`` under ``params`` becomes."""

    def __call__(self, picked: Picked, view: RowsView, params: MineParams) -> Picked: ...


class RowsView:
    """The rows of a set of instances as the filters and strategies see them: each row's score, its query's
    lowest positive score, and (computed on first use) how close it is to the query's positives, all with
    each instance's held-out positive counted as unlabelled."""

    def __init__(self, pool: "Selector", inst: Instances) -> None:
        a = pool.arrays
        self.pool, self.inst = pool, inst
        self.rows = inst.rows
        self.held = inst.held_out[inst.owner]
        self.doc_idx = a["doc_idx"][self.rows]
        self.rank = a["rank"][self.rows]
        self.scores = a["score"][self.rows]
        self.retrieved = a["retrieved"][self.rows]
        self.is_positive = a["is_positive"][self.rows] & (self.rows != self.held)
        self.positive_score = pool.positive_min.without(inst.segment, inst.held_out)[inst.owner]

    def _best(self, name: str) -> np.ndarray | None:
        best = getattr(self.pool, name)
        return None if best is None else best.without(self.rows, self.held)

    @cached_property
    def positive_cosine(self) -> np.ndarray | None:
        """Largest cosine between the row's document and one of its query's positives (None without vectors)."""
        return self._best("cosine_best")

    @cached_property
    def duplicates_positive_text(self) -> np.ndarray | None:
        """Whether the row's document has a positive's normalised text (None without texts)."""
        best = self._best("text_best")
        return None if best is None else best > 0

    @cached_property
    def ce(self) -> np.ndarray | None:
        """Cross-encoder probability, sigmoid(logit), NaN where unscored; None without a cross-encoder."""
        return None if self.pool.ce_prob is None else self.pool.ce_prob[self.rows]


@dataclass
class Picked:
    """What one setting chose over a :class:`RowsView` (masks and indices are over the view's rows)."""

    chosen: np.ndarray  # rows picked, instance after instance, in preference order
    counts: np.ndarray  # negatives per instance
    window: np.ndarray  # candidates inside the rank window
    keep: np.ndarray  # window candidates that passed every filter
    removed: dict[str, int]
    lifted: np.ndarray | None  # candidates promoted to pseudo-positives
    ordered: np.ndarray  # every candidate that passed, instance after instance, in preference order

    def split(self, values: np.ndarray) -> list[np.ndarray]:
        """``values`` (one per view row) of the chosen rows, one array per instance."""
        if not len(self.counts):
            return []
        return np.split(values[self.chosen], np.cumsum(self.counts)[:-1])


class Selector:
    """A pool's columns, and what the filters derive from them, each computed once when first needed."""

    def __init__(self, arrays: dict[str, np.ndarray], corpus: CorpusView | None = None,
                 ce_logits: dict[tuple[int, int], float] | None = None) -> None:
        self.arrays, self.corpus, self.ce_logits = arrays, corpus, ce_logits
        q = arrays["query_idx"]
        bounds = np.flatnonzero(np.diff(q)) + 1
        self.starts = np.concatenate([[0], bounds]).astype(np.int64) if len(q) else np.zeros(0, np.int64)
        self.sizes = np.diff(np.append(self.starts, len(q)))
        self.segment_of_row = np.repeat(np.arange(len(self.starts)), self.sizes)
        self.positive_counts = np.bincount(self.segment_of_row[arrays["is_positive"]], minlength=len(self.starts))
        self._uniforms: dict[int, np.ndarray] = {}

    @cached_property
    def query_ids(self) -> list[str]:
        import pyarrow as pa

        return self.arrays["query_id"].take(pa.array(self.starts)).to_pylist()

    @cached_property
    def query_keys(self) -> np.ndarray:
        """Per row, a number standing for its query id (for the seeded draws)."""
        crc = np.array([zlib.crc32(q.encode("utf-8")) for q in self.query_ids], dtype=np.uint64)
        return crc[self.segment_of_row]

    @cached_property
    def positive_min(self) -> BestTwo:
        """Per segment, the lowest and second-lowest positive score (negated: BestTwo keeps the largest)."""
        pos_rows = np.flatnonzero(self.arrays["is_positive"])
        best = best_two(-self.arrays["score"][pos_rows].astype(np.float64), self.positive_counts, pos_rows)
        flip = lambda x: np.where(np.isfinite(x), -x, np.nan)  # noqa: E731
        return BestTwo(flip(best.first), flip(best.second), best.arg)

    @cached_property
    def pairs(self) -> PositivePairs:
        return PositivePairs.of(self.segment_of_row, self.arrays["is_positive"])

    @cached_property
    def cosine_best(self) -> BestTwo | None:
        if self.corpus is None:
            return None
        return self.pairs.reduce(cosine(self.corpus.vectors, self.arrays["doc_idx"]))

    @cached_property
    def text_best(self) -> BestTwo | None:
        if self.corpus is None:
            return None
        self.corpus.prepare_keys(self.arrays["doc_idx"])  # every document of the pool, normalised in one pass
        return self.pairs.reduce_any(same_key(self.corpus.text_keys(self.arrays["doc_idx"])))

    @cached_property
    def ce_logit(self) -> np.ndarray | None:
        """Per row, the cross-encoder logit of (query, document), NaN where unscored."""
        if self.ce_logits is None:
            return None
        a = self.arrays
        wanted = (a["query_idx"].astype(np.int64) << 32) | a["doc_idx"].astype(np.int64)
        known = np.fromiter(((q << 32) | d for q, d in self.ce_logits), dtype=np.int64, count=len(self.ce_logits))
        logits = np.fromiter(self.ce_logits.values(), dtype=np.float64, count=len(self.ce_logits))
        if not len(known):
            return np.full(len(wanted), np.nan)
        order = np.argsort(known)
        known, logits = known[order], logits[order]
        at = np.minimum(np.searchsorted(known, wanted), len(known) - 1)
        return np.where(known[at] == wanted, logits[at], np.nan)

    @cached_property
    def ce_prob(self) -> np.ndarray | None:
        from .judges import sigmoid

        return None if self.ce_logit is None else sigmoid(self.ce_logit)

    def uniforms(self, seed: int) -> np.ndarray:
        if seed not in self._uniforms:
            self._uniforms[seed] = _uniforms(seed, self.query_keys, self.arrays["doc_idx"])
        return self._uniforms[seed]

    # -- instances ----------------------------------------------------------------------------------
    @cached_property
    def view(self) -> RowsView:
        """Every query, nothing held out, as the filters see it: what ``mine``, ``sweep`` and ``calibrate`` pick
        from (its derived columns are computed once for all the settings tried). It refers to this pool weakly:
        the pool owns it, and no cycle keeps a pool's arrays alive after its last use."""
        return RowsView(weakref.proxy(self), self.queries())

    def queries(self) -> Instances:
        """One instance per query, nothing held out: what ``mine`` selects."""
        n = len(self.starts)
        return Instances(np.arange(n), np.full(n, -1, np.int64), np.arange(len(self.segment_of_row)),
                         self.segment_of_row)

    def holdouts(self, limit: int | None = None, seed: int = 0) -> Instances:
        """One instance per retrieved positive of every query with two or more positives, that positive held
        out; at most ``limit`` of them (a seeded sample)."""
        a = self.arrays
        rows = np.flatnonzero(a["is_positive"] & a["retrieved"])
        rows = rows[self.positive_counts[self.segment_of_row[rows]] >= 2]
        if limit is not None and len(rows) > limit:
            rows = np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))
        segment = self.segment_of_row[rows]
        sizes = self.sizes[segment]
        owner = np.repeat(np.arange(len(rows)), sizes)
        offset = np.arange(len(owner)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return Instances(segment, rows, np.repeat(self.starts[segment], sizes) + offset, owner)

    # -- selection ----------------------------------------------------------------------------------
    def pick(self, view: RowsView, params: MineParams) -> Picked:
        """Each instance's negatives under ``params``: the first ``num_negatives`` window candidates, in the
        strategy's order, that pass every filter."""
        range_max = params.range_max if params.range_max is not None else np.iinfo(np.int32).max
        window = ~view.is_positive & view.retrieved & (view.rank > params.range_min) & (view.rank <= range_max)
        keep, lifted = window.copy(), None
        removed: dict[str, int] = {}
        for name, record in REGISTRY.items():
            value = params.thresholds.get(name)
            if value is None:
                continue
            passed = record.rule(view, value)
            removed[name] = int((keep & ~passed).sum())
            keep &= passed
            if record.promotes:  # what it removes from the window becomes a pseudo-positive
                lifted = (window & ~passed) if lifted is None else lifted | (window & ~passed)
        idx = np.flatnonzero(keep)
        strategy = STRATEGIES[params.strategy]
        u = self.uniforms(params.seed)[view.rows[idx]] if strategy.seeded else None
        key = strategy.key(view.rank[idx], view.scores[idx], view.positive_score[idx], u, params.strategy_params)
        owner = view.inst.owner[idx]
        n_inst = len(view.inst.segment)
        if key is not None:  # rows are in rank order within each instance already: a stable sort keeps ties so
            order = np.argsort(_sort_bits(owner, n_inst, key), kind="stable")
            idx, owner = idx[order], owner[order]
        group_sizes = np.bincount(owner, minlength=n_inst)
        nth = np.arange(len(idx)) - np.repeat(np.cumsum(group_sizes) - group_sizes, group_sizes)
        chosen = idx[nth < params.num_negatives]
        counts = np.minimum(group_sizes, params.num_negatives)
        return Picked(chosen, counts, window, keep, removed, lifted, idx)

    def selection(self, params: MineParams, step: Step | None = None) -> Selection:
        """``pick`` over every query, as per-query lists (the shape the outputs are written from); ``step``
        (judging) may change what was picked first."""
        view = self.view
        got = self.pick(view, params)
        if step is not None:
            got = step(got, view, params)
        n = len(self.starts)

        def per_query(values: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
            return np.split(values[mask], np.cumsum(np.bincount(view.inst.owner[mask], minlength=n))[:-1]) if n else []

        lifted = got.lifted if got.lifted is not None else np.zeros(len(view.rows), bool)
        sel = Selection(self.arrays["query_idx"][self.starts], self.query_ids,
                        got.split(view.doc_idx), got.split(view.scores),
                        per_query(view.doc_idx, view.is_positive), per_query(view.scores, view.is_positive),
                        window=int(got.window.sum()), removed=got.removed,
                        short=[q for q, c in zip(self.query_ids, got.counts) if c < params.num_negatives],
                        dropped_scores=per_query(view.scores, got.window & ~got.keep),
                        promoted=per_query(view.doc_idx, lifted), promoted_scores=per_query(view.scores, lifted))
        if self.ce_logit is not None:
            logits = self.ce_logit[view.rows]
            sel.negative_ce, sel.positive_ce = got.split(logits), per_query(logits, view.is_positive)
            sel.promoted_ce = per_query(logits, lifted)
        return sel
