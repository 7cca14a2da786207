"""Judges: models (or labels) stronger than the retriever that give a verdict per (query, candidate) pair, for
judging (:mod:`minenegs.select.judging`), and the cross-encoder's scores for the filters that read a judge
(``Filter.reads == "judge"``).

A kind of judge is one module here exporting a :class:`JudgeKind` as ``KIND``: ``--judge NAME:...``'s parsing, the
help's list of kinds and the errors are derived from them (:data:`KINDS`, :func:`parse_judge`); the verdict cache
keys on each judge's ``fingerprint()``. Adding a kind is adding its module (and its test)."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

from ...errors import InputError
from ...settings import setting
from .base import NOT_RELEVANT, RELEVANT, UNSURE, Ask, Judge, JudgeKind, JudgeOptions, VerdictCache
from .cross_encoder import CrossEncoderJudge, sigmoid


def _discover() -> dict[str, JudgeKind]:
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        record = getattr(importlib.import_module(f"{__name__}.{info.name}"), "KIND", None)
        if isinstance(record, JudgeKind):
            found[record.name] = record
    return found


KINDS: dict[str, JudgeKind] = _discover()  # name -> kind


def syntaxes() -> str:
    """The kinds as ``--judge`` takes them, for help and errors."""
    return ", ".join(k.syntax for k in KINDS.values())


@dataclass(frozen=True)
class JudgeSpecs:
    """The judges a run names, by spec, and the cross-encoder whose probabilities the ``ce_max`` and ``promote``
    filters read (:meth:`~minenegs.select.judging.Judging.of` builds them)."""

    judges: list[str] | None = setting(None, f"A judge, cheapest first (repeatable): {syntaxes()} (see README: "
                                       "Judges).", flag="--judge")
    cross_encoder: str | None = setting(None, "CrossEncoder name or folder whose probabilities --ce-max and --promote "
                                        "read (scored to --judge-depth; cached in the pool with every judge's answers).")


def parse_judge(spec: str, options: JudgeOptions = JudgeOptions()) -> Judge:
    """A judge from its spec, ``KIND:REST`` (:data:`KINDS`), built with the ``--judge-*`` ``options``."""
    name, colon, rest = spec.partition(":")
    if name not in KINDS or not colon or not rest:
        raise InputError(f"--judge {spec}: give one of {syntaxes()}")
    return KINDS[name].build(rest, options, spec)


__all__ = ["KINDS", "NOT_RELEVANT", "RELEVANT", "UNSURE", "Ask", "CrossEncoderJudge", "Judge",
           "JudgeKind", "JudgeOptions", "JudgeSpecs", "VerdictCache", "parse_judge", "sigmoid", "syntaxes"]
