"""``minenegs.mine_hard_negatives`` against sentence-transformers' own, in one process, on the same model object.

SciFact train pairs (title and text joined) with the corpus, 5 negatives, n-tuple, ``use_faiss=True``:

1. first calls (cold caches): sentence-transformers with ``cache_folder``, then minenegs with ``cache_dir``;
2. second calls with other thresholds, in rounds run side by side: sentence-transformers (embeddings loaded from
   its cache), then minenegs (embeddings folder and pool reused); each round uses a new ``relative_margin``.

Prints the times and the ratio of the medians of the second calls; writes
``benchmarks/results/dropin_vs_st.json``.

    python benchmarks/dropin_vs_st.py --data ../shared/data/scifact --rounds 5
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _proc import data_parser, write_results  # noqa: E402


def main() -> None:
    parser = data_parser(__doc__, "dropin_vs_st.json")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives as st_mine

    import minenegs
    from minenegs.inputs.dataset import load_beir
    from minenegs.encode.models import bundled_model_path

    ds = load_beir(args.data, args.split)
    q = dict(zip(ds.queries.ids, ds.queries.texts))
    d = dict(zip(ds.corpus.ids, ds.corpus.texts))
    pos = [r for r in ds.qrels if r.is_positive]
    pairs = Dataset.from_dict({"anchor": [q[r.query_id] for r in pos], "positive": [d[r.doc_id] for r in pos]})
    model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    work = Path(tempfile.mkdtemp(prefix="minenegs-dropin-"))
    common = {"corpus": ds.corpus.texts, "num_negatives": 5, "output_format": "n-tuple", "use_faiss": True,
              "verbose": False}

    def st(margin: float):
        return st_mine(pairs, model, relative_margin=margin, cache_folder=str(work / "st"), **common)

    def ours(margin: float):
        return minenegs.mine_hard_negatives(pairs, model, relative_margin=margin, cache_dir=work / "mn", **common)

    def timed(fn, margin):
        t0 = time.perf_counter()
        out = fn(margin)
        return time.perf_counter() - t0, len(out)

    st_first, st_rows = timed(st, 0.05)
    mn_first, mn_rows = timed(ours, 0.05)
    print(f"first call: sentence-transformers {st_first:.2f} s ({st_rows} rows), minenegs {mn_first:.2f} s "
          f"({mn_rows} rows)", flush=True)
    seconds: dict[str, list[float]] = {"sentence_transformers": [], "minenegs": []}
    rows: dict[str, list[int]] = {"sentence_transformers": [], "minenegs": []}
    margins = [0.06 + 0.01 * r for r in range(args.rounds)]
    for margin in margins:
        for name, fn in (("sentence_transformers", st), ("minenegs", ours)):
            s, n = timed(fn, margin)
            seconds[name].append(round(s, 4))
            rows[name].append(n)
        print(f"relative_margin {margin:.2f}: sentence-transformers {seconds['sentence_transformers'][-1]:.3f} s, "
              f"minenegs {seconds['minenegs'][-1]:.3f} s", flush=True)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    results = {
        "data": str(args.data), "split": args.split, "pairs": len(pairs), "corpus": len(ds.corpus.texts),
        "settings": {"num_negatives": 5, "output_format": "n-tuple", "use_faiss": True,
                     "first_relative_margin": 0.05, "second_call_margins": margins},
        "first_call_seconds": {"sentence_transformers": round(st_first, 2), "minenegs": round(mn_first, 2)},
        "first_call_rows": {"sentence_transformers": st_rows, "minenegs": mn_rows},
        "second_call_seconds": seconds, "second_call_rows": rows,
        "second_call_median": {k: round(v, 4) for k, v in med.items()},
        "second_call_ratio": round(med["minenegs"] / med["sentence_transformers"], 3),
    }
    results["targets"] = {"second call <= 0.2x sentence-transformers' cached call": results["second_call_ratio"] <= 0.2}
    print(f"second call, median of {args.rounds}: sentence-transformers {med['sentence_transformers']:.3f} s, "
          f"minenegs {med['minenegs']:.3f} s, ratio {results['second_call_ratio']}")
    write_results(args.output, results)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
