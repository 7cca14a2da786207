"""``top``: the best-ranked candidates first."""

from __future__ import annotations


def key(rank, score, p, u, params) -> None:
    return None  # rank order
