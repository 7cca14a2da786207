"""``calibrate``: how often a setting hands out relevant documents as negatives, measured on the user's own labels.

For every query with two or more positives, each positive the retriever reached is in turn held out (treated as
unlabelled) and the selection is made as configured; the leak rate is the share of held-out positives handed out
as negatives. Held-out positives of one query are not independent, so the 95 % interval is a Wilson interval on
the effective number of hold-outs (the count divided by the design effect of clustering by query).

Beside each leak rate, what the setting does when mining with every label: the mean original rank of the
negatives (hardness: lower is harder) and the share of queries left short or empty. Every hold-out and every
setting runs through one vectorised selection (:meth:`.engine.Selector.pick`), so a grid over a million-row pool takes
seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AcceptanceError, InputError
from ..settings import setting
from .contamination import Flags
from .engine import RowsView, Selector, Step
from .params import MineParams
from .sweep import grid_settings

Z95 = 1.959964
MAX_HOLDOUTS = 10_000  # a seeded sample beyond this: the interval says what it costs
MIN_QUERIES = 20

@dataclass(frozen=True)
class Calibration:
    """What calibrating is asked for: :func:`minenegs.api.calibrate`'s keyword settings (``mine`` takes the first
    two), as the command line sets them."""

    max_leak: float | None = setting(help="Calibrate (see `calibrate`) and pick the hardest setting whose leak upper "
                                     "bound is at most this share: `mine` mines with it, `calibrate` writes it as a "
                                     "recipe.")
    max_short: float = setting(0.0, "With --max-leak: the largest share of queries a picked setting may leave short.")
    recipe: Path = setting(Path("calibrated.toml"), "Where --max-leak writes the picked setting (TOML, for `run` and "
                           "--config).")
    plot: Path | None = setting(help="Write a PNG of leak rate against hardness.")
    max_holdouts: int = setting(MAX_HOLDOUTS, "Held-out positives to use at most (a seeded sample beyond).", min=1)
    min_queries: int = setting(MIN_QUERIES, "Queries with two or more positives needed for an estimate.", min=1)


# Tried when no axis is given: the strategies, the positive-similarity guard, rank windows and a margin.
DEFAULT_GRID: dict[str, list] = {
    "strategy": ["top", "simans"],
    "max_positive_similarity": [None, 0.5, 0.6, 0.7, 0.8],
    "range_min": [0, 10],
    "relative_margin": [None, 0.05],
}


@dataclass(frozen=True)
class Estimate:
    leaks: int
    holdouts: int  # held-out positives reached within the depth
    queries: int  # queries they come from
    rate: float
    low: float
    high: float


def leak_interval(leaked: np.ndarray, cluster: np.ndarray, z: float = Z95) -> Estimate:
    """Leak rate of 0/1 outcomes grouped in clusters, with a design-effect-adjusted Wilson interval."""
    n = len(leaked)
    if not n:
        raise InputError("no held-out positives to estimate from")
    _, cluster = np.unique(cluster, return_inverse=True)
    k = int(cluster.max()) + 1
    y = np.bincount(cluster, weights=leaked.astype(np.float64), minlength=k)
    m = np.bincount(cluster, minlength=k).astype(np.float64)
    rate = float(y.sum() / n)
    deff = 1.0
    if 0 < rate < 1 and k > 1:
        cluster_var = float(((y - rate * m) ** 2).sum()) / n ** 2  # ratio-estimator (sandwich) variance
        deff = max(1.0, cluster_var / (rate * (1 - rate) / n))
    n_eff = n / deff
    centre = (rate + z * z / (2 * n_eff)) / (1 + z * z / n_eff)
    half = z / (1 + z * z / n_eff) * math.sqrt(rate * (1 - rate) / n_eff + z * z / (4 * n_eff ** 2))
    return Estimate(int(y.sum()), n, k, rate, max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Row:
    """One setting of the grid: what varies, its leak estimate, and what it does with every label."""

    setting: dict[str, Any]
    params: MineParams
    estimate: Estimate
    mean_rank: float  # of the negatives chosen with every label (NaN when none)
    share_short: float
    share_empty: float
    negatives_per_query: float
    judge_calls: int | None = None  # with judging: calls this run made for the setting (held-out instances, mining)
    judge_calls_per_1000: float | None = None  # with judging: calls mining with every label needs with an empty
    # cache (verdicts asked, called for or cached), per 1,000 queries
    flags: dict[str, Any] | None = None  # with judging: the relevant share of mining's negatives, from the flags

    def to_dict(self) -> dict[str, Any]:
        e = self.estimate
        return {**self.setting, "leak_rate": round(e.rate, 4), "leak_low": round(e.low, 4),
                "leak_high": round(e.high, 4), "leaks": e.leaks, "holdouts": e.holdouts,
                "mean_rank": None if math.isnan(self.mean_rank) else round(self.mean_rank, 2),
                "share_short": round(self.share_short, 4), "share_empty": round(self.share_empty, 4),
                "negatives_per_query": round(self.negatives_per_query, 3),
                **({} if self.judge_calls is None else {"judge_calls": self.judge_calls,
                                                        "judge_calls_per_1000_queries": round(self.judge_calls_per_1000, 1)}),
                **({} if self.flags is None else {"flags_estimate": self.flags})}


def calibrate(pool: Selector, base: MineParams, grid: dict[str, list] | None = None, *,
              max_holdouts: int = MAX_HOLDOUTS, min_queries: int = MIN_QUERIES, seed: int = 0,
              judged: Step | None = None) -> list[Row]:
    """The leak estimate, hardness and shortfall of every setting in ``grid`` (``DEFAULT_GRID`` when None).
    ``judged(picked, view, params)`` (judging) changes what each setting picks, held-out instances and all; then
    each row also says how many judge calls the setting made in this run (``judged.calls`` before and after) and
    how many mining with it needs per 1,000 queries, cached or not (``judged.asked``), and the relevant share of
    its mined negatives read from the judges' flags (``judged.contamination``, :mod:`.contamination`)."""
    inst = pool.holdouts(max_holdouts, seed)
    n_queries = len(np.unique(inst.segment))
    if n_queries < max(1, min_queries):
        raise InputError(f"calibrate needs at least {min_queries} queries with two or more positives reached "
                         f"within the depth; this pool has {n_queries}: label a second positive for more queries, "
                         "mine deeper (--depth), or lower --min-queries")
    held = RowsView(pool, inst)
    rows = []
    adjust = (lambda got, view, params: got) if judged is None else judged
    for chosen, params in grid_settings(base, DEFAULT_GRID if grid is None else grid):
        calls = getattr(judged, "calls", 0)
        leaked = handed_out(held, adjust(pool.pick(held, params), held, params))
        before_mining, seen = getattr(judged, "asked", 0), len(getattr(judged, "tally", ()))
        mined = adjust(pool.pick(pool.view, params), pool.view, params)
        mining_calls = getattr(judged, "asked", 0) - before_mining
        read = getattr(judged, "contamination", None)
        flags = None if read is None else read(Flags.merge(judged.tally[seen:]))
        ranks = pool.view.rank[mined.chosen]
        rows.append(Row(chosen, params, leak_interval(leaked, inst.segment),
                        float(ranks.mean()) if len(ranks) else math.nan,
                        float((mined.counts < params.num_negatives).mean()) if len(mined.counts) else 0.0,
                        float((mined.counts == 0).mean()) if len(mined.counts) else 0.0,
                        float(mined.counts.mean()) if len(mined.counts) else 0.0,
                        None if judged is None else getattr(judged, "calls", 0) - calls,
                        None if judged is None else 1000 * mining_calls / max(1, len(mined.counts)), flags))
    return rows


