"""``torch.compile`` for an encoder's network (``--compile``): weights frozen into the graph, prepacked for the CPU's
matrix kernels, the elementwise work fused around them, one graph for every batch shape. Compiling takes about
20 s a process, so it pays only on large encodes (:data:`MIN_TEXTS`), and needs a C++ compiler for torch's
inductor; a compile that fails is undone and the model runs as it was."""

from __future__ import annotations

import os
import shutil
from typing import Any

MIN_TEXTS = 16384  # below this, compiling costs more than it saves (benchmarks/encode_compile.py)


def compiler_found() -> bool:
    """Whether a C++ compiler is on PATH for torch's inductor to build its kernels with."""
    return any(shutil.which(c) for c in (os.environ.get("CXX") or "g++", "c++", "clang++"))


def _inner(model: Any) -> Any:
    """The module of a SentenceTransformer that holds the network as ``.model`` (its transformer), or None."""
    first = model._first_module() if hasattr(model, "_first_module") else None
    return first if first is not None and hasattr(first, "model") else None


def is_compiled(model: Any) -> bool:
    first = _inner(model)
    return first is not None and hasattr(first.model, "_orig_mod")


def compile_model(model: Any) -> bool:
    """Compile the network in place, for inference: weights frozen into the graph (prepacked for the CPU's matrix
    kernels), elementwise work fused around them, one graph for every batch shape. False where the model has no
    network to compile."""
    import torch
    import torch._inductor.config

    first = _inner(model)
    if first is None:
        return False
    torch._inductor.config.freezing = True  # read when the graph compiles, at the first batch (not an option here)
    first.model = torch.compile(first.model, dynamic=True)
    return True


def uncompile(model: Any) -> None:
    first = _inner(model)
    first.model = first.model._orig_mod
