"""minenegs against sentence-transformers' ``mine_hard_negatives`` on the same data and settings.

Settings: the bundled all-MiniLM-L6-v2, ``num_negatives=5``, ``relative_margin=0.05``, n-tuple output;
sentence-transformers with ``use_faiss=True``. Each run is its own process:

- cold: empty caches. sentence-transformers: one call. minenegs: ``encode`` then ``mine`` (times added).
- warm: caches full, margin changed to 0.1. sentence-transformers: the call again with its ``cache_folder``;
  minenegs: ``mine`` again (the candidate pool is reused).
- cold with a compiled network kept: minenegs' cold run again, its chunk cache empty but the compiled network
  (``--compile``) kept from a run before, as on a user's second corpus with the same model.

Prints wall times, peak memory and the ratios; writes ``benchmarks/results/mine_vs_st.json``.

    python benchmarks/mine_vs_st.py --data ../shared/data/scifact --split train
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _proc import data_parser, measure, write_results  # noqa: E402


ST = """
import json, os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import mine_hard_negatives
from minenegs.inputs.dataset import load_beir
from minenegs.encode.models import bundled_model_path
data, split, margin, cache, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
ds = load_beir(data, split)
q = dict(zip(ds.queries.ids, ds.queries.texts))
d = dict(zip(ds.corpus.ids, ds.corpus.texts))
pos = [r for r in ds.qrels if r.is_positive]
pairs = Dataset.from_dict({"anchor": [q[r.query_id] for r in pos], "positive": [d[r.doc_id] for r in pos]})
model = SentenceTransformer(str(bundled_model_path()), device="cpu")
mined = mine_hard_negatives(pairs, model, corpus=ds.corpus.texts, num_negatives=5, relative_margin=margin,
                            use_faiss=True, output_format="n-tuple", cache_folder=cache, verbose=False)
mined.to_parquet(out)
print(json.dumps({"rows": len(mined)}))
"""


def rows_of(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows


def main() -> None:
    parser = data_parser(__doc__, "mine_vs_st.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="minenegs-vs-st-"))
    py = sys.executable
    from minenegs.encode.models import cpu_supports_bf16

    bf16 = cpu_supports_bf16()  # minenegs' --precision auto is bf16 here

    st_cold = measure([py, "-c", ST, str(args.data), args.split, "0.05", str(work / "st-cache"), str(work / "st.parquet")])
    st_rows = json.loads(st_cold.stdout)["rows"]
    st_warm = measure([py, "-c", ST, str(args.data), args.split, "0.1", str(work / "st-cache"), str(work / "st2.parquet")])

    env = {"MINENEGS_CACHE": str(work / "mn-cache")}
    enc = measure([py, "-m", "minenegs", "encode", str(args.data), "--split", args.split, "-o", str(work / "emb"), "-q"],
                  env)
    mine = [py, "-m", "minenegs", "mine", str(work / "emb"), "--num-negatives", "5", "-q"]
    mn_mine = measure(mine + ["--relative-margin", "0.05", "-o", str(work / "mn.parquet")], env)
    mn_warm = measure(mine + ["--relative-margin", "0.1", "-o", str(work / "mn2.parquet")], env)

    results = {
        "data": str(args.data), "split": args.split,
        "settings": {"num_negatives": 5, "relative_margin": 0.05, "warm_relative_margin": 0.1, "format": "n-tuple"},
        "st_cold": {"wall_seconds": st_cold.seconds, "peak_mb": st_cold.peak_mb, "rows": st_rows},
        "st_warm": {"wall_seconds": st_warm.seconds, "peak_mb": st_warm.peak_mb, "rows": rows_of(work / "st2.parquet")},
        "minenegs_cold": {"wall_seconds": round(enc.seconds + mn_mine.seconds, 2),
                          "encode_seconds": enc.seconds, "mine_seconds": mn_mine.seconds,
                          "peak_mb": max(enc.peak_mb, mn_mine.peak_mb), "rows": rows_of(work / "mn.parquet")},
        "minenegs_warm": {"wall_seconds": mn_warm.seconds, "peak_mb": mn_warm.peak_mb,
                          "rows": rows_of(work / "mn2.parquet")},
    }
    # cold again (empty chunk cache) with the compiled network kept from an earlier run, as a user's second corpus
    kept = {"MINENEGS_CACHE": str(work / "mn-kept")}
    build = measure([py, "-m", "minenegs", "encode", "--corpus", str(args.data / "corpus.jsonl"), "-o",
                     str(work / "build"), "--compile", "on", "-q"], kept)
    shutil.rmtree(work / "mn-kept" / "chunks", ignore_errors=True)
    enc_k = measure([py, "-m", "minenegs", "encode", str(args.data), "--split", args.split, "-o", str(work / "emb-k"),
                     "-q"], kept)
    mine_k = measure([py, "-m", "minenegs", "mine", str(work / "emb-k"), "--num-negatives", "5", "-q",
                      "--relative-margin", "0.05", "-o", str(work / "mn-k.parquet")], kept)
    results["minenegs_cold_compiled_network_kept"] = {
        "wall_seconds": round(enc_k.seconds + mine_k.seconds, 2), "encode_seconds": enc_k.seconds,
        "mine_seconds": mine_k.seconds, "rows": rows_of(work / "mn-k.parquet"),
        "building_run_seconds": build.seconds}
    results["cold_ratio_compiled_network_kept"] = round(results["minenegs_cold_compiled_network_kept"]["wall_seconds"]
                                                       / st_cold.seconds, 3)
    results["cold_ratio"] = round(results["minenegs_cold"]["wall_seconds"] / st_cold.seconds, 3)
    results["warm_ratio"] = round(mn_warm.seconds / st_warm.seconds, 3)
    results["targets"] = {"cold_ratio <= 0.6": results["cold_ratio"] <= 0.6,
                          "minenegs_warm <= 2 s": mn_warm.seconds <= 2.0,
                          "cold_ratio <= 0.45 on a bf16 CPU": results["cold_ratio"] <= 0.45 if bf16 else None}
    print(f"{args.data.name} {args.split}: num_negatives 5, relative_margin 0.05 (warm: 0.1), n-tuple")
    print(f"{'run':<16}{'wall s':>9}{'peak MB':>9}{'rows':>7}")
    for name in ("st_cold", "minenegs_cold", "st_warm", "minenegs_warm"):
        r = results[name]
        print(f"{name:<16}{r['wall_seconds']:>9.2f}{r['peak_mb']:>9.0f}{r['rows']:>7}")
    print(f"cold ratio {results['cold_ratio']} ({results['cold_ratio_compiled_network_kept']} with a compiled network "
          f"kept), warm ratio {results['warm_ratio']}; targets {results['targets']}")
    write_results(args.output, results)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
