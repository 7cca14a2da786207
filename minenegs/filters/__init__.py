"""False-negative filters. Each looks at candidates (a :class:`View` over many queries at once) and a threshold and
returns which candidates to keep. One module per filter, registered here under the option it answers to.

The positive-aware ones mean what sentence-transformers' ``mine_hard_negatives`` means by them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numpy as np

from . import cross_encoder, near_duplicates, positive_aware
from .corpus import CorpusView


class View(Protocol):
    """Candidates of many queries at once, one entry per candidate (``mine.RowsView``)."""

    scores: np.ndarray
    positive_score: np.ndarray  # the candidate's query's lowest positive score; NaN without positives
    positive_cosine: np.ndarray | None  # largest cosine to one of its query's positives; None without vectors
    duplicates_positive_text: np.ndarray | None  # has a positive's normalised text; None without texts
    ce: np.ndarray | None  # sigmoid of the cross-encoder logit, NaN where not scored; None without a model


Filter = Callable[[View, float], np.ndarray]

FILTERS: dict[str, Filter] = {
    "absolute_margin": positive_aware.absolute_margin,
    "relative_margin": positive_aware.relative_margin,
    "max_score": positive_aware.max_score,
    "min_score": positive_aware.min_score,
    "duplicate_text": near_duplicates.duplicate_text,
    "dup_threshold": near_duplicates.dup_threshold,
    "max_positive_similarity": near_duplicates.max_positive_similarity,
    "ce_max": cross_encoder.ce_max,
    "promote": cross_encoder.ce_max,  # same rule; what it drops is kept as pseudo-positives
}

# Values a threshold may take (anything finite when not listed); MineParams checks them.
THRESHOLD_RANGES: dict[str, tuple[float, float]] = {
    "absolute_margin": (0.0, math.inf),
    "relative_margin": (0.0, 1.0),
    "duplicate_text": (0.0, 1.0),
    "dup_threshold": (-1.0, 1.0),
    "max_positive_similarity": (-1.0, 1.0),
    "ce_max": (0.0, 1.0),
    "promote": (0.0, 1.0),
}
