"""Cross-encoder denoising (RocketQA): a candidate the cross-encoder finds relevant is a likely unlabelled positive.

``ce_max`` ``t``: drop a candidate whose cross-encoder probability (sigmoid of the logit) is above ``t``.
``promote`` ``t``: the same rule, but what it removes is written as a pseudo-positive instead of thrown away.
Candidates deeper than ``--ce-depth`` are not scored and pass.
"""

from __future__ import annotations

import numpy as np


def ce_max(q, t: float) -> np.ndarray:
    ce = q.ce
    return np.ones(len(q.scores), dtype=bool) if ce is None else ~(ce > t)
