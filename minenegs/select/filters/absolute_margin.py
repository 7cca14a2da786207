"""Absolute margin (NV-Retriever's TopK-MarginPos): drop a candidate scoring within ``m`` of the query's lowest
positive score ``p``, i.e. ``s + m > p``. A query without a positive score (``p`` NaN) keeps everything."""

from __future__ import annotations

import math

import numpy as np

from . import Filter


def rule(view, m: float) -> np.ndarray:
    return ~(view.scores + m > view.positive_score)  # a NaN p makes the comparison false: the candidate stays


FILTER = Filter("absolute_margin", "--absolute-margin", "Drop s + m > p.", rule, order=10, low=0.0, high=math.inf)
