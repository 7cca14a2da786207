"""False-negative filters. Each takes a query's candidate scores and its lowest positive score ``p``
and returns which candidates to keep. One module per filter, registered here with the option it answers to.

The positive-aware ones mean what sentence-transformers' ``mine_hard_negatives`` means by them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import positive_aware

Filter = Callable[[np.ndarray, float, float], np.ndarray]

FILTERS: dict[str, Filter] = {
    "absolute_margin": positive_aware.absolute_margin,
    "relative_margin": positive_aware.relative_margin,
    "max_score": positive_aware.max_score,
    "min_score": positive_aware.min_score,
}
