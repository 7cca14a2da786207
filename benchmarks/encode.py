"""Encoding speed and cache effect on a real corpus.

Runs, each in its own process: plain ``SentenceTransformer.encode`` (fp32, batch 32); ``minenegs encode``
with ``--precision fp32`` and ``--precision auto`` on an empty cache; and ``minenegs encode`` again with the
cache full. Prints the figures and writes them to ``benchmarks/results/encode.json``.

    python benchmarks/encode.py --data ../shared/data/scifact
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _proc import measure, write_results  # noqa: E402

PLAIN = """
import json, os, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"
from sentence_transformers import SentenceTransformer
from minenegs.inputs.tables import read_corpus
from minenegs.encode.models import bundled_model_path
texts = read_corpus(sys.argv[1])[0].texts
model = SentenceTransformer(str(bundled_model_path()), device="cpu")
start = time.perf_counter()
model.encode(texts, batch_size=32, show_progress_bar=False)
seconds = time.perf_counter() - start
print(json.dumps({"texts": len(texts), "encode_seconds": seconds}))
"""


def minenegs(corpus: Path, out: Path, cache: Path, precision: str) -> dict:
    run = measure([sys.executable, "-m", "minenegs", "encode", "--corpus", str(corpus), "-o", str(out), "--force",
                   "--precision", precision, "--cache-dir", str(cache), "--json"])
    summary = json.loads(run.stdout)
    return {"wall_seconds": run.seconds, "peak_mb": run.peak_mb, "texts_encoded": summary["texts_encoded"],
            "encode_seconds": summary["encode_seconds"], "texts_per_second": summary["texts_per_second"],
            "precision": summary["precision"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "encode.json")
    args = parser.parse_args()
    corpus = args.data / "corpus.jsonl"
    work = Path(tempfile.mkdtemp(prefix="minenegs-bench-"))

    plain = measure([sys.executable, "-c", PLAIN, str(corpus)])
    p = json.loads(plain.stdout)
    results = {
        "data": str(args.data), "texts": p["texts"], "machine": platform.processor() or platform.machine(),
        "plain_fp32": {"wall_seconds": plain.seconds, "peak_mb": plain.peak_mb,
                       "encode_seconds": round(p["encode_seconds"], 2),
                       "texts_per_second": round(p["texts"] / p["encode_seconds"], 2)},
        "minenegs_fp32_cold": minenegs(corpus, work / "fp32", work / "cache-fp32", "fp32"),
        "minenegs_auto_cold": minenegs(corpus, work / "auto", work / "cache-auto", "auto"),
        "minenegs_auto_warm": minenegs(corpus, work / "auto", work / "cache-auto", "auto"),
    }
    base = results["plain_fp32"]["texts_per_second"]
    results["speedup_fp32_vs_plain"] = round(results["minenegs_fp32_cold"]["texts_per_second"] / base, 2)
    results["speedup_auto_vs_plain"] = round(results["minenegs_auto_cold"]["texts_per_second"] / base, 2)
    results["targets"] = {"auto_vs_plain >= 1.8": results["speedup_auto_vs_plain"] >= 1.8,
                          "warm_wall_seconds < 3": results["minenegs_auto_warm"]["wall_seconds"] < 3}

    print(f"corpus: {corpus} ({results['texts']} texts)")
    print(f"{'run':<22}{'texts/s':>10}{'encode s':>10}{'wall s':>9}{'peak MB':>9}")
    for name in ("plain_fp32", "minenegs_fp32_cold", "minenegs_auto_cold", "minenegs_auto_warm"):
        r = results[name]
        print(f"{name:<22}{r['texts_per_second']:>10.1f}{r['encode_seconds']:>10.2f}{r['wall_seconds']:>9.2f}"
              f"{r['peak_mb']:>9.0f}")
    print(f"speed-up over plain: fp32 {results['speedup_fp32_vs_plain']}x, auto {results['speedup_auto_vs_plain']}x")
    print(f"targets: {results['targets']}")
    write_results(args.output, results)


if __name__ == "__main__":
    main()
