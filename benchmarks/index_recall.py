"""Recall@k of approximate indexes against exact search, with build and search times.

Encodes the dataset's split with minenegs (cached under build/bench-cache), then for flat, IVF-Flat,
IVF-PQ and HNSW: builds the index, searches every query for its top k, and reports the share of the
flat top-k each one finds; then the IVF indexes in 2 and 4 shards with the same nprobe. Writes ``benchmarks/results/index_recall.json``.

    python benchmarks/index_recall.py --data ../shared/data/scifact --split train
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from minenegs.inputs.dataset import load_beir
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings
from minenegs.retrieve.index import IndexParams, open_index, open_sharded, recall_at
from minenegs.encode.models import SentenceTransformerEncoder

sys.path.insert(0, str(Path(__file__).parent))
from _proc import data_parser, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = data_parser(__doc__, "index_recall.json")
    parser.add_argument("--k", type=int, default=100)
    args = parser.parse_args()
    work = ROOT / "build" / "bench" / f"{args.data.name}-{args.split}"
    summary = encode_dataset(load_beir(args.data, args.split), work / "emb", SentenceTransformerEncoder(),
                             cache_dir=ROOT / "build" / "bench-cache", force=True)
    emb = Embeddings(work / "emb")
    queries = np.ascontiguousarray(emb.vectors("queries"), dtype=np.float32)
    configs = {
        "flat": IndexParams("flat"),
        "auto": IndexParams(),
        "ivf_flat": IndexParams("ivf"),
        "ivf_flat_nprobe16": IndexParams("ivf", nprobe=16),
        "ivf_pq": IndexParams("ivf", pq_m=48),
        "hnsw": IndexParams("hnsw", hnsw_m=32, ef_search=128),
    }
    results: dict = {"data": str(args.data), "split": args.split, "docs": summary.docs, "queries": summary.queries,
                     "k": args.k, "indexes": {}}
    exact = None
    for name, params in configs.items():
        loaded = open_index(emb, params, k=args.k)  # IVF breadth tuned on a sample unless given
        start = time.perf_counter()
        _, ids = loaded.search(queries, args.k)  # IVF-PQ: refine x k by code, rescored exactly
        search = time.perf_counter() - start
        if exact is None:
            exact = ids
        recall = recall_at(ids, exact)
        results["indexes"][name] = {"params": {k: v for k, v in vars(loaded.params).items()}, "recall_at_k": round(recall, 4),
                                    "build_seconds": round(loaded.build_seconds, 3),
                                    "search_seconds": round(search, 4), "reused": loaded.reused}
    # IVF shards with the unsharded index's nprobe (cells and codebooks trained once, shared by every shard)
    results["sharded"] = {}
    for name in ("ivf_flat", "ivf_pq"):
        params = IndexParams(**results["indexes"][name]["params"])
        for shards in (2, 4):
            _, ids = open_sharded(emb, shards, params, args.k).search(queries, args.k)
            recall = recall_at(ids, exact)
            results["sharded"][f"{name}_x{shards}"] = {
                "recall_at_k": round(recall, 4), "nprobe": params.nprobe,
                "minus_unsharded": round(recall - results["indexes"][name]["recall_at_k"], 4)}
            print(f"{name} in {shards} shards, nprobe {params.nprobe}: recall@{args.k} {recall:.4f} "
                  f"({recall - results['indexes'][name]['recall_at_k']:+.4f} against one index)")
    results["target_sharded_within_0.005"] = all(r["minus_unsharded"] >= -0.005 for r in results["sharded"].values())
    # the same vectors stored as float16 (from the float32 cache: nothing encoded), searched exactly
    encode_dataset(load_beir(args.data, args.split), work / "emb16", SentenceTransformerEncoder(),
                   cache_dir=ROOT / "build" / "bench-cache", force=True, dtype="float16")
    emb16 = Embeddings(work / "emb16")
    half = open_index(emb16, IndexParams("flat"), k=args.k)
    scores16, ids = half.search(emb16.reader("queries")[:], args.k)
    recall = recall_at(ids, exact)
    drift = float(np.abs(scores16 - np.take_along_axis(queries @ np.asarray(emb.vectors("corpus"), np.float32).T,
                                                       ids, 1)).max())
    results["float16_storage"] = {"recall_at_k_vs_float32_flat": round(recall, 4), "max_score_change": drift}
    print(f"float16 storage, flat: recall@{args.k} {recall:.4f} against float32, scores move by at most {drift:.2g}")
    print(f"{args.data.name} {args.split}: {summary.docs} docs, {summary.queries} queries, recall@{args.k} vs flat")
    print(f"{'index':<20}{'recall':>8}{'build s':>9}{'search s':>10}  nprobe")
    for name, r in results["indexes"].items():
        print(f"{name:<20}{r['recall_at_k']:>8.4f}{r['build_seconds']:>9.3f}{r['search_seconds']:>10.4f}  "
              f"{r['params'].get('nprobe') or ''}")
    ok = all(r["recall_at_k"] >= 0.95 for n, r in results["indexes"].items() if n in ("ivf_flat", "hnsw"))
    results["target_ivf_hnsw_recall_ge_0.95"] = ok
    print(f"target (ivf and hnsw recall >= 0.95): {ok}")
    write_results(args.output, results)


if __name__ == "__main__":
    sys.exit(main())
