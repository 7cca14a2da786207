"""Cross-encoder denoising (RocketQA): drop a candidate whose cross-encoder probability (sigmoid of the logit)
is above ``t``: a likely unlabelled positive. Candidates deeper than the judge's depth are not scored and pass."""

from __future__ import annotations

import numpy as np

from . import Filter


def rule(view, t: float) -> np.ndarray:
    ce = view.ce
    return np.ones(len(view.scores), dtype=bool) if ce is None else ~(ce > t)


FILTER = Filter("ce_max", "--ce-max", "Drop candidates whose cross-encoder sigmoid score is above t.", rule,
                order=80, low=0.0, high=1.0, reads="judge")
