"""A compiled encoder network (``--compile``): the transformer exported once (``torch.export``, batch and sequence
length dynamic) and compiled ahead of time by torch's inductor with its weights frozen into the code (prepacked for
the CPU's matrix kernels, the elementwise work fused around them, bf16 weights on the bf16 path), kept as a package
in the cache folder (``compiled/``) under the model's fingerprint, the precision, ``max_seq_length``, torch's
version and the CPU's instruction sets. Building one takes seconds to tens of seconds and a C++ compiler; loading a
kept one takes a fraction of a second and none. Anything that fails leaves the model as it was."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

MIN_TEXTS = 16384  # below this, building a package costs more than it saves (benchmarks/encode_compile.py)


def compiler_found() -> bool:
    """Whether a C++ compiler is on PATH for torch's inductor to build its kernels with."""
    return any(shutil.which(c) for c in (os.environ.get("CXX") or "g++", "c++", "clang++"))


def _cpu() -> str:
    """The instruction sets this CPU has: a package built for another CPU is another package."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        import platform

        flags = platform.processor() or platform.machine()
    return hashlib.sha256(flags.encode()).hexdigest()[:12]


def package_path(root: Path, fingerprint: str, precision: str, max_seq_length: int | None,
                 device: str | None = None) -> Path:
    """Where the compiled package of this model and these settings is kept (a GPU's apart from the CPU's, one built
    from fused linear layers (:mod:`.fusing`) apart from one built from torch's)."""
    import torch

    from .fusing import fused_kernel_works

    kind = (device or ("cuda" if torch.cuda.is_available() else "cpu")).split(":")[0]
    where = _cpu() if kind == "cpu" else kind
    fused = "-fused" if precision == "bf16" and kind == "cpu" and fused_kernel_works() else ""  # built from fused layers
    return Path(root) / "compiled" / f"{fingerprint[:16]}-{precision}-{max_seq_length}-{torch.__version__}-{where}{fused}.pt2"


def _inner(model: Any) -> Any:
    """The module of a SentenceTransformer that holds the network as ``.model`` (its transformer), or None."""
    first = model._first_module() if hasattr(model, "_first_module") else None
    return first if first is not None and hasattr(first, "model") else None


def is_compiled(model: Any) -> bool:
    first = _inner(model)
    return first is not None and hasattr(first.model, "_orig_mod")


def compile_model(model: Any, precision: str, path: Path) -> bool:
    """Run ``model``'s network from the package at ``path``, built there first if it is not kept yet. False where the
    model has no network to compile; an error from torch where building or loading fails."""
    import torch

    first = _inner(model)
    if first is None:
        return False
    names_file = path.with_suffix(".json")
    if not (path.exists() and names_file.exists()):
        _build(first, precision, path)
    runner = torch._inductor.aoti_load_package(str(path))
    first.model = _Compiled(first.model, runner, json.loads(names_file.read_text())["inputs"])
    return True


def uncompile(model: Any) -> None:
    first = _inner(model)
    first.model = first.model._orig_mod


def _build(first: Any, precision: str, path: Path) -> None:
    """Export the network with its inputs' batch and length dynamic, compile it ahead of time with frozen weights,
    and keep the package (written to a temporary name, then renamed: never half a package)."""
    import copy

    import torch
    import torch._inductor.config

    net = copy.deepcopy(first.model).eval()
    if precision == "bf16":
        net = net.to(torch.bfloat16)
    example = first.tokenizer(["an example to trace the network with", "and a second one"], padding=True,
                              return_tensors="pt")
    names = [k for k, v in example.items() if isinstance(v, torch.Tensor)]

    class Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.net(**dict(zip(names, tensors))).last_hidden_state

    longest = int(getattr(first, "max_seq_length", None) or 512)  # what the tokenizer cuts texts to
    dims = {0: torch.export.Dim("batch", min=1, max=1 << 16), 1: torch.export.Dim("tokens", min=2, max=max(3, longest))}
    with torch.no_grad():
        exported = torch.export.export(Positional().eval(), tuple(example[n] for n in names),
                                       dynamic_shapes=(tuple(dims for _ in names),))  # one varargs input
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.pt2")
    try:
        with torch._inductor.config.patch(freezing=True):
            torch._inductor.aoti_compile_and_package(exported, package_path=str(tmp))
        path.with_suffix(".json").write_text(json.dumps({"inputs": names}))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _module():
    import torch

    class Compiled(torch.nn.Module):
        """The compiled network in the original's place: its inputs by name, its last hidden state as float32;
        every other attribute (``config``, ...) the original's."""

        def __init__(self, original: Any, runner: Any, names: list[str]) -> None:
            super().__init__()
            self._orig_mod, self.runner, self.names = original, runner, names

        def __getattr__(self, name: str) -> Any:
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self._orig_mod, name)

        def forward(self, **inputs: Any) -> dict[str, Any]:
            out = self.runner(*[inputs[n] for n in self.names])
            out = out[0] if isinstance(out, (list, tuple)) else out
            return {"last_hidden_state": out.float()}

    return Compiled


def _Compiled(original: Any, runner: Any, names: list[str]) -> Any:
    return _module()(original, runner, names)
