"""A synthetic corpus, embeddings folder and depth-100 pool of about a million rows, with no model: random unit
vectors seeded by text (``tests/fakes.RandomEncoder``). With ``reachable`` positives, each query's vector is the
sum of its two positives' vectors plus noise, so the retriever reaches them (``calibrate`` needs that)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from fakes import RandomEncoder, _word_vector  # noqa: E402

SEP = " | "


class NearPositivesEncoder(RandomEncoder):
    """A text ``a | b`` encodes as vec(a) + vec(b) + 0.5 * vec(whole text); any other text as RandomEncoder does."""

    name = "random-near"

    def fingerprint(self) -> str:
        return f"random-near-{self.dim}"

    def encode(self, texts: list[str], prompt: str | None) -> np.ndarray:
        def one(t: str) -> np.ndarray:
            parts = t.split(SEP)
            if len(parts) == 1:
                return _word_vector(t, self.dim)
            return sum(_word_vector(p, self.dim) for p in parts) + 0.5 * _word_vector(t, self.dim)

        return np.stack([one(t) for t in texts]).astype(np.float32)


def synthetic_pool(work: Path, docs: int = 100_000, queries: int = 10_000, reachable: bool = False) -> Path:
    from minenegs.embeddings import Embeddings, encode_dataset
    from minenegs.pool import PoolParams, build_pool
    from minenegs.records import Dataset, Qrel, TextTable

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(5000)]
    doc_texts = [" ".join(rng.choice(words, 12)) + f" doc{i}" for i in range(docs)]
    positives = [rng.choice(docs, 2, replace=False) for _ in range(queries)]
    if reachable:
        query_texts = [SEP.join(doc_texts[int(d)] for d in pos) for pos in positives]
        encoder = NearPositivesEncoder(dim=64, batch_size=100_000)
    else:
        query_texts = [" ".join(rng.choice(words, 6)) + f" query{i}" for i in range(queries)]
        encoder = RandomEncoder(dim=64, batch_size=100_000)
    qrels = [Qrel(f"q{i}", f"d{int(d)}") for i, pos in enumerate(positives) for d in pos]
    ds = Dataset(TextTable([f"d{i}" for i in range(docs)], doc_texts),
                 TextTable([f"q{i}" for i in range(queries)], query_texts), qrels)
    encode_dataset(ds, work / "emb", encoder, cache_dir=work / "cache", chunk_size=100_000)
    return build_pool(Embeddings(work / "emb"), PoolParams(depth=100))


def parse_args(doc: str, results: str) -> tuple[argparse.Namespace, Path]:
    """The synthetic benchmarks' options (corpus size, results file) and a fresh work folder."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / results)
    return parser.parse_args(), Path(tempfile.mkdtemp(prefix="minenegs-bench-"))
