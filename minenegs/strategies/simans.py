"""``simans``: ambiguous negatives (SimANS), sampled without replacement in proportion to
``w = exp(-a * (s - p - b)^2)``, where ``s`` is the candidate's score and ``p`` the lowest positive score.

Sign of ``b``: as written in the paper's formula above, so ``b < 0`` centres the sampling *below* the
positive's score (the public code writes ``+ b`` and so flips it). Defaults are set for cosine scores,
where the published ``a = 0.5`` (meant for unnormalised dot products) would make every weight about 1.
When the query has no positive score, the lowest-ranked candidates come first (the reference fallback).

Sampling without replacement uses Efraimidis-Spirakis keys ``log(u) / w``: sorting them gives the order in
which weighted draws without replacement would pick the candidates, so filters can skip and keep drawing.
"""

from __future__ import annotations

import numpy as np

DEFAULT_A = 100.0
DEFAULT_B = -0.05


def weights(scores: np.ndarray, positive_score: float, a: float, b: float) -> np.ndarray:
    return np.exp(-a * (scores.astype(np.float64) - positive_score - b) ** 2)


def order(cands, rng: np.random.Generator, params) -> np.ndarray:
    n = len(cands.rank)
    if not np.isfinite(cands.positive_score):
        return np.argsort(-cands.rank, kind="stable")
    w = weights(cands.score, cands.positive_score, params.simans_a, params.simans_b)
    u = rng.random(n)
    with np.errstate(divide="ignore"):
        keys = np.where(w > 0, np.log(u) / np.maximum(w, 1e-300), -np.inf)
    return np.lexsort((cands.rank, -keys))
