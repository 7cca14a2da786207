"""Scale on one machine: ``encode`` and ``mine`` on synthetic corpora of a million documents and more.

No model: ``_synthetic.ClusteredEncoder`` gives every text a vector with topic structure (see its docstring).
Steps, each a fresh process measured whole (wall time, peak memory from wait4):

1. a BEIR folder with ``--docs`` documents and ``--queries`` queries (not timed; written once);
2. ``encode``: reading the folder and encoding it into an embeddings folder (``--dtype``), through the cache;
3. ``minenegs mine`` with its defaults (``--index auto``: the index kind, cells and search breadth chosen from the
   corpus size and tuned on a sample), index build, pool and negatives;
4. recall@100 of the pool against exact search, for ``--check`` queries sampled with a seed.

Resumable: each finished step is recorded in ``<work>/steps.json`` and skipped on the next run (``--redo``
runs them all again from nothing); a killed ``encode`` resumes from its cached chunks, and an index a killed
``mine`` finished building is reused (its manifest says so).
Results go to ``benchmarks/results/scale.json`` under a key per size. CI runs none of it.

    python benchmarks/scale.py --docs 1000000 --queries 100000
    python benchmarks/scale.py --docs 10000000 --queries 1000000 --dtype float16
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from _proc import measure, write_results  # noqa: E402
from _synthetic import write_clustered_beir  # noqa: E402

ENCODE = """
import json, sys
sys.path.insert(0, sys.argv[5])
from _synthetic import ClusteredEncoder
from minenegs.inputs.dataset import load_beir
from minenegs.encode.embeddings import encode_dataset
data, out, cache, dtype = sys.argv[1:5]
summary = encode_dataset(load_beir(data, "train"), out, ClusteredEncoder(), cache_dir=cache, chunk_size=16384,
                         force=True, dtype=dtype)
print(json.dumps(summary.to_dict()))
"""


def recall_check(emb_dir: Path, pool: Path, n: int, k: int = 100) -> dict:
    """Recall@k of the pool's retrieved candidates against exact search for ``n`` sampled queries."""
    import pyarrow.compute as pc

    from minenegs.artifacts import read_parquet
    from minenegs.encode.folder import Embeddings
    from minenegs.retrieve.index import exact_top, recall_at

    emb = Embeddings(emb_dir)
    queries = emb.reader("queries")
    sample = np.sort(np.random.default_rng(1).choice(len(queries), size=min(n, len(queries)), replace=False))
    exact = exact_top(queries[sample], emb.reader("corpus"), k)
    t = read_parquet(pool / "candidates.parquet", columns=["query_idx", "doc_idx", "rank"])
    t = t.filter(pc.and_(pc.is_in(t["query_idx"], value_set=__import__("pyarrow").array(sample.astype(np.int32))),
                         pc.less_equal(t["rank"], k)))
    q, d = t["query_idx"].to_numpy(), t["doc_idx"].to_numpy()
    found = np.full((len(sample), k), -1, np.int64)
    for row, qi in enumerate(sample):
        got = d[q == qi]
        found[row, :len(got)] = got
    return {"queries_checked": int(len(sample)), "recall_at_100": round(recall_at(found, exact), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    parser.add_argument("--check", type=int, default=1000, help="queries whose recall is checked exactly")
    parser.add_argument("--work", type=Path, default=None, help="work folder [default: build/scale/<docs>-<dtype>]")
    parser.add_argument("--redo", action="store_true", help="run every step again")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    args = parser.parse_args()
    work = args.work or ROOT / "build" / "scale" / f"{args.docs}-{args.queries}-{args.dtype}"
    work.mkdir(parents=True, exist_ok=True)
    steps_file = work / "steps.json"
    steps = {} if args.redo or not steps_file.exists() else json.loads(steps_file.read_text())

    def step(name: str, run) -> dict:
        if name not in steps:
            steps[name] = run()
            steps_file.write_text(json.dumps(steps, indent=2))
        print(f"{name}: {steps[name]}", flush=True)
        return steps[name]

    py = sys.executable
    step("data", lambda: write_clustered_beir(work / "data", args.docs, args.queries) or {"docs": args.docs,
                                                                                          "queries": args.queries})

    def encode() -> dict:
        for folder in ("emb", "cache"):  # cold: nothing cached
            shutil.rmtree(work / folder, ignore_errors=True)
        m = measure([py, "-c", ENCODE, str(work / "data"), str(work / "emb"), str(work / "cache"), args.dtype,
                     str(ROOT / "benchmarks")])
        s = json.loads(m.stdout)
        return {"wall_seconds": m.seconds, "peak_mb": m.peak_mb, "texts_encoded": s["texts_encoded"],
                "encode_seconds": s["encode_seconds"]}

    step("encode", encode)

    def mine() -> dict:
        # the pool is built anew; so is the index with --redo (else one a killed run finished is reused, and
        # the figures say so: "reused" and the build time of the run that built it)
        for folder in [work / "pool", work / "emb" / "pools"] + ([work / "emb" / "indexes"] if args.redo else []):
            shutil.rmtree(folder, ignore_errors=True)
        m = measure([py, "-m", "minenegs", "mine", str(work / "emb"), "-o", str(work / "negatives.parquet"),
                     "--json", "--force", "--pool", str(work / "pool")])
        s = json.loads(m.stdout)
        manifest = json.loads((work / "pool" / "manifest.json").read_text())
        return {"wall_seconds": m.seconds, "peak_mb": m.peak_mb, "index": manifest["index_used"],
                "pool_seconds": manifest["seconds"], "pool_rows": manifest["rows"], "rows_written": s["rows"],
                "queries_short": s["queries_short"]}

    step("mine", mine)
    step("recall", lambda: recall_check(work / "emb", work / "pool", args.check))
    size = lambda files: round(sum(f.stat().st_size for f in files if f.is_file()) / 2**20, 1)  # noqa: E731
    disk = {"vectors": size((work / "emb").glob("*.npy")), "index": size((work / "emb" / "indexes").rglob("*.faiss")),
            "pool": size((work / "pool").rglob("*")), "cache": size((work / "cache").rglob("*"))}
    result = {"docs": args.docs, "queries": args.queries, "dtype": args.dtype, **{k: steps[k] for k in
              ("encode", "mine", "recall")}, "disk_mb": disk}
    mine_s, peak = steps["mine"]["wall_seconds"], steps["mine"]["peak_mb"]
    print(f"{args.docs:,} docs x {args.queries:,} queries ({args.dtype}): encode {steps['encode']['wall_seconds']} s "
          f"/ {steps['encode']['peak_mb']:.0f} MB; mine {mine_s} s / {peak:.0f} MB "
          f"(index {steps['mine']['index']}); recall@100 {steps['recall']['recall_at_100']} on "
          f"{steps['recall']['queries_checked']} queries; disk {result['disk_mb']}")
    all_results = json.loads(args.output.read_text()) if args.output.exists() else {}
    all_results[f"{args.docs}x{args.queries}-{args.dtype}"] = result
    write_results(args.output, all_results)


if __name__ == "__main__":
    main()
