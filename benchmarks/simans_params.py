"""Choosing SimANS's ``a`` and ``b`` for cosine scores.

1. The spread of cosine scores: for each query of SciFact train, ``s - p`` over its top-100 non-positive
   candidates (``p`` the lowest positive score). The published ``a = 0.5`` was set for unnormalised dot
   products; on cosine gaps it makes every weight about 1, i.e. uniform sampling.
2. What each (a, b) draws on the MS MARCO DL19 subset (about 95 relevant documents a query): the miner sees
   one positive per query (its highest-graded), the others are hidden; for 5 negatives a query we report the
   share that are hidden positives (false negatives), their mean original rank, and the effective number of
   candidates the weights give (``(sum w)^2 / sum w^2``).

Writes ``benchmarks/results/simans_params.json``.

    python benchmarks/simans_params.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from minenegs.inputs.dataset import load_beir
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings
from minenegs.select.candidates import read_pool_arrays
from minenegs.select.engine import Selector
from minenegs.select.params import MineParams
from minenegs.encode.models import SentenceTransformerEncoder
from minenegs.retrieve.pool import PoolParams, build_pool
from minenegs.records import Dataset
from minenegs.select.strategies import StrategyParams
from minenegs.select.strategies.simans import weights

sys.path.insert(0, str(Path(__file__).parent))
from _proc import write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GRID_A = (0.5, 10.0, 30.0, 100.0, 300.0)
GRID_B = (0.0, -0.05, -0.1)


def encoded(ds: Dataset, name: str) -> Embeddings:
    out = ROOT / "build" / "bench" / name / "emb"
    encode_dataset(ds, out, SentenceTransformerEncoder(), cache_dir=ROOT / "build" / "bench-cache", force=True)
    return Embeddings(out)


def gaps(pool: Path) -> np.ndarray:
    a = read_pool_arrays(pool)
    out = []
    for q in np.unique(a["query_idx"]):
        m = a["query_idx"] == q
        pos, s = a["is_positive"][m], a["score"][m]
        if pos.any():
            out.append(s[~pos & a["retrieved"][m]] - s[pos].min())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "simans_params.json")
    args = parser.parse_args()

    sci = build_pool(encoded(load_beir(args.data / "scifact", "train"), "scifact-train"), PoolParams(depth=100))
    g = gaps(sci)
    spread = {"mean": float(g.mean()), "std": float(g.std()),
              **{f"p{p}": float(np.percentile(g, p)) for p in (5, 25, 50, 75, 95)}}

    full = load_beir(args.data / "msmarco_dl19_subset", "test")
    best: dict[str, tuple[int, str]] = {}
    for r in full.qrels:  # one visible positive a query: its highest-graded (first in file order on ties)
        if r.is_positive and (r.query_id not in best or r.score > best[r.query_id][0]):
            best[r.query_id] = (r.score, r.doc_id)
    visible = [r for r in full.qrels if r.is_positive and best[r.query_id][1] == r.doc_id]
    hidden = {(r.query_id, r.doc_id) for r in full.qrels if r.is_positive} - {(r.query_id, r.doc_id) for r in visible}
    emb = encoded(Dataset(full.corpus, full.queries, visible, full.sources), "dl19-one-positive")
    pool = build_pool(emb, PoolParams(depth=100))
    doc_ids = emb.ids("corpus")
    arrays = read_pool_arrays(pool)
    rank_of = {(int(q), int(d)): int(r) for q, d, r in zip(arrays["query_idx"], arrays["doc_idx"], arrays["rank"])}
    qpos = {q: i for i, q in enumerate(emb.ids("queries"))}

    def measure(strategy: str, a: float = 0.0, b: float = 0.0) -> dict:
        sel = Selector(read_pool_arrays(pool)).selection(MineParams(strategy, 5, seed=0, strategy_params=StrategyParams(a, b)))
        pairs = [(qid, doc_ids[d]) for qid, negs in zip(sel.query_ids, sel.negatives) for d in negs]
        ranks = [rank_of[(qpos[q], doc_ids.index(d))] for q, d in pairs]
        fn = sum((q, d) in hidden for q, d in pairs) / len(pairs)
        return {"false_negative_share": round(fn, 4), "mean_rank": round(float(np.mean(ranks)), 1)}

    rows = {"top": measure("top"), "random": measure("random")}
    for a_ in GRID_A:
        for b_ in GRID_B:
            ess = []
            for q in np.unique(arrays["query_idx"]):
                m = arrays["query_idx"] == q
                pos, s = arrays["is_positive"][m], arrays["score"][m]
                w = weights(s[~pos & arrays["retrieved"][m]], float(s[pos].min()), a_, b_)
                ess.append(w.sum() ** 2 / (w ** 2).sum())
            rows[f"simans a={a_:g} b={b_:g}"] = {**measure("simans", a_, b_), "effective_candidates": round(float(np.mean(ess)), 1)}

    print("SciFact train, s - p over top-100 non-positive candidates (cosine):")
    print("  " + ", ".join(f"{k} {v:+.3f}" for k, v in spread.items()))
    print(f"DL19 subset, one visible positive a query, {len(hidden)} hidden positives, 5 negatives a query:")
    print(f"{'setting':<26}{'FN share':>9}{'mean rank':>10}{'eff. cands':>11}")
    for name, r in rows.items():
        print(f"{name:<26}{r['false_negative_share']:>9.3f}{r['mean_rank']:>10.1f}{r.get('effective_candidates', float('nan')):>11.1f}")
    write_results(args.output, {"scifact_gap": spread, "dl19": rows})


if __name__ == "__main__":
    main()
