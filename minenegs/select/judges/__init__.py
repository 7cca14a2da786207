"""Judges: models stronger than the retriever that score (query, candidate) pairs, for the filters that read a
judge (``Filter.reads == "judge"``). A judge is one object with its settings, passed as one thing; its scores
are cached in the pool folder under its fingerprint, so no pair is scored twice."""

from .base import NOT_RELEVANT, RELEVANT, UNSURE, Ask
from .cross_encoder import CrossEncoderJudge, CrossEncoderVerdicts, sigmoid

__all__ = ["NOT_RELEVANT", "RELEVANT", "UNSURE", "Ask", "CrossEncoderJudge", "CrossEncoderVerdicts", "sigmoid"]
