"""Relative margin (NV-Retriever's TopK-PercPos, sentence-transformers' ``relative_margin``): drop a candidate
with ``s > p - |p| * m``, ``p`` the query's lowest positive score (0.05 is TopK-PercPos 95 %; ``|p|`` keeps it
right for ``p < 0``). A query without a positive score keeps everything."""

from __future__ import annotations

import numpy as np

from . import Filter


def rule(view, m: float) -> np.ndarray:
    p = view.positive_score
    return ~(view.scores > p - np.abs(p) * m)


FILTER = Filter("relative_margin", "--relative-margin", "Drop s > p - |p|*m (0.05 = TopK-PercPos 95%).", rule,
                order=20, low=0.0, high=1.0)
