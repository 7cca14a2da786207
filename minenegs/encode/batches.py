"""Running an encoder over a chunk: a forward pass of ``batch_size`` texts at a time, and on a CPU in bf16 two
passes at once (an encoder's ``streams``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import MinenegsError
from .models import Encoder


def encode_chunk(encoder: Encoder, texts: list[str], prompt: str | None,
                 tick: Callable[[int], None] | None = None) -> np.ndarray:
    """One chunk's vectors, float32, a forward pass of ``encoder.batch_size`` texts at a time; where the encoder
    has ``streams`` > 1, that many passes at once after the first (see :func:`_streamed`)."""
    batch = getattr(encoder, "batch_size", 32)
    parts: list[np.ndarray] = []

    def one(texts: list[str]) -> np.ndarray:
        part = np.asarray(encoder.encode(texts, prompt), dtype=np.float32)
        if part.ndim != 2 or part.shape[0] != len(texts):
            raise MinenegsError(f"the encoder returned shape {part.shape} for {len(texts)} texts")
        return part

    def done(part: np.ndarray) -> None:
        parts.append(part)
        if tick is not None:
            tick(len(part))

    batches = [texts[i:i + batch] for i in range(0, len(texts), batch)]
    done(one(batches[0]))  # alone: it sets the tokenizer's truncation and padding, which later batches only read
    _streamed(one, batches[1:], getattr(encoder, "streams", 1), done)
    return np.concatenate(parts)


def _streamed(one: Callable[[Any], Any], items: list[Any], streams: int, done: Callable[[Any], None]) -> None:
    """``done(one(item))`` for each item in order; with ``streams`` > 1, that many ``one`` calls run at once on
    threads, torch's threads shared out between them. On a CPU the Python between one forward pass's operators
    then overlaps another's (in bf16 on 2 cores, 1.07x and 1.03x side by side in benchmarks/encode_bf16.py). A
    failure stops the batches not yet started."""
    if streams <= 1 or len(items) <= 1:
        for item in items:
            done(one(item))
        return
    from concurrent.futures import ThreadPoolExecutor

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // streams))  # read by each new thread when it first runs an operator
    pool = ThreadPoolExecutor(streams, thread_name_prefix="minenegs-encode")
    try:
        for result in pool.map(one, items):
            done(result)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)
