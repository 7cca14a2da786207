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
    from minenegs.encode.embeddings import encode_dataset
    from minenegs.encode.folder import Embeddings
    from minenegs.retrieve.pool import PoolParams, build_pool
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
    if not (work / "emb" / "manifest.json").exists():  # made once per work folder; the pool is reused too
        encode_dataset(ds, work / "emb", encoder, cache_dir=work / "cache", chunk_size=100_000, force=True)
    return build_pool(Embeddings(work / "emb"), PoolParams(depth=100))


def parse_args(doc: str, results: str) -> tuple[argparse.Namespace, Path]:
    """The synthetic benchmarks' options (corpus size, results file) and a fresh work folder."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / results)
    return parser.parse_args(), Path(tempfile.mkdtemp(prefix="minenegs-bench-"))


class ClusteredEncoder:
    """Synthetic embeddings with the structure ANN indexes meet in real ones, from the text alone (any process
    gives the same vector): a document ``t<topic> s<sub> d<i>`` is topic + 0.6 subtopic + 0.6 style (a point
    of a 32-dimensional continuum shared by all topics) + 0.5 noise, normalised; a query
    ``q<j> t<topic> s<sub> d<i>`` is its positive document ``d<i>`` plus 0.7 noise of its own. Every component
    is a sum of rows of small seeded tables indexed by the numbers modulo primes, so it is vectorised and
    distinct for every topic, subtopic and document up to tens of millions."""

    name = "synthetic-clustered"
    PRIMES = (8191, 8179)

    def __init__(self, dim: int = 384, batch_size: int = 65536) -> None:
        self.dim, self.batch_size = dim, batch_size
        rng = np.random.default_rng(12345)
        self.tables = {part: [rng.standard_normal((p, dim), dtype=np.float32) / np.sqrt(dim) for p in self.PRIMES]
                       for part in ("topic", "sub", "noise", "query")}
        self.style = rng.standard_normal((32, dim), dtype=np.float32) / np.sqrt(32 * dim)  # unit norm for z ~ N(0, I)

    def fingerprint(self) -> str:
        return f"synthetic-clustered-{self.dim}"

    def settings(self) -> dict:
        return {}

    def _part(self, part: str, key: np.ndarray) -> np.ndarray:
        a, b = self.tables[part]
        return (a[key % len(a)] + b[key % len(b)]) / np.sqrt(2, dtype=np.float32)

    def _doc(self, t: np.ndarray, s: np.ndarray, d: np.ndarray) -> np.ndarray:
        noise = self._part("noise", d)
        style = (self._part("noise", d * 7 + 3)[:, :32] * np.sqrt(self.dim, dtype=np.float32)) @ self.style
        return self._part("topic", t) + 0.6 * self._part("sub", t * 16 + s) + 0.6 * style + 0.5 * noise

    def encode(self, texts: list[str], prompt: str | None) -> np.ndarray:
        fields = [t.split() for t in texts]
        query = np.array([f[0][0] == "q" for f in fields])
        nums = np.array([[int(x[1:]) for x in f[-3:]] for f in fields], dtype=np.int64).reshape(-1, 3)
        out = self._doc(nums[:, 0], nums[:, 1], nums[:, 2])
        if query.any():
            qn = np.array([int(f[0][1:]) for f, q in zip(fields, query) if q], dtype=np.int64)
            out[query] += 0.7 * self._part("query", qn)
        return out.astype(np.float32)


def write_clustered_beir(folder: Path, docs: int, queries: int, seed: int = 0) -> None:
    """A BEIR folder whose texts :class:`ClusteredEncoder` reads: ``docs // 1000`` topics of 16 subtopics; each
    query made from one random document, its positive (one in five queries also gets a second positive from
    the same subtopic, when there is one). Written once; an existing folder with the same counts is kept."""
    import json

    stamp = folder / "counts.json"
    if stamp.exists() and json.loads(stamp.read_text()) == {"docs": docs, "queries": queries, "seed": seed}:
        return
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, max(1, docs // 1000), docs)
    sub = rng.integers(0, 16, docs)
    with open(folder / "corpus.jsonl", "w") as fh:
        for start in range(0, docs, 100_000):
            fh.writelines(f'{{"_id": "d{i}", "title": "", "text": "t{t} s{s} d{i}"}}\n'
                          for i, t, s in zip(range(start, min(docs, start + 100_000)),
                                             topic[start:start + 100_000].tolist(), sub[start:start + 100_000].tolist()))
    anchor = rng.choice(docs, queries, replace=docs < queries)
    group = topic.astype(np.int64) * 16 + sub
    order = np.argsort(group, kind="stable")
    first = np.searchsorted(group[order], group[anchor])
    size = np.searchsorted(group[order], group[anchor], side="right") - first
    second = order[first + rng.integers(0, np.maximum(size, 1))]
    two = (rng.random(queries) < 0.2) & (second != anchor)
    with open(folder / "queries.jsonl", "w") as fh:
        fh.writelines(f'{{"_id": "q{j}", "text": "q{j} t{topic[d]} s{sub[d]} d{d}"}}\n'
                      for j, d in enumerate(anchor.tolist()))
    with open(folder / "qrels" / "train.tsv", "w") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for j, (a, b, t) in enumerate(zip(anchor.tolist(), second.tolist(), two.tolist())):
            fh.write(f"q{j}\td{a}\t1\n" + (f"q{j}\td{b}\t1\n" if t else ""))
    stamp.write_text(json.dumps({"docs": docs, "queries": queries, "seed": seed}))
