"""False-negative filters. Each looks at one query's candidates (:class:`QueryView`) and a threshold and
returns which candidates to keep. One module per filter, registered here under the option it answers to.

The positive-aware ones mean what sentence-transformers' ``mine_hard_negatives`` means by them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import cross_encoder, near_duplicates, positive_aware
from .corpus import CorpusView


@dataclass(frozen=True)
class QueryView:
    """One query's candidates (``scores``, ``doc_idx``) and its positives."""

    scores: np.ndarray
    doc_idx: np.ndarray
    positive_score: float  # the lowest positive score; NaN without positives
    positive_idx: np.ndarray
    corpus: CorpusView | None = None
    ce: np.ndarray | None = None  # sigmoid of the cross-encoder logit per candidate, NaN where not scored


Filter = Callable[[QueryView, float], np.ndarray]

FILTERS: dict[str, Filter] = {
    "absolute_margin": positive_aware.absolute_margin,
    "relative_margin": positive_aware.relative_margin,
    "max_score": positive_aware.max_score,
    "min_score": positive_aware.min_score,
    "duplicate_text": near_duplicates.duplicate_text,
    "dup_threshold": near_duplicates.dup_threshold,
    "ce_max": cross_encoder.ce_max,
    "promote": cross_encoder.ce_max,  # same rule; what it drops is kept as pseudo-positives
}
