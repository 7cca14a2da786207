"""The cross-encoder judge, ``cross-encoder:NAME_OR_PATH[@T]``: a sentence-transformers ``CrossEncoder`` scoring
(query, candidate) pairs; a candidate is relevant where ``sigmoid(logit) > T`` (0.5 by default; RocketQA's 0.1 /
0.9 are on that scale).

It answers with raw logits (``CrossEncoder.predict`` with an identity activation), cached like every judge's answers
in the pool folder (``judges/ce-<fingerprint of its files>.jsonl``, keyed by the query's and the candidate's texts),
so another threshold, the lazy walk of ``--judge`` and the filters that read its probability (``--ce-max``,
``--promote``, through :meth:`CrossEncoderJudge.scores`) all share one set of scores and never score a pair twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from ...errors import InputError, ModelError
from .base import NOT_RELEVANT, RELEVANT, Ask, JudgeKind, JudgeOptions, VerdictCache
from ...encode.models import fingerprint_dir, resolve_model

Progress = Callable[[int, int], None]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class CrossEncoderJudge:
    """A sentence-transformers ``CrossEncoder`` as a judge, with its settings: ``name`` a hub name or a folder,
    ``threshold`` the probability above which a candidate is relevant, ``batch_size`` pairs per forward pass
    (batches span queries), ``device``. The model loads on first use."""

    name = "cross-encoder"

    def __init__(self, name: str, batch_size: int = 64, device: str | None = None, threshold: float = 0.5,
                 given: str | None = None) -> None:
        """``given`` is what the user typed to name it, for the errors (default ``--cross-encoder NAME``)."""
        from ...encode.cache import default_cache_dir

        if not 0 <= threshold <= 1:
            raise InputError(f"cross-encoder judge threshold {threshold}: give a probability in [0, 1]")
        self.model_name, self.batch_size, self.device, self.threshold = name, batch_size, device, threshold
        _, self.path = resolve_model(name, given or f"--cross-encoder {name}")
        self._model = None
        self._memo = default_cache_dir() / "fingerprints.json"

    def fingerprint(self) -> str:
        """The model's files' digest: the threshold is not in it, so every threshold shares the scores."""
        if self.path is None:
            self._load()
        return "ce-" + fingerprint_dir(self.path, self._memo)[:24]

    def _load(self):
        if self._model is None:
            if self.path is not None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                from sentence_transformers import CrossEncoder

                self._model = CrossEncoder(str(self.path or self.model_name), device=self.device)
            except Exception as exc:
                raise ModelError(f"cannot load cross-encoder {self.model_name!r}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                                 "pass a CrossEncoder model name or a saved folder") from exc
            if self.path is None:
                from ...encode.models import _hub_snapshot

                self.path = _hub_snapshot(self.model_name)
        return self._model

    def predict(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        import torch

        model = self._load()
        out = model.predict(pairs, batch_size=self.batch_size, activation_fn=torch.nn.Identity(),
                            show_progress_bar=False, convert_to_numpy=True)
        out = np.asarray(out, dtype=np.float32)
        return out if out.ndim == 1 else out[:, -1]

    # -- as a judge (:class:`~.base.Judge`) ----------------------------------------------------------------------
    def key(self, ask: Ask) -> str:
        """A score depends on the query and the candidate, not on the positives."""
        return Ask(ask.query, (), ask.candidate).key()

    def verdict(self, logit: float) -> str:
        return RELEVANT if float(sigmoid(np.float64(logit))) > self.threshold else NOT_RELEVANT

    def verdicts(self, asks: list[Ask], done: Callable[[int, float], None]) -> list[float]:
        """Logits for ``asks`` (the judging step turns them into verdicts with :meth:`verdict`)."""
        out = [float(s) for s in self.predict([(a.query, a.candidate) for a in asks])]
        for i, logit in enumerate(out):
            done(i, logit)
        return out

    # -- for the filters that read its probability ---------------------------------------------------------------
    def scores(self, cache: VerdictCache, pairs: np.ndarray, query_text: Callable[[int], str],
               doc_text: Callable[[int], str], progress: Progress | None = None,
               chunk: int = 4096) -> dict[tuple[int, int], float]:
        """Logits for ``pairs`` (an ``[n, 2]`` array of query and corpus rows), from ``cache`` where it has them,
        the rest scored in batches that span queries, each chunk cached as it completes."""
        wanted = sorted({(int(q), int(d)) for q, d in pairs})
        keys = {pair: self.key(Ask(query_text(pair[0]), (), doc_text(pair[1]))) for pair in wanted}
        todo = [pair for pair in wanted if keys[pair] not in cache.known]
        try:
            for start in range(0, len(todo), chunk):
                part = todo[start:start + chunk]
                for pair, logit in zip(part, self.predict([(query_text(q), doc_text(d)) for q, d in part])):
                    cache.add(keys[pair], float(logit))
                if progress is not None:
                    progress(min(start + chunk, len(todo)), len(todo))
        finally:
            cache.close()
        return {pair: float(cache.known[keys[pair]]) for pair in wanted}


def _build(rest: str, options: JudgeOptions, given: str) -> CrossEncoderJudge:
    """``cross-encoder:NAME_OR_PATH[@T]``: relevant above probability ``T`` (0.5 by default)."""
    name, at, threshold = rest.rpartition("@")
    try:
        value = float(threshold) if at else 0.5
    except ValueError:  # an @ inside the name, not a threshold
        name, value = rest, 0.5
    return CrossEncoderJudge(name if at else rest, options.ce_batch_size, threshold=value, given=f"--judge {given}")


KIND = JudgeKind("cross-encoder", "cross-encoder:NAME_OR_PATH[@T]", _build)