def handed_out(held: RowsView, got: Any) -> np.ndarray:
    """Per held-out instance of ``held``, whether what was picked (``got``) includes its held-out positive."""
    inst = held.inst
    owner = inst.owner[got.chosen]
    hit = held.rows[got.chosen] == inst.held_out[owner]
    return np.bincount(owner[hit], minlength=len(inst.segment)) > 0


def check_bounds(max_leak: float | None, max_short: float) -> None:
    """``--max-leak`` (None: not given) and ``--max-short`` are shares; checked before any work starts."""
    for flag, value in (("--max-leak", max_leak), ("--max-short", max_short)):
        if value is not None and not (math.isfinite(value) and 0 <= value <= 1):
            raise InputError(f"{flag} {value}: give a share in [0, 1]")


def pick(rows: list[Row], max_leak: float, max_short: float = 0.0) -> Row:
    """The hardest setting (lowest mean rank) whose leak upper bound is at most ``max_leak`` and which leaves at
    most ``max_short`` of the queries short."""
    check_bounds(max_leak, max_short)
    fit = [r for r in rows if r.estimate.high <= max_leak and r.share_short <= max_short and not math.isnan(r.mean_rank)]
    if not fit:
        best = min(rows, key=lambda r: r.estimate.high)
        raise AcceptanceError(f"no setting keeps the leak upper bound at or under {max_leak:g} with at most "
                              f"{max_short:g} of queries short (lowest upper bound: {best.estimate.high:.3f}, "
                              f"{_describe(best.setting)}); widen the grid or relax --max-leak / --max-short")
    return min(fit, key=lambda r: (r.mean_rank, r.estimate.high))


