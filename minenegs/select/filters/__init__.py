"""False-negative filters: one module per filter, each exporting one :class:`Filter` record as ``FILTER``.

A filter looks at candidates (a :class:`View` over many queries at once) and a threshold and returns which
candidates to keep. Everything else is derived from the records found here: the engine's filter order, the
range checks of :class:`~minenegs.select.engine.MineParams`, the command-line options and their ``sweep`` /
``calibrate`` grid axes, and the drop-in's keywords. Adding a filter is adding its module (and its test).

The positive-aware ones mean what sentence-transformers' ``mine_hard_negatives`` means by them.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .corpus import CorpusView

READS = ("scores", "vectors", "texts", "judge")


class View(Protocol):
    """Candidates of many queries at once, one entry per candidate (``engine.RowsView``)."""

    scores: np.ndarray
    positive_score: np.ndarray  # the candidate's query's lowest positive score; NaN without positives
    positive_cosine: np.ndarray | None  # largest cosine to one of its query's positives; None without vectors
    duplicates_positive_text: np.ndarray | None  # has a positive's normalised text; None without texts
    ce: np.ndarray | None  # sigmoid of the judge's logit, NaN where not scored; None without a judge


@dataclass(frozen=True)
class Filter:
    """One filter: its setting's ``name`` (the key in ``MineParams.thresholds``, in TOML recipes and the drop-in's
    keyword), its command-line ``flag`` ("" when it has none of its own) and ``help``, the values it takes
    (``low``..``high``), what it ``reads`` (one of ``READS``: ``judge`` needs a judge to have scored the pairs),
    its ``rule`` (view, threshold) -> keep mask, and its ``order`` among the filters (what each removes is
    counted in that order). With ``promotes``, what it removes becomes a pseudo-positive."""

    name: str
    flag: str
    help: str
    rule: Callable[[View, float], np.ndarray]
    order: int
    low: float = -math.inf
    high: float = math.inf
    reads: str = "scores"
    promotes: bool = False

    def __post_init__(self) -> None:
        if self.reads not in READS:
            raise ValueError(f"filter {self.name}: reads {self.reads!r}, not one of {READS}")

    def check(self, value: float | None) -> None:
        """A value outside the filter's range (or not finite) is one line, naming the option."""
        from ...errors import InputError

        if value is not None and not (math.isfinite(value) and self.low <= value <= self.high):
            raise InputError(f"--{self.name.replace('_', '-')} {value}: give a finite number in [{self.low}, {self.high}]")


def _discover() -> dict[str, Filter]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        record = getattr(importlib.import_module(f"{__name__}.{info.name}"), "FILTER", None)
        if isinstance(record, Filter):
            found.append(record)
    return {f.name: f for f in sorted(found, key=lambda f: f.order)}


REGISTRY: dict[str, Filter] = _discover()  # name -> record, in the order filters run


def needs_judge(thresholds: dict[str, float | None]) -> bool:
    """Whether any filter set in ``thresholds`` reads a judge's scores."""
    return any(v is not None and REGISTRY[k].reads == "judge" for k, v in thresholds.items() if k in REGISTRY)


__all__ = ["REGISTRY", "Filter", "View", "CorpusView", "needs_judge"]
