"""A floor on similarity to the positives: drop a candidate whose embedding cosine to every positive of its query
is below ``t``: a document about something else, retrieved on a word or two, that teaches the model little and
may be noise (a counterpart to :mod:`.max_positive_similarity`, which drops those too close). Without the
corpus's vectors, or for a query without positives, it keeps everything."""

from __future__ import annotations

import numpy as np

from . import Filter


def rule(view, t: float) -> np.ndarray:
    cos = view.positive_cosine
    return np.ones(len(view.scores), dtype=bool) if cos is None else ~(cos < t)  # NaN (no positive): kept


FILTER = Filter("min_positive_similarity", "--min-positive-similarity",
                "Drop candidates whose cosine to every positive is below t (off-topic).", rule, order=75,
                low=-1.0, high=1.0, reads="vectors")
