"""Score ceiling (NV-Retriever's TopK-Abs, sentence-transformers' ``max_score``): drop a candidate with ``s > t``."""

from __future__ import annotations

import numpy as np

from . import Filter


def rule(view, t: float) -> np.ndarray:
    return ~(view.scores > t)


FILTER = Filter("max_score", "--max-score", "Drop s > t.", rule, order=30)
