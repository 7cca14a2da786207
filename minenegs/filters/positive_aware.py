"""Positive-aware thresholds (NV-Retriever's TopK-MarginPos / TopK-PercPos, TopK-Abs).

``p`` is the lowest score among the query's positives. A candidate with score ``s`` is dropped when:

- absolute margin ``m``: ``s + m > p``
- relative margin ``m``: ``s > p - |p| * m`` (0.05 is TopK-PercPos 95 %; ``|p|`` keeps it right for ``p < 0``)
- max score ``t``: ``s > t``; min score ``t``: ``s < t``

A query without a positive score (``p`` is NaN) keeps everything under the margin filters.
"""

from __future__ import annotations

import numpy as np


# ``p`` is one value per candidate (its query's); a NaN ``p`` makes every comparison false, so the candidate stays.
def absolute_margin(q, m: float) -> np.ndarray:
    return ~(q.scores + m > q.positive_score)


def relative_margin(q, m: float) -> np.ndarray:
    p = q.positive_score
    return ~(q.scores > p - np.abs(p) * m)


def max_score(q, t: float) -> np.ndarray:
    return ~(q.scores > t)


def min_score(q, t: float) -> np.ndarray:
    return ~(q.scores < t)
