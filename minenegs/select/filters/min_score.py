"""Score floor (sentence-transformers' ``min_score``): drop a candidate with ``s < t``, too easy to teach much."""

from __future__ import annotations

import numpy as np

from . import Filter


def rule(view, t: float) -> np.ndarray:
    return ~(view.scores < t)


FILTER = Filter("min_score", "--min-score", "Drop s < t.", rule, order=40)
