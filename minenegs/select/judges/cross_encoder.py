"""The cross-encoder judge: scores (query, candidate) pairs, cached in the pool folder.

Scores are raw logits from ``CrossEncoder.predict`` with an identity activation, stored per cross-encoder
(fingerprint of its files) in ``<pool>/cross_encoder/<fingerprint>.parquet`` as ``query_idx, doc_idx, logit``.
A later call scores only the pairs not there yet, in batches that span queries. Thresholds apply to
``sigmoid(logit)`` (RocketQA's 0.1 / 0.9 are on that scale).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...artifacts import output_file, read_parquet
from ...errors import InputError, ModelError
from .base import NOT_RELEVANT, RELEVANT, Ask, JudgeKind, JudgeOptions
from ...encode.models import fingerprint_dir, resolve_model

Progress = Callable[[int, int], None]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class CrossEncoderJudge:
    """A sentence-transformers ``CrossEncoder`` as a judge, with its settings: ``name`` a hub name or a folder,
    ``batch_size`` pairs per forward pass (batches span queries), ``device``. The model loads on first use;
    :meth:`scores` gives logits for pairs, scoring only those not cached in the pool yet."""

    def __init__(self, name: str, batch_size: int = 64, device: str | None = None, memo: Path | None = None,
                 given: str | None = None) -> None:
        """``memo`` remembers model folders' fingerprints (default: the embedding cache's); ``given`` is what the
        user typed to name it, for the errors (default ``--cross-encoder NAME``)."""
        from ...encode.cache import default_cache_dir

        self.name, self.batch_size, self.device = name, batch_size, device
        _, self.path = resolve_model(name, given or f"--cross-encoder {name}")
        self._model = None
        self._memo = memo if memo is not None else default_cache_dir() / "fingerprints.json"

    def fingerprint(self) -> str:
        if self.path is None:
            self._load()
        return fingerprint_dir(self.path, self._memo)

    def _load(self):
        if self._model is None:
            if self.path is not None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                from sentence_transformers import CrossEncoder

                self._model = CrossEncoder(str(self.path or self.name), device=self.device)
            except Exception as exc:
                raise ModelError(f"cannot load cross-encoder {self.name!r}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                                 "pass a CrossEncoder model name or a saved folder") from exc
            if self.path is None:
                from ...encode.models import _hub_snapshot

                self.path = _hub_snapshot(self.name)
        return self._model

    def predict(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        import torch

        model = self._load()
        out = model.predict(pairs, batch_size=self.batch_size, activation_fn=torch.nn.Identity(),
                            show_progress_bar=False, convert_to_numpy=True)
        out = np.asarray(out, dtype=np.float32)
        return out if out.ndim == 1 else out[:, -1]

    def scores(self, pool: Path, pairs: np.ndarray, query_text: Callable[[int], str], doc_text: Callable[[int], str],
               progress: Progress | None = None, chunk: int = 4096) -> dict[tuple[int, int], float]:
        """Logits for ``pairs`` (an ``[n, 2]`` array of query and corpus rows), scoring only what is not cached."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = pool / "cross_encoder" / f"{self.fingerprint()[:32]}.parquet"
        known: dict[tuple[int, int], float] = {}
        if path.exists():
            t = read_parquet(path).to_pydict()
            known = {(q, d): s for q, d, s in zip(t["query_idx"], t["doc_idx"], t["logit"])}
        todo = sorted({(int(q), int(d)) for q, d in pairs} - set(known))
        if todo:
            path.parent.mkdir(parents=True, exist_ok=True)
            for start in range(0, len(todo), chunk):  # batches span queries; each chunk saved as it completes
                part = todo[start:start + chunk]
                logits = self.predict([(query_text(q), doc_text(d)) for q, d in part])
                known.update({pair: float(s) for pair, s in zip(part, logits)})
                keys = list(known)
                with output_file(path, force=True) as tmp:
                    pq.write_table(pa.table({"query_idx": pa.array([k[0] for k in keys], pa.int32()),
                                             "doc_idx": pa.array([k[1] for k in keys], pa.int32()),
                                             "logit": pa.array([known[k] for k in keys], pa.float32())}), tmp)
                if progress is not None:
                    progress(min(start + chunk, len(todo)), len(todo))
        return known


class CrossEncoderVerdicts:
    """A cross-encoder as a judge in a chain: a candidate is relevant where sigmoid(logit) > ``threshold``."""

    name = "cross-encoder"

    def __init__(self, judge: CrossEncoderJudge, threshold: float = 0.5) -> None:
        if not 0 <= threshold <= 1:
            raise InputError(f"cross-encoder judge threshold {threshold}: give a probability in [0, 1]")
        self.judge, self.threshold = judge, threshold

    def fingerprint(self) -> str:
        return f"ce-{self.judge.fingerprint()[:24]}-{self.threshold:g}"

    def verdicts(self, asks: list[Ask], done: Callable[[int, str | None], None]) -> list[str | None]:
        probs = sigmoid(self.judge.predict([(a.query, a.candidate) for a in asks]).astype(np.float64))
        out = [RELEVANT if p > self.threshold else NOT_RELEVANT for p in probs]
        for i, verdict in enumerate(out):
            done(i, verdict)
        return out


def _build(rest: str, options: JudgeOptions, given: str) -> CrossEncoderVerdicts:
    """``cross-encoder:NAME_OR_PATH[@T]``: relevant above probability ``T`` (0.5 by default)."""
    name, at, threshold = rest.rpartition("@")
    try:
        value = float(threshold) if at else 0.5
    except ValueError:  # an @ inside the name, not a threshold
        name, value = rest, 0.5
    return CrossEncoderVerdicts(CrossEncoderJudge(name if at else rest, given=f"--judge {given}"), value)


KIND = JudgeKind("cross-encoder", "cross-encoder:NAME_OR_PATH[@T]", _build)
