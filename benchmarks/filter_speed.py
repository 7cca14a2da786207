"""Filtering speed on a pool of about a million candidate rows (no model: synthetic vectors and texts).

Builds an embeddings folder of synthetic unit vectors (100,000 documents, 10,000 queries, two positives each, each
query near its positives so that they are retrieved),
a pool of depth 100 (1,000,000+ rows), then times in fresh processes ``minenegs filter --relative-margin 0.05``
with the filters on similarity to positives on (the default: normalised text, ``--dup-threshold 0.95`` and
``--max-positive-similarity 0.7``) and off
(``--keep-duplicates``).
Writes ``benchmarks/results/filter_speed.json``.

    python benchmarks/filter_speed.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from _proc import measure, write_results  # noqa: E402
from _synthetic import parse_args, synthetic_pool  # noqa: E402


def main() -> None:
    args, work = parse_args(__doc__, "filter_speed.json")
    pool = synthetic_pool(work, args.docs, args.queries, reachable=True)  # positives the retriever reaches
    import pyarrow.parquet as pq

    rows = pq.read_metadata(pool / "candidates.parquet").num_rows
    base = [sys.executable, "-m", "minenegs", "filter", str(pool), "--relative-margin", "0.05", "-q", "--force"]
    runs = {
        "relative_margin (duplicate filters off)": measure(base + ["--keep-duplicates", "-o", str(work / "a.parquet")]),
        "relative_margin+duplicate filters (default)": measure(base + ["-o", str(work / "b.parquet")]),
    }
    results = {"pool_rows": rows, "queries": args.queries, "docs": args.docs,
               "runs": {k: {"wall_seconds": v.seconds, "peak_mb": v.peak_mb} for k, v in runs.items()}}
    results["target_under_2s"] = all(v.seconds < 2 for v in runs.values())
    print(f"pool: {rows:,} candidate rows, {args.queries:,} queries, {args.docs:,} docs")
    for name, r in results["runs"].items():
        print(f"  minenegs filter ({name}): {r['wall_seconds']:.2f} s wall, {r['peak_mb']:.0f} MB peak")
    print(f"target (< 2 s): {results['target_under_2s']}")
    write_results(args.output, results)


if __name__ == "__main__":
    main()
