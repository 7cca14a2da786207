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

from dataclasses import dataclass
from typing import Any

import numpy as np

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
    """How dense the pool's relevance looks to the negatives ``params`` picks."""
    view = pool.view
    got = pool.pick(view, params)
    above = view.scores[got.chosen] >= view.positive_score[got.chosen]
    return Density(len(pool.starts), float(pool.positive_counts.mean()) if len(pool.starts) else 0.0,
                   float(above.mean()) if len(above) else 0.0, _leak(pool, params))


def _leak(pool: Selector, params: MineParams) -> Estimate | None:
    inst = pool.holdouts()
    if len(np.unique(inst.segment)) < MIN_QUERIES:
        return None
    held = RowsView(pool, inst)
    return leak_interval(handed_out(held, pool.pick(held, params)), inst.segment)


RECIPES = ("adaptive", "fixed")
# What the adaptive default mines on dense data, chosen by the dense fine-tuning benchmark: no hard negatives,
# (anchor, positive) rows for in-batch negatives, trained with a guided in-batch loss whose guide is the model
# that mined (sentence-transformers' GISTEmbedLoss masks in-batch candidates the guide scores above the positive).
DENSE = {"num_negatives": 0}
GUIDED_LOSS = "GISTEmbedLoss"


@dataclass(frozen=True)
class Choice:
    """What ``mine`` measured and what it mines: ``params`` (the user's, or the dense recipe's when the adaptive
    default switched)."""

    recipe: str
    density: Density
    params: MineParams
    switched: bool
    model: str | None = None  # the encoder: the guide the dense recipe's loss should use

    def line(self) -> str:
        """The one line ``mine`` prints about it."""
        measured = self.density.describe()
        if self.switched:
            return (f"dense relevance likely ({measured}): writing (anchor, positive) rows without hard negatives; "
                    f"train with {GUIDED_LOSS}, guide = {self.model or 'the mining model'} (README: dense data); "
                    "--recipe fixed keeps the top-ranked negatives")
        if self.recipe == "adaptive" and not self.density.dense:
            return f"relevance looks sparse ({measured}): mining the top-ranked negatives"
        return f"density: {measured}"

    def to_dict(self) -> dict[str, Any]:
        out = {"recipe": self.recipe, "chose": "dense" if self.switched else "as given", **self.density.to_dict()}
        if self.switched:
            out["loss"] = {"name": GUIDED_LOSS, "guide": self.model}
        return out


def choose(pool: Selector, params: MineParams, recipe: str = "adaptive", model: str | None = None,
           can_switch: bool = True) -> Choice:
    """Measure the pool's density for ``params`` and, under the adaptive recipe with ``params`` the default
    recipe's (and ``can_switch``: the output format can hold rows without negatives), choose the dense recipe
    where the data is dense."""
    from dataclasses import replace

    from .filters import needs_judge

    probe = replace(params, thresholds={k: v for k, v in params.thresholds.items() if not needs_judge({k: v})})
    density = measure(pool, probe)
    switch = (recipe == "adaptive" and can_switch and density.dense and params == MineParams.default())
    return Choice(recipe, density, replace(params, **DENSE) if switch else params, switch, model)
