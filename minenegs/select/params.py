"""What to select: the strategy, how many negatives, the rank window, the seed and the filters in use
(:class:`MineParams`); ``MineParams.default()`` is the default recipe (:mod:`minenegs.recipe`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import recipe
from ..errors import InputError
from ..settings import setting
from .filters import REGISTRY
from .strategies import STRATEGIES, StrategyParams


@dataclass(frozen=True)
class MineParams:
    strategy: str = setting(recipe.STRATEGY, "top, random or simans.", grid=True, choices=tuple(STRATEGIES), panel="Strategy")
    num_negatives: int = setting(recipe.NUM_NEGATIVES, "Negatives per query (0: no hard negatives, (anchor, positive) rows for in-batch negatives).", min=0, panel="Strategy")
    range_min: int = setting(0, "Skip this many top original ranks.", min=0, grid=True, panel="Strategy")
    range_max: int | None = setting(help="Consider ranks up to this one [default: all].", min=1, panel="Strategy")
    seed: int = setting(0, "Seed for random and simans.", panel="Strategy")
    strategy_params: StrategyParams = field(default_factory=StrategyParams)
    thresholds: dict[str, float] = field(default_factory=dict)  # filter name -> value (None: off)
    ce_depth: int = setting(30, "Judge at most this many candidates per query: with --judge, the first ones the "
                            "strategy would hand out; for --ce-max and --promote, the top ones by rank (scored before "
                            "the strategy).", flag="--judge-depth", aliases=("--ce-depth",), min=1, panel="Judges")

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InputError(f"--strategy {self.strategy}: choose one of {', '.join(STRATEGIES)}")
        if self.num_negatives < 0:
            raise InputError("--num-negatives must be at least 0")
        if self.range_min < 0 or (self.range_max is not None and self.range_max <= self.range_min):
            raise InputError("--range-max must be more than --range-min, and --range-min at least 0")
        unknown = set(self.thresholds) - set(REGISTRY)
        if unknown:
            raise InputError(f"unknown filter {sorted(unknown)[0]}")
        # only the filters in use are held (and recorded in outputs); None means off
        object.__setattr__(self, "thresholds", {k: v for k, v in self.thresholds.items() if v is not None})
        for name, value in self.thresholds.items():
            REGISTRY[name].check(value)
        a, b = self.strategy_params.simans_a, self.strategy_params.simans_b
        if not (math.isfinite(a) and a > 0 and math.isfinite(b)):
            raise InputError(f"--simans-a {a} / --simans-b {b}: a must be a finite number above 0, b finite")

    @classmethod
    def default(cls, *, keep_duplicates: bool = False, thresholds: dict[str, float | None] | None = None,
                **fields) -> "MineParams":
        """The default recipe, with ``fields`` (strategy, num_negatives, ...) and ``thresholds`` (filter name ->
        value, None: not given) on top; ``keep_duplicates`` turns its duplicate filters off."""
        return cls(**fields, thresholds=recipe.thresholds(thresholds, keep_duplicates))

    @classmethod
    def of(cls, keep_duplicates: bool = False, **values) -> "MineParams":
        """The default recipe under the options given by name (as the command line and TOML recipes give them):
        this record's fields, :class:`StrategyParams`' and the filters' thresholds (None: not given)."""
        thresholds = {k: values.pop(k) for k in list(values) if k in REGISTRY}
        strategy = StrategyParams(**{k: values.pop(k) for k in ("simans_a", "simans_b") if k in values})
        return cls.default(keep_duplicates=keep_duplicates, thresholds=thresholds, strategy_params=strategy, **values)

