"""Peak memory of ``minenegs encode`` over a synthetic corpus file at two sizes, each run a process of its own:
in memory (one shard) and with ``--shards`` at a fixed shard size (the corpus read a block at a time, one shard's
texts held at a time). No model: a hash of each text is its vector (``HashEncoder``), so what is measured is the
encode stage's own memory, not a network's. Writes ``benchmarks/results/encode_shards.json``.

    python benchmarks/encode_shards.py --docs 1000000 4000000 --shard-docs 250000
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from _proc import measure, write_results  # noqa: E402

WORDS = ("ranking", "retrieval", "passage", "negative", "query", "corpus", "vector", "index", "shard", "model",
         "token", "score", "label", "dense", "sparse", "judge")

CHILD = """
import hashlib, sys
import numpy as np
from minenegs import api
from minenegs.encode import models

class HashEncoder:
    name, batch_size = "hash", 4096
    def fingerprint(self): return "hash-64"
    def settings(self): return {}
    def encode(self, texts, prompt):
        raw = b"".join(hashlib.blake2b(t.encode(), digest_size=64).digest() for t in texts)
        return np.frombuffer(raw, dtype=np.int8).reshape(len(texts), 64).astype(np.float32)

models.SentenceTransformerEncoder = lambda *a, **k: HashEncoder()
api.encode(sys.argv[1], sys.argv[2], cache_dir=sys.argv[3], shards=int(sys.argv[4]), chunk_size=16384, force=True)
print("peak-mb", [int(line.split()[1]) // 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")][0])
"""


def write_corpus(folder: Path, docs: int) -> Path:
    """A BEIR folder of ``docs`` documents of about 200 characters, 1,000 queries; kept when already written."""
    stamp = folder / "counts.json"
    if stamp.exists() and json.loads(stamp.read_text()) == {"docs": docs}:
        return folder
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as fh:
        for i in range(docs):
            words = " ".join(WORDS[(i * 7 + k * k) % len(WORDS)] for k in range(24))
            fh.write(json.dumps({"_id": f"d{i}", "title": f"document {i}", "text": f"{words} {i}"}) + "\n")
    with open(folder / "queries.jsonl", "w") as fh:
        fh.writelines(json.dumps({"_id": f"q{j}", "text": f"query {j} about document {j * 997 % docs}"}) + "\n"
                      for j in range(1000))
    with open(folder / "qrels" / "train.tsv", "w") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        fh.writelines(f"q{j}\td{j * 997 % docs}\t1\n" for j in range(1000))
    stamp.write_text(json.dumps({"docs": docs}))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, nargs=2, default=[1_000_000, 4_000_000])
    parser.add_argument("--shard-docs", type=int, default=250_000)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "encode_shards.json")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="minenegs-encode-shards-"))
    results = {"shard_docs": args.shard_docs, "runs": {}}
    for docs in args.docs:
        data = write_corpus(work / f"beir-{docs}", docs)
        size = (data / "corpus.jsonl").stat().st_size
        for shards in (1, -(-docs // args.shard_docs)):
            shutil.rmtree(work / "cache", ignore_errors=True)  # every run encodes everything
            run = measure([sys.executable, "-c", CHILD, str(data), str(work / "out"), str(work / "cache"),
                           str(shards)], env={"HF_HUB_OFFLINE": "1"})
            peak = int(re.search(r"peak-mb (\d+)", run.stdout).group(1))
            results["runs"][f"{docs}-{shards}"] = {"docs": docs, "shards": shards, "corpus_file_mb": round(size / 2 ** 20),
                                                   "peak_mb": peak, "seconds": run.seconds}
            print(f"{docs} documents, {shards} shard(s): peak {peak} MB, {run.seconds} s", flush=True)
    small, large = args.docs
    for shards_of in ("in_memory", "sharded"):
        pick = (lambda r: r["shards"] == 1) if shards_of == "in_memory" else (lambda r: r["shards"] > 1)
        a, b = (next(r for r in results["runs"].values() if r["docs"] == d and pick(r)) for d in (small, large))
        results[f"{shards_of}_peak_ratio_{large}_vs_{small}"] = round(b["peak_mb"] / a["peak_mb"], 3)
    write_results(args.output, results)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
