"""From a candidate pool to negatives: a strategy orders each query's candidates inside the rank window,
and the first ``num_negatives`` that pass every filter become its negatives. A query left with fewer is
reported short, never padded."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import defaults
from .artifacts import read_parquet
from .errors import InputError
from .filters import FILTERS, CorpusView, QueryView
from .strategies import STRATEGIES, Candidates, StrategyParams


@dataclass(frozen=True)
class MineParams:
    strategy: str = defaults.STRATEGY
    num_negatives: int = defaults.NUM_NEGATIVES
    range_min: int = 0
    range_max: int | None = None
    seed: int = 0
    strategy_params: StrategyParams = field(default_factory=StrategyParams)
    thresholds: dict[str, float] = field(default_factory=dict)  # filter name -> value, only those in use
    ce_depth: int = 30  # candidates up to this original rank are scored by the cross-encoder

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InputError(f"--strategy {self.strategy}: choose one of {', '.join(STRATEGIES)}")
        if self.num_negatives < 1:
            raise InputError("--num-negatives must be at least 1")
        if self.range_min < 0 or (self.range_max is not None and self.range_max <= self.range_min):
            raise InputError("--range-max must be more than --range-min, and --range-min at least 0")
        unknown = set(self.thresholds) - set(FILTERS)
        if unknown:
            raise InputError(f"unknown filter {sorted(unknown)[0]}")


@dataclass
class Selection:
    """Per query of the pool: its negatives (corpus rows, in preference order) and their scores."""

    query_idx: np.ndarray
    query_ids: list[str]
    negatives: list[np.ndarray]
    negative_scores: list[np.ndarray]
    positives: list[np.ndarray]
    positive_scores: list[np.ndarray]
    window: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    short: list[str] = field(default_factory=list)
    dropped_scores: list[np.ndarray] = field(default_factory=list)  # window candidates some filter removed
    promoted: list[np.ndarray] = field(default_factory=list)  # pseudo-positives (corpus rows) per query
    promoted_scores: list[np.ndarray] = field(default_factory=list)
    promoted_ce: list[np.ndarray] = field(default_factory=list)
    negative_ce: list[np.ndarray] = field(default_factory=list)  # cross-encoder logits, NaN where unscored
    positive_ce: list[np.ndarray] = field(default_factory=list)

    def summary(self, n: int) -> dict[str, Any]:
        return {
            "queries": len(self.query_ids),
            "queries_short": len(self.short),
            "negatives": int(sum(len(x) for x in self.negatives)),
            "candidates_in_window": self.window,
            **{f"removed_by_{k}": v for k, v in self.removed.items()},
            "promoted": int(sum(len(x) for x in self.promoted)),
            "num_negatives": n,
            "scores": {"positives": score_stats(self.positive_scores), "negatives": score_stats(self.negative_scores),
                       "dropped": score_stats(self.dropped_scores)},
        }


def score_stats(parts: list[np.ndarray] | np.ndarray) -> dict[str, Any]:
    """Count, mean and percentiles of a set of scores (NaNs ignored)."""
    values = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]) if isinstance(parts, list) and parts \
        else np.asarray(parts if not isinstance(parts, list) else [], dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return {"n": 0}
    p5, p50, p95 = np.percentile(values, [5, 50, 95])
    return {"n": int(len(values)), "mean": round(float(values.mean()), 4), "p5": round(float(p5), 4),
            "p50": round(float(p50), 4), "p95": round(float(p95), 4)}


def query_rng(seed: int, query_id: str) -> np.random.Generator:
    """A generator per query, so a query's draw does not depend on the others or their order."""
    return np.random.default_rng([seed, zlib.crc32(query_id.encode("utf-8"))])


def read_pool_arrays(pool: Path) -> dict[str, np.ndarray]:

    t = read_parquet(pool / "candidates.parquet",
                      columns=["query_idx", "doc_idx", "query_id", "rank", "score", "is_positive"])
    rank = t.column("rank")
    return {
        "query_idx": t.column("query_idx").to_numpy(),
        "doc_idx": t.column("doc_idx").to_numpy(),
        "rank": rank.fill_null(0).to_numpy(),
        "retrieved": rank.is_valid().to_numpy(zero_copy_only=False),
        "score": t.column("score").to_numpy(),
        "is_positive": t.column("is_positive").to_numpy(zero_copy_only=False),
        "query_id": t.column("query_id"),
    }


