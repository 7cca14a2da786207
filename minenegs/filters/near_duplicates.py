"""Near-duplicates of a positive, and candidates too close to one: the plainest false negatives.

- ``duplicate_text`` (on unless ``--keep-duplicates``): drop a candidate whose text equals a positive's after
  folding case, accents, punctuation and spacing.
- ``dup_threshold`` ``t``: drop a candidate whose embedding has cosine >= ``t`` with any positive's
  (the embeddings folder's vectors; cosine when they are normalised, the default). Meant for near-copies
  (0.95 by default).
- ``max_positive_similarity`` ``t``: the same rule at a lower threshold, counted on its own: a candidate about
  the same thing as a positive, not a copy of it (``calibrate`` measures what a threshold costs and saves).

Without an embeddings folder (no vectors, no texts) these keep everything.
"""

from __future__ import annotations

import numpy as np


def duplicate_text(q, enabled: float) -> np.ndarray:
    same = q.duplicates_positive_text if enabled else None
    return np.ones(len(q.scores), dtype=bool) if same is None else ~same


def dup_threshold(q, t: float) -> np.ndarray:
    cos = q.positive_cosine
    return np.ones(len(q.scores), dtype=bool) if cos is None else ~(cos >= t)


max_positive_similarity = dup_threshold
