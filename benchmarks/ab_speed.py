"""The speed of a change: the same minenegs commands under an earlier revision (A) and this checkout (B), run side
by side in one benchmark run (A B A B ...), each in a fresh process. Prints the median wall time and peak memory of
each and the ratio B / A; writes ``benchmarks/results/ab_speed.json``.

Commands timed:

- ``filter``: ``minenegs filter POOL --relative-margin 0.05`` with the default filters, on the synthetic pool of
  ``filter_speed.py`` (100,000 documents, 10,000 queries near their positives, depth 100: 1,000,000+ rows; no
  model).
- ``mine-warm``: ``minenegs mine EMB --relative-margin 0.1`` on SciFact train encoded with the bundled model, the
  pool already made (``mine_vs_st.py``'s warm side): what a user re-mining with another threshold waits for.
- ``encode-fp32``: ``minenegs encode`` of the data's first ``--encode-docs`` documents (and the queries judged on
  them) with ``--precision fp32 --compile off`` and an empty cache each run: the fp32 (AVX2) path's speed.

    python benchmarks/ab_speed.py --old 70bb173 --rounds 5
    python benchmarks/ab_speed.py --old 07cbf50 --rounds 3 --commands encode-fp32 --output benchmarks/results/ab_speed_encode_fp32.json
"""

from __future__ import annotations

import json
import shutil
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


def _subset(data: Path, split: str, docs: int, where: Path) -> Path:
    """A BEIR folder of ``data``'s first ``docs`` documents and the queries judged on them in ``split``."""
    (where / "qrels").mkdir(parents=True, exist_ok=True)
    lines = (data / "corpus.jsonl").read_text().splitlines()[:docs]
    (where / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    ids = {json.loads(line)["_id"] for line in lines}
    head, *rows = (data / "qrels" / f"{split}.tsv").read_text().splitlines()
    rows = [r for r in rows if r.split("\t")[1] in ids]
    (where / "qrels" / f"{split}.tsv").write_text("\n".join([head, *rows]) + "\n")
    judged = {r.split("\t")[0] for r in rows}
    queries = [q for q in (data / "queries.jsonl").read_text().splitlines() if json.loads(q)["_id"] in judged]
    (where / "queries.jsonl").write_text("\n".join(queries) + "\n")
    return where


def _same(a: Path, b: Path) -> bool:
    """Whether two outputs hold the same rows (a parquet file) or the same vectors (an embeddings folder)."""
    if a.is_dir():
        import numpy as np

        return all(np.array_equal(np.load(a / f), np.load(b / f)) for f in ("corpus.npy", "queries.npy"))
    return _rows_of(a) == _rows_of(b)


def main() -> None:
    parser = data_parser(__doc__, "ab_speed.json")
    parser.add_argument("--old", required=True, help="the earlier revision (A)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench" / "ab")
    parser.add_argument("--commands", default="filter,mine-warm", help="comma-separated: filter, mine-warm, encode-fp32")
    parser.add_argument("--encode-docs", type=int, default=1500)
    args = parser.parse_args()
    chosen = args.commands.split(",")
    args.work.mkdir(parents=True, exist_ok=True)
    old = checkout(args.old, args.work)
    sides = {"A": old, "B": ROOT}  # each side runs in its own tree: `python -m` imports the package from there

    commands, fresh = {}, {}  # fresh: a command's cache, emptied before each of its runs
    if "filter" in chosen:
        pool = synthetic_pool(args.work / "synthetic-reachable", 100_000, 10_000, reachable=True)
        commands["filter"] = MINENEGS + ["filter", str(pool), "--relative-margin", "0.05", "-q", "--force", "-o"]
    if "mine-warm" in chosen:
        emb = args.work / "scifact-emb"
        if not (emb / "manifest.json").exists():
            subprocess.run(MINENEGS + ["encode", str(args.data), "--split", args.split, "-o", str(emb), "-q",
                                       "--cache-dir", str(args.work / "cache")], check=True)
        warm = MINENEGS + ["mine", str(emb), "--relative-margin", "0.05", "--num-negatives", "5", "-q", "--force",
                           "-o", str(args.work / "warmup.parquet")]
        subprocess.run(warm, check=True, cwd=ROOT)  # the pool, made once for both
        commands["mine-warm"] = MINENEGS + ["mine", str(emb), "--relative-margin", "0.1", "--num-negatives", "5",
                                            "-q", "--force", "-o"]
    if "encode-fp32" in chosen:
        subset = _subset(args.data, args.split, args.encode_docs, args.work / f"subset-{args.encode_docs}")
        cache = fresh["encode-fp32"] = args.work / "cache-fp32"
        commands["encode-fp32"] = MINENEGS + ["encode", str(subset), "--split", args.split, "--precision", "fp32",
                                              "--compile", "off", "--cache-dir", str(cache), "-q", "--force", "-o"]
    results = {"old": args.old, "old_tree": str(old), "rounds": args.rounds, "commands": {}}
    for name, command in commands.items():
        suffix = "" if command[len(MINENEGS)] == "encode" else ".parquet"  # encode writes a folder
        out = {side: args.work / f"{name}-{side}{suffix}" for side in sides}
        seen = {"A": [], "B": []}
        for _ in range(args.rounds):
            for side, tree in sides.items():
                if name in fresh:
                    shutil.rmtree(fresh[name], ignore_errors=True)
                seen[side].append(measure(command + [str(out[side])],
                                          env={"PYTHONPATH": str(tree)}, cwd=tree))
        same = _same(out["A"], out["B"])
        row = {side: {"median_seconds": statistics.median(m.seconds for m in runs),
                      "min_seconds": min(m.seconds for m in runs),
                      "seconds": [m.seconds for m in runs],
                      "peak_mb": max(m.peak_mb for m in runs)} for side, runs in seen.items()}
        row["ratio_b_over_a"] = round(row["B"]["median_seconds"] / row["A"]["median_seconds"], 3)
        row["rows_identical"] = same  # rows or vectors; the recorded settings (metadata) may differ between revisions
        results["commands"][name] = row
        print(f"{name}: A {row['A']['median_seconds']:.2f} s, B {row['B']['median_seconds']:.2f} s (median of "
              f"{args.rounds}; fastest {row['A']['min_seconds']:.2f} / {row['B']['min_seconds']:.2f} s), "
              f"B/A {row['ratio_b_over_a']:.3f}; peak {row['A']['peak_mb']:.0f} / "
              f"{row['B']['peak_mb']:.0f} MB; rows identical: {same}")
    write_results(args.output, results)


if __name__ == "__main__":
    main()
