"""``calibrate`` on a pool of about a million candidate rows, whole process (no model: synthetic vectors).

100,000 documents, 10,000 queries with two positives each that the retriever reaches (``_synthetic.py``), a
depth-100 pool. Times in fresh processes ``minenegs calibrate POOL --json`` over its default grid beside one
``minenegs filter POOL`` with the default recipe (A B A B, the ratio of the two), and ``--max-leak 0.5`` (the
grid, then the recipe written). Target: under 10 s. Writes
``benchmarks/results/calibrate_speed.json``.

    python benchmarks/calibrate_speed.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from _proc import measure, write_results  # noqa: E402
from _synthetic import parse_args, synthetic_pool  # noqa: E402


def main() -> None:
    args, work = parse_args(__doc__, "calibrate_speed.json")
    pool = synthetic_pool(work, args.docs, args.queries, reachable=True)
    import pyarrow.parquet as pq

    rows = pq.read_metadata(pool / "candidates.parquet").num_rows
    base = [sys.executable, "-m", "minenegs", "calibrate", str(pool), "--json"]
    one = [sys.executable, "-m", "minenegs", "filter", str(pool), "-q", "--force", "-o", str(work / "f.parquet")]
    grid, single = [], []
    for _ in range(2):  # A B A B: the grid beside one default selection of the same pool, same run
        grid.append(measure(base))
        single.append(measure(one))
    picked = measure(base + ["--max-leak", "0.5", "--max-short", "1", "--recipe", str(work / "r.toml"), "--force"])
    info = json.loads(grid[0].stdout)
    best = min(g.seconds for g in grid)
    results = {"pool_rows": rows, "queries": args.queries, "docs": args.docs, "holdouts": info["holdouts"],
               "settings": len(info["settings"]),
               "runs": {"calibrate (default grid)": {"wall_seconds": [g.seconds for g in grid],
                                                     "peak_mb": max(g.peak_mb for g in grid)},
                        "filter (default recipe)": {"wall_seconds": [f.seconds for f in single],
                                                    "peak_mb": max(f.peak_mb for f in single)},
                        "calibrate --max-leak 0.5": {"wall_seconds": [picked.seconds], "peak_mb": picked.peak_mb}},
               "ratio_calibrate_to_filter": round(best / min(f.seconds for f in single), 2)}
    results["target_under_10s"] = max(g.seconds for g in grid + [picked]) < 10
    print(f"pool: {rows:,} candidate rows, {args.queries:,} queries, {info['holdouts']:,} held-out positives, "
          f"{len(info['settings'])} settings")
    for name, r in results["runs"].items():
        print(f"  minenegs {name}: {', '.join(f'{x:.2f}' for x in r['wall_seconds'])} s wall, {r['peak_mb']:.0f} MB peak")
    print(f"calibrate (all {len(info['settings'])} settings, every hold-out) / one filter run, same run: "
          f"{results['ratio_calibrate_to_filter']:.2f}x")
    print(f"target (< 10 s): {results['target_under_10s']}")
    write_results(args.output, results)


if __name__ == "__main__":
    main()
