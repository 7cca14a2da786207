"""Strategies: each orders a query's candidate negatives by preference; the first ``--num-negatives``
that pass the filters become the negatives. One module per strategy, registered here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import random as _random
from . import simans, top


@dataclass(frozen=True)
class Candidates:
    """One query's candidates inside the rank window, positives removed, in rank order."""

    doc_idx: np.ndarray
    rank: np.ndarray
    score: np.ndarray
    positive_score: float  # the lowest positive score (NaN when the query has none)


@dataclass(frozen=True)
class StrategyParams:
    simans_a: float = simans.DEFAULT_A
    simans_b: float = simans.DEFAULT_B


Order = Callable[[Candidates, "np.random.Generator | None", StrategyParams], np.ndarray]


@dataclass(frozen=True)
class Strategy:
    order: Order
    seeded: bool  # draws at random: gets a per-query generator (``top`` gets None)


STRATEGIES: dict[str, Strategy] = {
    "top": Strategy(top.order, seeded=False),
    "random": Strategy(_random.order, seeded=True),
    "simans": Strategy(simans.order, seeded=True),
}