def corpus_view(emb) -> CorpusView:
    """Vectors and texts of an embeddings folder's corpus, for the filters that need them."""

    texts = read_parquet(emb.folder / "corpus.parquet", columns=["text"]).column("text")
    return CorpusView(emb.vectors("corpus"), texts)


def cross_encoder_pairs(a: dict[str, np.ndarray], params: MineParams) -> np.ndarray:
    """The (query row, corpus row) pairs a cross-encoder must score: positives and candidates to ``ce_depth``."""
    need = a["is_positive"] | (a["retrieved"] & (a["rank"] <= params.ce_depth))
    return np.stack([a["query_idx"][need], a["doc_idx"][need]], axis=1)


def select(pool: Path, params: MineParams, corpus: CorpusView | None = None,
           ce_logits: dict[tuple[int, int], float] | None = None, arrays: dict[str, np.ndarray] | None = None) -> Selection:
    """Choose each query's negatives from the pool folder ``pool``.

    ``corpus`` gives the near-duplicate filters the documents' vectors and texts; without it they keep all.
    ``ce_logits`` maps (query row, corpus row) to a cross-encoder logit, for the cross-encoder filters.
    """
    from .rerank import sigmoid

    a = arrays if arrays is not None else read_pool_arrays(pool)
    strategy = STRATEGIES[params.strategy]
    qidx = a["query_idx"]
    bounds = np.flatnonzero(np.diff(qidx)) + 1
    starts = np.concatenate([[0], bounds]) if len(qidx) else np.zeros(0, dtype=np.int64)
    stops = np.concatenate([bounds, [len(qidx)]]) if len(qidx) else np.zeros(0, dtype=np.int64)
    filters = [(name, FILTERS[name], params.thresholds[name]) for name in FILTERS
               if params.thresholds.get(name) is not None]
    if corpus is not None and params.thresholds.get("duplicate_text"):
        corpus.prepare_keys(a["doc_idx"])  # every document of the pool, normalised in one pass
    sel = Selection(qidx[starts], [], [], [], [], [], removed={name: 0 for name, _, _ in filters})
    range_max = params.range_max if params.range_max is not None else np.iinfo(np.int32).max
    for lo, hi in zip(starts, stops):
        qid = a["query_id"][int(lo)].as_py()
        pos = a["is_positive"][lo:hi]
        scores, ranks, docs = a["score"][lo:hi], a["rank"][lo:hi], a["doc_idx"][lo:hi]
        p = float(scores[pos].min()) if pos.any() else float("nan")
        in_window = ~pos & a["retrieved"][lo:hi] & (ranks > params.range_min) & (ranks <= range_max)
        cands = Candidates(docs[in_window], ranks[in_window], scores[in_window], p)
        q_row = int(qidx[lo])
        ce = None if ce_logits is None else np.array([ce_logits.get((q_row, int(d)), np.nan) for d in cands.doc_idx])
        view = QueryView(cands.score, cands.doc_idx, p, docs[pos], corpus, None if ce is None else sigmoid(ce))
        keep = np.ones(len(cands.rank), dtype=bool)
        for name, fn, value in filters:
            passed = fn(view, value)
            sel.removed[name] += int((keep & ~passed).sum())
            keep &= passed
        rng = query_rng(params.seed, qid) if strategy.seeded else None
        order = strategy.order(cands, rng, params.strategy_params)
        chosen = order[keep[order]][: params.num_negatives]
        sel.query_ids.append(qid)
        sel.negatives.append(cands.doc_idx[chosen])
        sel.negative_scores.append(cands.score[chosen])
        sel.positives.append(docs[pos])
        sel.positive_scores.append(scores[pos])
        if ce is not None:
            sel.negative_ce.append(ce[chosen])
            sel.positive_ce.append(np.array([ce_logits.get((q_row, int(d)), np.nan) for d in docs[pos]]))
        promote = params.thresholds.get("promote")
        lifted = (view.ce > promote) if promote is not None and ce is not None else np.zeros(len(cands.rank), bool)
        sel.promoted.append(cands.doc_idx[lifted])
        sel.promoted_scores.append(cands.score[lifted])
        if ce is not None:
            sel.promoted_ce.append(ce[lifted])
        sel.window += len(cands.rank)
        sel.dropped_scores.append(cands.score[~keep])
        if len(chosen) < params.num_negatives:
            sel.short.append(qid)
    return sel
