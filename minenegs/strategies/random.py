"""``random``: a uniform, seeded permutation of the rank window."""

from __future__ import annotations

import numpy as np


def order(cands, rng: np.random.Generator, params) -> np.ndarray:
    return rng.permutation(len(cands.rank))
