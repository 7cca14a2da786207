"""A deterministic fake encoder: bag of hashed words, so texts sharing words get similar vectors."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import numpy as np


def _word_vector(word: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).standard_normal(dim)


class FakeEncoder:
    """Encodes ``prompt + text`` as the sum of its words' seeded random vectors.

    Counts what it encodes (``encoded``, ``calls``) so tests can check what was (not) encoded again;
    ``delay`` seconds per call slows it down; ``stall_after`` calls, it sleeps for good (until killed), so an
    interruption test knows how far it got whatever the machine's speed; ``fail_after`` raises
    KeyboardInterrupt once that many texts have been encoded.
    """

    name = "fake-bow"
    batch_size = 8

    def __init__(self, dim: int = 32, version: str = "1", delay: float = 0.0, fail_after: int | None = None,
                 scale: float = 1.0, stall_after: int | None = None) -> None:
        self.dim, self.version, self.delay, self.fail_after, self.scale = dim, version, delay, fail_after, scale
        self.stall_after = stall_after
        self.encoded = 0
        self.calls: list[list[str]] = []

    def fingerprint(self) -> str:
        return f"fake-bow-{self.version}-{self.dim}"

    def settings(self) -> dict:
        return {"scale": self.scale}

    def encode(self, texts: list[str], prompt: str | None) -> np.ndarray:
        if self.fail_after is not None and self.encoded + len(texts) > self.fail_after:
            raise KeyboardInterrupt
        if self.delay:
            time.sleep(self.delay)
        if self.stall_after is not None and len(self.calls) >= self.stall_after:
            while True:  # short sleeps: a Ctrl-C that lands just before a sleep starts is still raised within 50 ms
                time.sleep(0.05)
        self.calls.append(list(texts))
        self.encoded += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", ((prompt or "") + text).lower()):
                out[i] += _word_vector(word, self.dim)
        return out * self.scale


class RandomEncoder:
    """One seeded random vector per text (seeded by the text's bytes, so the same in every process): fast
    synthetic embeddings with no similarity structure, for big corpora in fault tests and benchmarks."""

    name = "random"

    def __init__(self, dim: int = 32, batch_size: int = 4096) -> None:
        self.dim, self.batch_size = dim, batch_size

    def fingerprint(self) -> str:
        return f"random-{self.dim}"

    def settings(self) -> dict:
        return {}

    def encode(self, texts: list[str], prompt: str | None) -> np.ndarray:
        return np.stack([_word_vector(t, self.dim) for t in texts]).astype(np.float32)


class BrokenEncoder(FakeEncoder):
    """Loads where it is made but fails where it encodes, as a model missing on a cluster's workers does."""

    def encode(self, texts: list[str], prompt: str | None) -> np.ndarray:
        from minenegs.errors import ModelError

        raise ModelError("cannot load model 'fake-bow': no such folder on this node")


class DyadicEncoder(FakeEncoder):
    """:class:`FakeEncoder`'s unit vectors rounded to multiples of 1/256 (store them with ``normalize=False``):
    every inner product of two is then exact in float32 whatever the summation order, so scores, and the files
    written from them, are the same bytes on every CPU."""

    name = "fake-dyadic"

    def fingerprint(self) -> str:
        return f"fake-dyadic-{self.version}-{self.dim}"

    def encode(self, texts: list[str], prompt: str | None) -> np.ndarray:
        raw = super().encode(texts, prompt).astype(np.float64)
        unit = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
        return (np.round(unit * 256) / 256).astype(np.float32)


class NearDocs:
    """Documents ``d<i>`` get seeded random vectors of ``dim``; a query ``q:a,b,...`` sits near its relevant
    documents: their sum plus seeded noise of scale ``noise``."""

    name = "near-docs"
    batch_size = 4096

    def __init__(self, dim: int = 16, noise: float = 0.3) -> None:
        self.dim, self.noise = dim, noise

    def fingerprint(self) -> str:
        return f"near-docs-{self.dim}-{self.noise}"

    def settings(self) -> dict:
        return {}

    def encode(self, texts, prompt):
        def doc(i: int):
            return np.random.default_rng(i).standard_normal(self.dim)

        out = []
        for t in texts:
            if t.startswith("q:"):
                ids = [int(x) for x in t[2:].split(",")]
                out.append(sum(doc(i) for i in ids) + self.noise * np.random.default_rng(10 ** 6 + ids[0]).standard_normal(self.dim))
            else:
                out.append(doc(int(t[1:])))
        return np.asarray(out, dtype=np.float32)


def near_docs_pool(root: Path, docs: int, queries: int, relevant: int, seed: int, dim: int, noise: float) -> Path:
    """A top-20 pool of ``queries`` queries among ``docs`` documents (:class:`NearDocs`), each query near its
    ``relevant`` documents (seeded), the first two of them labelled, the others hidden."""
    from minenegs.encode.embeddings import encode_dataset
    from minenegs.encode.folder import Embeddings
    from minenegs.records import Dataset, Qrel, TextTable
    from minenegs.retrieve.pool import PoolParams, build_pool

    rng = np.random.default_rng(seed)
    groups = [[int(x) for x in rng.choice(docs, relevant, replace=False)] for _ in range(queries)]
    ds = Dataset(TextTable([f"d{i}" for i in range(docs)], [f"d{i}" for i in range(docs)]),
                 TextTable([f"q{i}" for i in range(queries)], ["q:" + ",".join(map(str, g)) for g in groups]),
                 [Qrel(f"q{i}", f"d{d}") for i, g in enumerate(groups) for d in g[:2]])
    encode_dataset(ds, root / "emb", NearDocs(dim, noise), cache_dir=root / "cache")
    return build_pool(Embeddings(root / "emb"), PoolParams(depth=20))


def tiny_cross_encoder(folder: Path) -> Path:
    """A CrossEncoder with seeded random weights, saved in ``folder`` with the bundled model's tokenizer: the same
    judgement on every run, for testing the code path (not the judgement)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    import minenegs

    tok = AutoTokenizer.from_pretrained(str(minenegs.bundled_model_path()))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=1, max_position_embeddings=512)
    BertForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
