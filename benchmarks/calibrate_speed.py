"""``calibrate`` on a pool of about a million candidate rows, whole process (no model: synthetic vectors).

100,000 documents, 10,000 queries with two positives each that the retriever reaches (``_synthetic.py``), a
depth-100 pool. Times in fresh processes ``minenegs calibrate POOL --json`` over its default grid, and with
``--max-leak 0.5`` (the grid, then the recipe written). Target: under 10 s. Writes
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
    grid = measure(base)
    picked = measure(base + ["--max-leak", "0.5", "--max-short", "1", "--recipe", str(work / "r.toml"), "--force"])
    info = json.loads(grid.stdout)
    results = {"pool_rows": rows, "queries": args.queries, "docs": args.docs, "holdouts": info["holdouts"],
               "settings": len(info["settings"]),
               "runs": {"calibrate (default grid)": {"wall_seconds": grid.seconds, "peak_mb": grid.peak_mb},
                        "calibrate --max-leak 0.5": {"wall_seconds": picked.seconds, "peak_mb": picked.peak_mb}}}
    results["target_under_10s"] = all(r["wall_seconds"] < 10 for r in results["runs"].values())
    print(f"pool: {rows:,} candidate rows, {args.queries:,} queries, {info['holdouts']:,} held-out positives, "
          f"{len(info['settings'])} settings")
    for name, r in results["runs"].items():
        print(f"  minenegs {name}: {r['wall_seconds']:.2f} s wall, {r['peak_mb']:.0f} MB peak")
    print(f"target (< 10 s): {results['target_under_10s']}")
    write_results(args.output, results)


if __name__ == "__main__":
    main()
