"""``simans``: ambiguous negatives (SimANS), sampled without replacement in proportion to
``w = exp(-a * (s - p - b)^2)``, where ``s`` is the candidate's score and ``p`` the lowest positive score.

Sign of ``b``: as written in the paper's formula above, so ``b < 0`` centres the sampling *below* the
positive's score (the public code writes ``+ b`` and so flips it). Defaults are set for cosine scores,
where the published ``a = 0.5`` (meant for unnormalised dot products) would make every weight about 1.
When the query has no positive score, the lowest-ranked candidates come first (the reference fallback).

Defaults ``a = 100``, ``b = -0.05`` (``benchmarks/simans_params.py``): on SciFact train, ``s - p`` over the top-100
candidates of all-MiniLM-L6-v2 has std 0.152 (median -0.188), so ``a = 0.5`` leaves 99 of 100 candidates
effectively equal (uniform sampling), while ``a = 100`` (Gaussian width ``1/sqrt(2a)`` = 0.07) concentrates the
draw on about 40. On the DL19 subset with one visible positive, ``b = -0.05`` drew fewer hidden positives than
``b = 0`` (86.1 % vs 88.4 %, mean rank 38 vs 33; random: 58.1 %, rank 52).

Sampling without replacement uses Efraimidis-Spirakis keys ``-log(u) / w`` (an exponential draw of rate ``w``):
sorting them ascending gives the order in
which weighted draws without replacement would pick the candidates, so filters can skip and keep drawing.
"""

from __future__ import annotations

import numpy as np

DEFAULT_A = 100.0
DEFAULT_B = -0.05


def weights(scores: np.ndarray, positive_score, a: float, b: float) -> np.ndarray:
    return np.exp(-a * (scores.astype(np.float64) - positive_score - b) ** 2)


def key(rank: np.ndarray, score: np.ndarray, p: np.ndarray, u: np.ndarray, params) -> np.ndarray:
    w = weights(score, p, params.simans_a, params.simans_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        drawn = np.where(w > 0, -np.log(u) / np.maximum(w, 1e-300), np.inf)
    return np.where(np.isnan(p), -rank.astype(np.float64), drawn)
