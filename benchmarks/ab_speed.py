"""The speed of a change: the same minenegs commands under an earlier revision (A) and this checkout (B), run side
by side in one benchmark run (A B A B ...), each in a fresh process. Prints the median wall time and peak memory of
each and the ratio B / A; writes ``benchmarks/results/ab_speed.json``.

Commands timed:

- ``filter``: ``minenegs filter POOL --relative-margin 0.05`` with the default filters, on the synthetic pool of
  ``filter_speed.py`` (100,000 documents, 10,000 queries near their positives, depth 100: 1,000,000+ rows; no
  model).
- ``mine-warm``: ``minenegs mine EMB --relative-margin 0.1`` on SciFact train encoded with the bundled model, the
  pool already made (``mine_vs_st.py``'s warm side): what a user re-mining with another threshold waits for.

    python benchmarks/ab_speed.py --old 70bb173 --rounds 5
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from _proc import data_parser, measure, write_results  # noqa: E402
from _synthetic import synthetic_pool  # noqa: E402

MINENEGS = [sys.executable, "-m", "minenegs"]


def checkout(rev: str, work: Path) -> Path:
    """A worktree of ``rev`` under ``work`` (made once)."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    tree = work / f"rev-{sha}"
    if not (tree / "minenegs").is_dir():
        subprocess.run(["git", "worktree", "add", "-f", "--detach", str(tree), sha], cwd=ROOT, check=True,
                       capture_output=True)
    return tree


def _rows_of(path: Path) -> bytes:
    """The rows of an output (its provenance metadata aside), as bytes to compare."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pq.read_table(path).replace_schema_metadata(None), sink)
    return sink.getvalue().to_pybytes()


def main() -> None:
    parser = data_parser(__doc__, "ab_speed.json")
    parser.add_argument("--old", required=True, help="the earlier revision (A)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench" / "ab")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    old = checkout(args.old, args.work)
    sides = {"A": old, "B": ROOT}  # each side runs in its own tree: `python -m` imports the package from there

    pool = synthetic_pool(args.work / "synthetic-reachable", 100_000, 10_000, reachable=True)
    emb = args.work / "scifact-emb"
    if not (emb / "manifest.json").exists():
        subprocess.run(MINENEGS + ["encode", str(args.data), "--split", args.split, "-o", str(emb), "-q",
                                   "--cache-dir", str(args.work / "cache")], check=True)
    warm = MINENEGS + ["mine", str(emb), "--relative-margin", "0.05", "--num-negatives", "5", "-q", "--force",
                       "-o", str(args.work / "warmup.parquet")]
    subprocess.run(warm, check=True, cwd=ROOT)  # the pool, made once for both
    commands = {
        "filter": MINENEGS + ["filter", str(pool), "--relative-margin", "0.05", "-q", "--force", "-o"],
        "mine-warm": MINENEGS + ["mine", str(emb), "--relative-margin", "0.1", "--num-negatives", "5", "-q",
                                 "--force", "-o"],
    }
    results = {"old": args.old, "old_tree": str(old), "rounds": args.rounds, "commands": {}}
    for name, command in commands.items():
        seen = {"A": [], "B": []}
        for _ in range(args.rounds):
            for side, tree in sides.items():
                seen[side].append(measure(command + [str(args.work / f"{name}-{side}.parquet")],
                                          env={"PYTHONPATH": str(tree)}, cwd=tree))
        same = _rows_of(args.work / f"{name}-A.parquet") == _rows_of(args.work / f"{name}-B.parquet")
        row = {side: {"median_seconds": statistics.median(m.seconds for m in runs),
                      "min_seconds": min(m.seconds for m in runs),
                      "seconds": [m.seconds for m in runs],
                      "peak_mb": max(m.peak_mb for m in runs)} for side, runs in seen.items()}
        row["ratio_b_over_a"] = round(row["B"]["median_seconds"] / row["A"]["median_seconds"], 3)
        row["rows_identical"] = same  # the recorded settings (metadata) may differ between revisions
        results["commands"][name] = row
        print(f"{name}: A {row['A']['median_seconds']:.2f} s, B {row['B']['median_seconds']:.2f} s (median of "
              f"{args.rounds}; fastest {row['A']['min_seconds']:.2f} / {row['B']['min_seconds']:.2f} s), "
              f"B/A {row['ratio_b_over_a']:.3f}; peak {row['A']['peak_mb']:.0f} / "
              f"{row['B']['peak_mb']:.0f} MB; rows identical: {same}")
    write_results(args.output, results)


if __name__ == "__main__":
    main()
