"""Strategies: each orders a query's candidate negatives by preference; the first ``--num-negatives``
that pass the filters become the negatives. One module per strategy, registered here.

A strategy is a sort key computed for many queries' candidates at once: ``key(rank, score, p, u, params)``
gets each candidate's original rank and score, its query's lowest positive score ``p`` (NaN without one) and,
for a seeded strategy, a uniform draw ``u`` in (0, 1) per candidate; it returns one key per candidate (lower
comes first, ties go to the better rank) or None for plain rank order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...settings import setting
from . import random as _random
from . import simans, top


@dataclass(frozen=True)
class StrategyParams:
    simans_a: float = setting(simans.DEFAULT_A, "SimANS sharpness a.", panel="Strategy")
    simans_b: float = setting(simans.DEFAULT_B, "SimANS offset b (negative: below the positive).", panel="Strategy")


Key = Callable[[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None", StrategyParams], "np.ndarray | None"]


@dataclass(frozen=True)
class Strategy:
    key: Key
    seeded: bool  # draws at random: gets ``u`` (``top`` gets None)


STRATEGIES: dict[str, Strategy] = {
    "top": Strategy(top.key, seeded=False),
    "random": Strategy(_random.key, seeded=True),
    "simans": Strategy(simans.key, seeded=True),
}
