"""Is relevance dense? Measured on the pool before anything is written, so ``mine`` can choose its recipe and warn.

On data where each query has one or two relevant documents (SciFact), the top-ranked candidates are mostly true
negatives and train a better retriever than in-batch negatives alone. Where a query has dozens of relevant
documents but the user labelled one (nfcorpus, DBpedia, TREC DL), the top ranks are full of unlabelled relevant
documents, and every top-k recipe trains a worse retriever than in-batch negatives alone (``benchmarks/RESULTS.md``).
Two measurements are taken, from the pool alone:

- ``above_positive``: the share of the negatives a setting picks that score at or above their query's lowest
  labelled positive. A relevant document the model ranks above the user's own positive looks, to the model,
  like a positive; where a query has many relevant documents most of its top candidates do. This one decides:
  the data is taken as dense at :data:`ABOVE_POSITIVE` or more.
- ``leak``: :mod:`.calibrate`'s hold-out estimate (a labelled positive held out, how often it is handed out),
  where enough queries have two or more positives. Reported, not used to decide: it comes from the queries with
  two or more positives only, which on sparse data are the unusual ones (SciFact's 85 such queries leak 33 %,
  more than DBpedia's 24 %, though hard negatives help on SciFact and hurt on DBpedia-like data).

The threshold lies between the figures of the four benchmark sets (``benchmarks/density.py``, the default recipe's
top 5): SciFact 0.34 (sparse); the DL19 subset 0.60, nfcorpus 0.85, DBpedia 0.97 (dense).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .. import recipe
from .calibrate import MIN_QUERIES, Estimate, handed_out, leak_interval
from .engine import RowsView, Selector
from .params import MineParams

ABOVE_POSITIVE = 0.45  # share of picked negatives at or above their query's lowest positive


@dataclass(frozen=True)
class Density:
    queries: int
    positives_per_query: float
    above_positive: float
    leak: Estimate | None  # None: fewer than MIN_QUERIES queries with two or more positives reached

    @property
    def dense(self) -> bool:
        return self.above_positive >= ABOVE_POSITIVE

    def describe(self) -> str:
        leak = "" if self.leak is None else (f", hold-out leak {self.leak.rate:.0%} "
                                             f"[{self.leak.low:.0%}, {self.leak.high:.0%}]")
        return (f"{self.above_positive:.0%} of the top negatives outrank their query's own positive{leak}, "
                f"{self.positives_per_query:.1f} labelled positives per query")

    def to_dict(self) -> dict[str, Any]:
        leak = None if self.leak is None else {"rate": round(self.leak.rate, 4), "low": round(self.leak.low, 4),
                                               "high": round(self.leak.high, 4), "holdouts": self.leak.holdouts}
        return {"dense": self.dense, "above_positive": round(self.above_positive, 4), "leak": leak,
                "positives_per_query": round(self.positives_per_query, 3), "queries": self.queries,
                "threshold": ABOVE_POSITIVE}


def measure(pool: Selector, params: MineParams) -> Density:
    """How dense the pool's relevance looks to the negatives ``params`` picks (judges aside), with calibrate's
    leak estimate where it can be had."""
    params = _no_judges(params)
    return Density(len(pool.starts), float(pool.positive_counts.mean()) if len(pool.starts) else 0.0,
                   _picked(pool, params)[0], _leak(pool, params))


def _no_judges(params: MineParams) -> MineParams:
    from .filters import needs_judge

    return replace(params, thresholds={k: v for k, v in params.thresholds.items() if not needs_judge({k: v})})


def _picked(pool: Selector, params: MineParams) -> tuple[float, float]:
    """Of the negatives ``params`` picks over the pool: the share that score at or above their query's lowest
    positive, and the share of queries given at least one."""
    view = pool.view
    got = pool.pick(view, params)
    above = view.scores[got.chosen] >= view.positive_score[got.chosen]
    return (float(above.mean()) if len(above) else 0.0,
            float((got.counts > 0).mean()) if len(got.counts) else 0.0)


def _leak(pool: Selector, params: MineParams) -> Estimate | None:
    inst = pool.holdouts()
    if len(np.unique(inst.segment)) < MIN_QUERIES:
        return None
    held = RowsView(pool, inst)
    return leak_interval(handed_out(held, pool.pick(held, params)), inst.segment)


RECIPES = ("adaptive", "fixed")


def dense_params(params: MineParams, depth: int) -> MineParams:
    """The dense recipe (:data:`minenegs.recipe.DENSE`) for a pool ``depth`` ranks deep, on ``params``' seed and
    duplicate filters."""
    thresholds = {**params.thresholds, "max_positive_similarity": recipe.DENSE_MAX_POSITIVE_SIMILARITY}
    return replace(params, **recipe.DENSE, range_min=int(round(recipe.DENSE_SKIP * depth)), thresholds=thresholds)


@dataclass(frozen=True)
class Choice:
    """What ``mine`` measured and what it mines. ``density`` is the data's, measured on the default recipe's
    negatives; ``params`` the user's, or the dense recipe's where the adaptive default switched. On dense data
    with other negatives than the dense recipe's, ``asked`` and ``safe`` are the share of the negatives asked for
    and of the dense recipe's that outrank their query's positive: asked above safe is a risk (``risky``)."""

    adapt: str
    density: Density
    params: MineParams
    switched: bool
    model: str | None = None  # the encoder: the guide of the loss the dense recipe's rows train best with
    asked: float | None = None
    safe: float | None = None

    @property
    def risky(self) -> bool:
        return self.asked is not None and self.asked > self.safe

    def line(self) -> str:
        """The one line ``mine`` prints about it."""
        measured = self.density.describe()
        if self.switched:
            p = self.params
            return (f"dense relevance likely ({measured}): {p.num_negatives} negative a query drawn from ranks "
                    f"{p.range_min + 1}+ at cosine < {p.thresholds['max_positive_similarity']:g} to every positive, "
                    f"not the top {recipe.NUM_NEGATIVES}; {recipe.GUIDED_LOSS} with the mining model as guide "
                    "trains better still (README: dense relevance); --recipe fixed keeps the top-ranked negatives")
        if self.adapt == "adaptive" and not self.density.dense:
            return f"relevance looks sparse ({measured}): mining the top-ranked negatives"
        return f"density: {measured}"

    def warning(self) -> str:
        return (f"these negatives will likely hurt training: dense relevance ({self.density.describe()}), and "
                f"{self.asked:.0%} of the negatives asked for outrank their query's positive (the dense recipe's: "
                f"{self.safe:.0%}); on such data every top-ranked recipe benchmarked trained a worse retriever than "
                "in-batch negatives alone")

    def to_dict(self) -> dict[str, Any]:
        out = {"recipe": self.adapt, "chose": "dense" if self.switched else "as given", **self.density.to_dict()}
        if self.asked is not None:
            out["asked_above_positive"], out["dense_recipe_above_positive"] = round(self.asked, 4), round(self.safe, 4)
        if self.switched:
            out["loss"] = {"name": recipe.GUIDED_LOSS, "guide": self.model}
        return out


def choose(pool: Selector, params: MineParams, adapt: str = "adaptive", model: str | None = None) -> Choice:
    """The data's density (measured on the default recipe's negatives) and what to mine: under the adaptive
    recipe with ``params`` the default recipe's, the dense recipe where the data is dense; else ``params``, with
    how risky its negatives look beside the dense recipe's where the data is dense."""
    default = MineParams.default(seed=params.seed)
    density = measure(pool, default)
    if not density.dense:
        return Choice(adapt, density, params, False, model)
    retrieved = pool.arrays["rank"][pool.arrays["retrieved"]]
    dense = dense_params(default, int(retrieved.max()) if len(retrieved) else 0)
    safe, coverage = _picked(pool, dense)
    if adapt == "adaptive" and params == default and coverage >= recipe.DENSE_MIN_COVERAGE:
        return Choice(adapt, density, dense, True, model)
    asked = density.above_positive if params == default else _picked(pool, _no_judges(params))[0]
    return Choice(adapt, density, params, False, model, asked, safe)
