"""The positive-similarity guard: :mod:`.dup_threshold`'s rule at a lower threshold, counted on its own: a
candidate about the same thing as a positive, not a copy of it (``calibrate`` measures what a threshold costs
and saves). 0.7 in the default recipe; 1 turns it off."""

from __future__ import annotations

from . import Filter
from .dup_threshold import rule

FILTER = Filter("max_positive_similarity", "--max-positive-similarity",
                "Drop candidates with cosine >= t to a positive, a guard below near-duplicates counted apart (1: off).",
                rule, order=70, low=-1.0, high=1.0, reads="vectors")
