"""A selection: per query of the pool, its negatives (corpus rows, in preference order), their scores, and
what was dropped or promoted; its summary is what the commands report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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

    @classmethod
    def merge(cls, parts: list["Selection"]) -> "Selection":
        """One selection from selections over disjoint sets of queries, in order."""
        if len(parts) == 1:
            return parts[0]
        lists = {name: [x for p in parts for x in getattr(p, name)] for name in
                 ("query_ids", "negatives", "negative_scores", "positives", "positive_scores", "short",
                  "dropped_scores", "promoted", "promoted_scores", "promoted_ce", "negative_ce", "positive_ce")}
        removed: dict[str, int] = {}
        for p in parts:
            for k, v in p.removed.items():
                removed[k] = removed.get(k, 0) + v
        return cls(np.concatenate([p.query_idx for p in parts]) if parts else np.zeros(0, np.int32),
                   window=sum(p.window for p in parts), removed=removed, **lists)

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
