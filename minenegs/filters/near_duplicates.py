"""Near-duplicates of a positive: the plainest false negatives.

- ``duplicate_text`` (on unless ``--keep-duplicates``): drop a candidate whose text equals a positive's after
  folding case, accents, punctuation and spacing.
- ``dup_threshold`` ``t``: drop a candidate whose embedding has cosine >= ``t`` with any positive's
  (the embeddings folder's vectors; cosine when they are normalised, the default).
"""

from __future__ import annotations

import numpy as np


def duplicate_text(q, enabled: float) -> np.ndarray:
    if not enabled or q.corpus is None or not len(q.positive_idx):
        return np.ones(len(q.doc_idx), dtype=bool)
    cands, positives = q.corpus.text_keys(q.doc_idx), q.corpus.text_keys(q.positive_idx)
    return ~(cands[:, None] == positives[None, :]).any(axis=1)  # positives are few: cheaper than np.isin


def dup_threshold(q, t: float) -> np.ndarray:
    if q.corpus is None or not len(q.positive_idx) or not len(q.doc_idx):
        return np.ones(len(q.doc_idx), dtype=bool)
    vectors = q.corpus.vectors
    cands = np.asarray(vectors[np.asarray(q.doc_idx)], dtype=np.float32)
    pos = np.asarray(vectors[np.asarray(q.positive_idx)], dtype=np.float32)
    return (cands @ pos.T).max(axis=1) < t
