"""The default recipe, declared once: what `minenegs mine` and `filter` do without options, what
``MineParams.default()`` gives Python callers and what ``mine_hard_negatives(..., recipe="default")`` adds.

Chosen by the fine-tuning benchmark (``benchmarks/finetune.py``, table and reasons in ``benchmarks/RESULTS.md``)
and spelled out in ``configs/default.toml``: a dense pool of ``DEPTH`` candidates, the top-ranked
``NUM_NEGATIVES`` of them, no positive-aware margin, duplicates of a positive dropped (normalised text always,
embeddings at cosine >= ``DUP_THRESHOLD``), and candidates at embedding cosine >= ``MAX_POSITIVE_SIMILARITY``
to a positive dropped too (all three off with ``keep_duplicates``).

That is the recipe for sparse data. ``mine`` and ``filter`` measure the pool first (:mod:`minenegs.select.adaptive`)
and, where relevance looks dense and no selection option was given, write the dense recipe instead; ``--recipe
fixed`` always mines this one.
"""

from __future__ import annotations

from typing import Any

from .errors import InputError

RETRIEVER = "dense"
DEPTH = 100
STRATEGY = "top"
NUM_NEGATIVES = 5
FORMAT = "n-tuple"
DUP_THRESHOLD = 0.95
MAX_POSITIVE_SIMILARITY = 0.7
THRESHOLDS = {"duplicate_text": 1.0, "dup_threshold": DUP_THRESHOLD, "max_positive_similarity": MAX_POSITIVE_SIMILARITY}
# The dense recipe (chosen on nfcorpus_train, benchmarks/RESULTS.md): one negative a query, drawn at random from the
# ranks after the first DENSE_SKIP of the pool's depth (30 of a depth-100 pool), at cosine below
# DENSE_MAX_POSITIVE_SIMILARITY to every positive; duplicates as above. Taken only where it gives at least
# DENSE_MIN_COVERAGE of the queries a negative.
DENSE = {"strategy": "random", "num_negatives": 1}
DENSE_SKIP = 0.3
DENSE_MAX_POSITIVE_SIMILARITY = 0.5
DENSE_MIN_COVERAGE = 0.5
GUIDED_LOSS = "GISTEmbedLoss"  # what trains better still on such rows, with the model that mined as the guide


def thresholds(given: dict[str, Any] | None = None, keep_duplicates: bool = False) -> dict[str, Any]:
    """The recipe's filters with ``given`` (filter name -> value; None: not given) on top. ``keep_duplicates``
    turns the duplicate filters off, and the guard too unless it is given."""
    given = dict(given or {})
    dup, guard = given.get("dup_threshold"), given.get("max_positive_similarity")
    if keep_duplicates and dup is not None:
        raise InputError("--keep-duplicates turns the duplicate filters off: give it or --dup-threshold, not both")
    return {**given, "duplicate_text": None if keep_duplicates else THRESHOLDS["duplicate_text"],
            "dup_threshold": None if keep_duplicates else (DUP_THRESHOLD if dup is None else dup),
            "max_positive_similarity": guard if guard is not None or keep_duplicates else MAX_POSITIVE_SIMILARITY}