def _describe(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k.replace('_', '-')}={'off' if v is None else v}" for k, v in setting.items()) or "base"


def recipe_toml(row: Row, source: str, pool: dict[str, Any] | None = None) -> str:
    """A ``[mine]`` recipe with the chosen setting, for ``minenegs run`` and ``--config``; ``pool`` (the pool's
    manifest) adds the retriever and depth it was calibrated on, since leaks depend on them."""
    p = row.params
    lines = [f"# picked by `minenegs calibrate {source}`: leak {row.estimate.rate:.3f} "
             f"(95 % CI {row.estimate.low:.3f}-{row.estimate.high:.3f}, {row.estimate.holdouts} held-out positives), "
             f"mean negative rank {row.mean_rank:.1f}, {row.share_short:.1%} of queries short",
             "[mine]", *(f"{k} = {v!r}" if isinstance(v, int) else f'{k} = "{v}"'
                         for k, v in (pool or {}).items() if k in ("retriever", "depth")),
             f'strategy = "{p.strategy}"', f"num-negatives = {p.num_negatives}",
             f"range-min = {p.range_min}"]
    if p.range_max is not None:
        lines.append(f"range-max = {p.range_max}")
    if p.strategy != "top" or p.seed:
        lines.append(f"seed = {p.seed}")
    if p.strategy == "simans":
        lines += [f"simans-a = {p.strategy_params.simans_a!r}", f"simans-b = {p.strategy_params.simans_b!r}"]
    thresholds = dict(p.thresholds)
    if not thresholds.get("duplicate_text"):
        lines.append("keep-duplicates = true")
    else:
        lines.append(f"dup-threshold = {thresholds.get('dup_threshold')!r}")
    for name, value in thresholds.items():
        if value is not None and name not in ("duplicate_text", "dup_threshold"):
            lines.append(f"{name.replace('_', '-')} = {float(value)!r}")
    if thresholds.get("max_positive_similarity") is None and thresholds.get("duplicate_text"):
        lines.append("max-positive-similarity = 1.0  # the guard off (on by default)")
    if any(thresholds.get(n) is not None for n in ("ce_max", "promote")):
        lines.append(f"ce-depth = {p.ce_depth}")
    return "\n".join(lines) + "\n"


def summary(rows: list[Row]) -> dict[str, Any]:
    e = rows[0].estimate if rows else None
    return {"holdouts": e.holdouts if e else 0, "queries": e.queries if e else 0, "settings": [r.to_dict() for r in rows]}

