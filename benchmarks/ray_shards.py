"""Sharded search on a local Ray cluster: N = 1, 2 and 4 shards of a synthetic corpus (``_synthetic.
ClusteredEncoder``, 384 dimensions), one shard a task, as many workers as shards sharing the machine's CPUs.
For each N: wall time of the shard searches, each worker's peak memory (the largest), the bytes of lists each
query batch moves to the driver, and whether the merged lists are the unsharded flat index's (they must be:
the merge is exact). The driver's own peak memory is measured by running the whole sharded pool build in a
child process, at two corpus sizes. Writes ``benchmarks/results/ray_shards.json``.

    python benchmarks/ray_shards.py --docs 4000000 --queries 2000
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from _proc import measure, write_results  # noqa: E402
from _synthetic import ClusteredEncoder, write_clustered_beir  # noqa: E402

DRIVER = """
import sys
from minenegs.distributed.runner import RaySettings
from minenegs.encode.folder import Embeddings
from minenegs.retrieve.index import IndexParams
from minenegs.retrieve.pool import PoolParams, build_pool
shards = int(sys.argv[3])
build_pool(Embeddings(sys.argv[1]), PoolParams(depth=100, index=IndexParams("flat"), shards=shards), out=sys.argv[2],
           force=True, ray=RaySettings("local", workers=shards, cpus=2 / shards))
# this process's own peak (VmHWM: its memory since exec, unlike ru_maxrss, which a child forked from a large
# process inherits)
print("driver-peak-mb", [int(line.split()[1]) // 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")][0])
"""


def embeddings(work: Path, docs: int, queries: int) -> Path:
    from minenegs.encode.embeddings import encode_dataset
    from minenegs.inputs.dataset import load_beir

    write_clustered_beir(work / f"beir-{docs}", docs, queries)
    out = work / f"emb-{docs}"
    if not (out / "manifest.json").exists():
        encode_dataset(load_beir(work / f"beir-{docs}", "train"), out, ClusteredEncoder(384), cache_dir=work / "cache",
                       chunk_size=100_000, force=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=400_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--shards", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "ray_shards.json")
    parser.add_argument("--driver-only", action="store_true", help="keep --output's shard runs, measure the driver")
    args = parser.parse_args()
    from minenegs.distributed.runner import RaySettings
    from minenegs.encode.folder import Embeddings
    from minenegs.retrieve.on_ray import search_shards
    from minenegs.retrieve.shards import SLACK, ShardLists, canonical, flat_index, shard_bytes, shard_part

    work = args.work or Path(tempfile.mkdtemp(prefix="minenegs-shards-"))
    emb_dir = embeddings(work, args.docs, args.queries)
    emb = Embeddings(emb_dir)
    corpus, queries = emb.reader("corpus"), emb.reader("queries")
    batches = [(b, min(b + 1024, len(queries))) for b in range(0, len(queries), 1024)]
    results = {"docs": len(corpus), "dim": corpus.shape[1], "queries": len(queries), "depth": args.depth,
               "vectors_mb": round(len(corpus) * corpus.shape[1] * 4 / 2 ** 20, 1), "runs": {}}
    if args.driver_only:
        results = json.loads(args.output.read_text())
    if not args.driver_only:  # the lists of one flat index searched here, ties by id (as LoadedIndex.search gives them)
        whole = flat_index(corpus, 0, len(corpus)).search(np.ascontiguousarray(queries[:], np.float32),
                                                          args.depth + SLACK)
        exact = canonical(*whole, args.depth)[1]
        del whole
    for n in [] if args.driver_only else args.shards:
        parts = work / f"parts-{n}"
        shutil.rmtree(parts, ignore_errors=True)
        started = time.perf_counter()
        # with shards, each worker's memory is capped below the whole index (Ray reserves it; a shard that
        # would not fit is refused before the search)
        cap = 0.0 if n == 1 else round(shard_bytes(-(-len(corpus) // n), corpus.shape[1], len(queries)) / 2 ** 30 + 0.05, 2)
        rows = search_shards(RaySettings("local", workers=n, cpus=2 / n, memory=cap), emb_dir, n, args.depth,
                             batches, parts, lambda _: None)
        seconds = time.perf_counter() - started
        lists = ShardLists(parts, n, len(corpus), None)
        found = np.concatenate([lists.lists(b, args.depth)[1] for b, _ in batches])
        moved = sum(shard_part(parts, s, b).stat().st_size for s in range(n) for b, _ in batches) / len(batches)
        results["runs"][str(n)] = {"seconds": round(seconds, 2), "ray_memory_gb": cap or None, "worker_peak_mb": round(max(r["peak_mb"] for r in rows), 1),
                                   "bytes_per_query_batch": int(moved), "queries_per_batch": 1024,
                                   "same_lists_as_unsharded": bool((found == exact).all())}
        print(f"N = {n}: {results['runs'][str(n)]}", flush=True)
        shutil.rmtree(parts, ignore_errors=True)
    one = results["runs"].get("1", {}).get("worker_peak_mb")
    for n, r in results["runs"].items():
        r["worker_peak_vs_n1"] = round(r["worker_peak_mb"] / one, 3) if one else None
    results["driver"] = {}
    for docs in (args.docs // 4, args.docs):  # the whole sharded pool build, in a process of its own
        d = embeddings(work, docs, args.queries)
        shutil.rmtree(work / f"pool-{docs}", ignore_errors=True)  # built anew: a pool already there is reused
        run = measure([sys.executable, "-c", DRIVER, str(d), str(work / f"pool-{docs}"), "4"],
                      env={"HF_HUB_OFFLINE": "1"})
        peak = re.search(r"driver-peak-mb (\d+)", run.stdout)
        results["driver"][str(docs)] = {"peak_mb": int(peak.group(1)), "seconds": run.seconds}
        print(f"driver, {docs} documents, 4 shards: peak {results['driver'][str(docs)]['peak_mb']} MB", flush=True)
    write_results(args.output, results)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
