"""``top``: the best-ranked candidates first."""

from __future__ import annotations

import numpy as np


def order(cands, rng: np.random.Generator, params) -> np.ndarray:
    return np.argsort(cands.rank, kind="stable")
