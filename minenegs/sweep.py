"""``sweep``: how many negatives each threshold setting keeps, from the pool alone (no re-mining)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .mine import MineParams, read_pool_arrays, select


def sweep(pool: Path | str, base: MineParams, grid: dict[str, list[float]], corpus=None) -> list[dict[str, Any]]:
    """One row per combination of the ``grid`` values (filter name -> values), other settings from ``base``."""
    pool = Path(pool)
    arrays = read_pool_arrays(pool)
    names = list(grid)
    rows = []
    for values in itertools.product(*(grid[n] for n in names)):
        params = replace(base, thresholds={**base.thresholds, **dict(zip(names, values))})
        sel = select(pool, params, corpus, arrays=arrays)
        kept = np.array([len(n) for n in sel.negatives])
        rows.append({**dict(zip(names, values)),
                     "negatives_per_query": round(float(kept.mean()), 3) if len(kept) else 0.0,
                     "queries_short": len(sel.short),
                     "share_short": round(len(sel.short) / max(1, len(sel.query_ids)), 4),
                     "removed": int(sum(sel.removed.values()))})
    return rows
