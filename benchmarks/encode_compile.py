"""The compiled network in a cold encode (``--compile``), side by side with the uncompiled one, on every corpus of
``../shared/data`` together (18,578 texts of four collections: above the size where ``--compile auto`` builds a
compiled network), at ``--precision auto``, each run in its own process with an empty chunk cache.

First one run that builds the compiled network (its texts/s include the build); then ``--compile off`` and
``--compile on`` with the network kept from that build (A B A B): the runs a user makes after the first. Reports
texts/s per run, the ratio per pair, and the compiled vectors against the uncompiled ones: cosine (mean, minimum)
and the overlap of the top-100 neighbours of 300 documents. Writes ``benchmarks/results/encode_compile.json``.

    python benchmarks/encode_compile.py --data ../shared/data   (make bench-encode-compile)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _proc import measure, write_results  # noqa: E402


def corpus(data: Path, out: Path) -> int:
    """Every collection's corpus in one JSONL file, ids prefixed by the collection's name."""
    n = 0
    with open(out, "w", encoding="utf-8") as fh:
        for path in sorted(data.glob("*/corpus.jsonl")):
            for line in path.open(encoding="utf-8"):
                doc = json.loads(line)
                fh.write(json.dumps({**doc, "_id": f"{path.parent.name}/{doc['_id']}"}) + "\n")
                n += 1
    return n


def encode(texts: Path, out: Path, compile_: str, precision: str, kept: Path) -> dict:
    """One run with an empty chunk cache; the compiled networks under ``kept`` are copied in first, and any built
    copied back."""
    with tempfile.TemporaryDirectory(prefix="minenegs-cache-") as cache:
        if kept.exists():
            shutil.copytree(kept, Path(cache) / "compiled")
        run = measure([sys.executable, "-m", "minenegs", "encode", "--corpus", str(texts), "-o", str(out), "--force",
                       "--precision", precision, "--compile", compile_, "--cache-dir", cache, "--json"])
        if (Path(cache) / "compiled").exists() and not kept.exists():
            shutil.copytree(Path(cache) / "compiled", kept)
    s = json.loads(run.stdout)
    return {"compile": compile_, "compiled": s["compiled"], "precision": s["precision"], "texts": s["texts_encoded"],
            "encode_seconds": s["encode_seconds"], "texts_per_second": s["texts_per_second"],
            "wall_seconds": run.seconds}


def agreement(a: np.ndarray, b: np.ndarray, probes: int = 300, k: int = 100) -> dict:
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    rows = np.linspace(0, len(a) - 1, probes).astype(int)
    top_a = np.argsort(-(a[rows] @ a.T), axis=1)[:, :k]
    top_b = np.argsort(-(b[rows] @ b.T), axis=1)[:, :k]
    overlap = np.mean([len(set(x) & set(y)) / k for x, y in zip(top_a, top_b)])
    return {"cosine_mean": round(float(cos.mean()), 6), "cosine_min": round(float(cos.min()), 6),
            f"top{k}_overlap": round(float(overlap), 4), "probes": probes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--pairs", type=int, default=2, help="A B pairs (off, then on)")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "encode_compile.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="minenegs-bench-"))
    n = corpus(args.data, work / "corpus.jsonl")
    kept = work / "compiled"
    build = encode(work / "corpus.jsonl", work / "emb-build", "on", args.precision, kept)
    print(f"building the compiled network: {build['texts_per_second']} texts/s (compiled: {build['compiled']})",
          flush=True)
    runs, ratios = [], []
    for i in range(args.pairs):
        pair = {c: encode(work / "corpus.jsonl", work / f"emb-{c}", c, args.precision, kept) for c in ("off", "on")}
        runs += list(pair.values())
        ratios.append(round(pair["on"]["texts_per_second"] / pair["off"]["texts_per_second"], 3))
        print(f"pair {i + 1}: off {pair['off']['texts_per_second']} texts/s, on {pair['on']['texts_per_second']} "
              f"texts/s (compiled: {pair['on']['compiled']}): {ratios[-1]}x", flush=True)
    same = agreement(np.load(work / "emb-off" / "corpus.npy"), np.load(work / "emb-on" / "corpus.npy"))
    print(f"compiled vs uncompiled vectors: {same}")
    write_results(args.output, {"data": str(args.data), "texts": n, "precision": runs[0]["precision"],
                                "first_run_building": build, "runs": runs,
                                "speed_ratio_on_over_off": ratios, "vectors": same})


if __name__ == "__main__":
    main()
