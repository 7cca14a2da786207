"""Exact duplicates of a positive: drop a candidate whose text equals a positive's after folding case, accents,
punctuation and spacing (:func:`.corpus.normalise`). On (1) unless ``--keep-duplicates``; no option of its own.
Without the corpus's texts it keeps everything."""

from __future__ import annotations

import numpy as np

from . import Filter


def rule(view, enabled: float) -> np.ndarray:
    same = view.duplicates_positive_text if enabled else None
    return np.ones(len(view.scores), dtype=bool) if same is None else ~same


FILTER = Filter("duplicate_text", "", "Drop candidates whose normalised text is a positive's (1: on).", rule,
                order=50, low=0.0, high=1.0, reads="texts")
