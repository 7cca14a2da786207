"""RocketQA's pseudo-positives: :mod:`.ce_max`'s rule, but what it removes is written as a positive of its query
instead of thrown away."""

from __future__ import annotations

from . import Filter
from .ce_max import rule

FILTER = Filter("promote", "--promote", "Write candidates whose cross-encoder sigmoid score is above t as positives.",
                rule, order=90, low=0.0, high=1.0, reads="judge", promotes=True)
