"""``sweep``: how many negatives each threshold setting keeps, from the pool alone (no re-mining).

A grid maps a setting name to the values to try: a filter name (None: filter off), or one of ``FIELDS``
(``strategy``, ``range_min``, ...). Every combination is one setting; what the grid leaves out comes from the
base parameters. ``calibrate`` walks the same grids.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from ..errors import InputError
from .engine import Selector, Step
from .params import MineParams

FIELDS = ("strategy", "num_negatives", "range_min", "range_max")


def grid_from_text(texts: dict[str, str | None]) -> dict[str, list]:
    """A grid from comma-separated values per setting ("off": the filter off; None: not on the grid), e.g.
    ``{"strategy": "top,simans", "relative_margin": "off,0.05"}``."""
    from .filters import REGISTRY

    grid = {}
    for name, text in texts.items():
        if text is None:
            continue
        flag = REGISTRY[name].flag if name in REGISTRY else f"--{name.replace('_', '-')}"
        parse = float if name in REGISTRY else str if name == "strategy" else int
        try:
            grid[name] = [None if x.strip().lower() == "off" else parse(x.strip()) for x in text.split(",") if x.strip()]
        except ValueError:
            raise InputError(f"{flag} {text}: give comma-separated values, e.g. 0,0.02,0.05") from None
        if not grid[name]:
            raise InputError(f"{flag} {text!r}: the grid is empty; give values to try")
    return grid


def grid_of(**texts: Any) -> tuple[MineParams, dict[str, list]]:
    """The base setting and the lists to try, from options by name as :meth:`MineParams.of` takes them, where the
    strategy, ``range_min`` and the filters' thresholds are comma-separated text (:func:`grid_from_text`); the
    base keeps the first value of the duplicate and positive-similarity guards' lists."""
    from .filters import REGISTRY

    lists = grid_from_text({k: texts.pop(k) for k in list(texts) if k in REGISTRY or k in ("strategy", "range_min")})
    guards = {k: (lists.get(k) or [None])[0] for k in ("dup_threshold", "max_positive_similarity")}
    return MineParams.of(**texts, **guards), lists


def grid_settings(base: MineParams, grid: dict[str, list]) -> Iterator[tuple[dict[str, Any], MineParams]]:
    """Each combination of the grid's values, as (what varies, the parameters it makes)."""
    empty = [name for name, values in grid.items() if not values]
    if empty or not grid:
        raise InputError(f"the grid is empty{f' for {empty[0]}' if empty else ''}: give values to try, "
                         "e.g. --relative-margin 0,0.05")
    names = list(grid)
    for values in itertools.product(*(grid[n] for n in names)):
        setting = dict(zip(names, values))
        fields = {k: v for k, v in setting.items() if k in FIELDS}
        thresholds = {**base.thresholds, **{k: v for k, v in setting.items() if k not in FIELDS}}
        yield setting, replace(base, **fields, thresholds=thresholds)


def sweep(pool: Selector, base: MineParams, grid: dict[str, list], judged: Step | None = None) -> list[dict[str, Any]]:
    """One row per combination of the ``grid`` values, other settings from ``base``; ``judged(picked, view,
    params)`` (judging) changes what each setting picks."""
    rows = []
    for setting, params in grid_settings(base, grid):
        got = pool.pick(pool.view, params)
        if judged is not None:
            got = judged(got, pool.view, params)
        short = int((got.counts < params.num_negatives).sum())
        rows.append({**setting,
                     "negatives_per_query": round(float(got.counts.mean()), 3) if len(got.counts) else 0.0,
                     "queries_short": short,
                     "share_short": round(short / max(1, len(got.counts)), 4),
                     "removed": int(sum(got.removed.values()))})
    return rows
