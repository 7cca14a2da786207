"""Near-copies of a positive: drop a candidate whose embedding has cosine >= ``t`` with any positive's (the
embeddings folder's vectors; cosine when they are normalised, the default). Meant for near-copies (0.95 in the
default recipe). Without the corpus's vectors it keeps everything."""

from __future__ import annotations

import numpy as np

from . import Filter


def rule(view, t: float) -> np.ndarray:
    cos = view.positive_cosine
    return np.ones(len(view.scores), dtype=bool) if cos is None else ~(cos >= t)


FILTER = Filter("dup_threshold", "--dup-threshold", "Drop candidates with cosine >= t to a positive.", rule,
                order=60, low=-1.0, high=1.0, reads="vectors")
