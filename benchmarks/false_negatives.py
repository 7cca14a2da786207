"""False negatives on densely judged data: how many mined negatives are relevant documents the miner was not told
about, and how well ``calibrate`` predicts it from the visible labels alone.

Protocol (``../shared/data/README.md``): each query with more than two relevant documents is given its two
highest-graded ones (ties by id) as positives; the others are hidden. The bundled all-MiniLM-L6-v2, a dense
top-100 pool, 5 negatives a query. For each recipe:

- ``hidden_share``: share of the negatives that are hidden relevant documents;
- ``mean_rank``: mean position of the negatives in the model's exact ranking of the whole corpus;
- ``queries_short`` / ``queries_empty``;
- ``hidden_leak``: share of the hidden relevant documents reached within the depth that were handed out
  (what ``calibrate`` estimates with held-out visible positives), and for minenegs recipes ``calibrate``'s
  estimate ``leak`` with its 95 % interval;
- ``hidden_leak_query_mean``: the same leak per query, averaged over the queries with a hidden relevant document
  within the depth (``calibrate`` weighs queries by their held-out positives, not by their hidden ones).

Also ``rank_bands``: where the visible positives (what ``calibrate`` holds out) and the hidden relevant documents
sit in the exact ranking, within the depth; where the two differ, calibrate's estimate differs from the
hidden-label leak.

With ``--random-draws K``, the grid runs again on K protocols whose two visible positives per query are drawn at
random among its relevant documents (seeded, not the highest-graded): where held-out and hidden documents are
alike, what is left of the difference between estimate and hidden-label leak is how the two are weighted.

Recipes: sentence-transformers' ``mine_hard_negatives`` (top, relative margin 0.05, random in ranks 10-50; its two
rows per query merged), minenegs' default, every setting of a calibration grid (strategies, the positive-similarity
guard, rank windows, a margin), and the settings ``--max-leak`` picks for a few bounds. Writes
``benchmarks/results/false_negatives.json`` and ``false_negatives.png`` (hidden share against mean rank).

    python benchmarks/false_negatives.py            # both dense sets from ../shared/data
    python benchmarks/false_negatives.py --st-from benchmarks/results/false_negatives.json --random-draws 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

import numpy as np

from minenegs import recipe
from minenegs.select.calibrate import calibrate, pick
from minenegs.inputs.dataset import load_beir
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings
from minenegs.errors import AcceptanceError
from minenegs.select.candidates import corpus_view, read_pool_arrays
from minenegs.select.engine import Selector
from minenegs.select.params import MineParams
from minenegs.encode.models import SentenceTransformerEncoder, bundled_model_path
from minenegs.retrieve.pool import PoolParams, build_pool
from minenegs.records import Dataset, TextTable
from minenegs.report.stats import plot_frontier

sys.path.insert(0, str(Path(__file__).parent))
from _proc import write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N = 5
DEPTH = 100
GRID = {
    "strategy": ["top", "simans"],
    "max_positive_similarity": [None, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8],
    "range_min": [0, 5, 10, 20],
    "relative_margin": [None, 0.05],
}
MAX_LEAKS = (0.2, 0.3, 0.4, 0.5)
RANK_BANDS = ((1, 5), (6, 10), (11, 20), (21, 50), (51, DEPTH))


def two_visible(full: Dataset, draw: int | None = None) -> tuple[Dataset, set[tuple[str, str]]]:
    """Queries with more than two relevant documents, each given its two highest-graded ones (ties by id), or with
    ``draw`` two drawn at random (seeded by ``draw``)."""
    by_query: dict[str, list] = {}
    for r in full.qrels:
        if r.is_positive:
            by_query.setdefault(r.query_id, []).append(r)
    visible, hidden = [], set()
    rng = random.Random(draw)
    for qid, rels in sorted(by_query.items()):
        if len(rels) <= 2:
            continue
        rels = sorted(rels, key=lambda r: (-r.score, r.doc_id))
        if draw is not None:
            rng.shuffle(rels)
        visible += rels[:2]
        hidden |= {(qid, r.doc_id) for r in rels[2:]}
    keep = {r.query_id for r in visible}
    rows = [i for i, q in enumerate(full.queries.ids) if q in keep]
    queries = TextTable([full.queries.ids[i] for i in rows], [full.queries.texts[i] for i in rows])
    return Dataset(full.corpus, queries, visible, full.sources), hidden


class Judge:
    """Scores a recipe's negatives against the hidden labels, with exact whole-corpus ranks."""

    def __init__(self, emb: Embeddings, arrays: dict, hidden: set[tuple[str, str]]) -> None:
        self.qids, self.dids = emb.ids("queries"), emb.ids("corpus")
        self.q_of, self.d_of = {q: i for i, q in enumerate(self.qids)}, {d: i for i, d in enumerate(self.dids)}
        q_of, d_of = self.q_of, self.d_of
        scores = np.asarray(emb.vectors("queries"), np.float32) @ np.asarray(emb.vectors("corpus"), np.float32).T
        self.rank = np.empty(scores.shape, dtype=np.int32)  # exact position of every document, per query
        order = np.argsort(-scores, axis=1, kind="stable")
        self.rank[np.arange(len(scores))[:, None], order] = np.arange(1, scores.shape[1] + 1)
        self.hidden = np.zeros(scores.shape, dtype=bool)
        for q, d in hidden:
            if q in q_of:
                self.hidden[q_of[q], d_of[d]] = True
        reached = np.zeros(scores.shape, dtype=bool)
        ok = arrays["retrieved"]
        reached[arrays["query_idx"][ok], arrays["doc_idx"][ok]] = True
        self.hidden_reached_q = (self.hidden & reached).sum(axis=1)
        self.hidden_reached = int(self.hidden_reached_q.sum())

    def rank_bands(self, visible: list) -> dict:
        """Where the labelled positives (what ``calibrate`` holds out) and the hidden relevant documents sit in the
        exact ranking, within the depth: share per rank band and the median."""
        ranks = {"visible": self.rank[[self.q_of[r.query_id] for r in visible], [self.d_of[r.doc_id] for r in visible]],
                 "hidden": self.rank[self.hidden]}
        out = {}
        for name, r in ranks.items():
            r = r[r <= DEPTH]
            out[name] = {"reached": int(len(r)), "median": float(np.median(r)) if len(r) else None,
                         **{f"{lo}-{hi}": round(float(((r >= lo) & (r <= hi)).mean()), 4) if len(r) else None
                            for lo, hi in RANK_BANDS}}
        return out

    def score(self, negatives: list[tuple[int, np.ndarray]], n_queries: int, short: int) -> dict:
        """``negatives``: (query row, corpus rows) per query."""
        q = np.concatenate([np.full(len(d), qi) for qi, d in negatives]) if negatives else np.zeros(0, int)
        d = np.concatenate([np.asarray(d, int) for _, d in negatives]) if negatives else np.zeros(0, int)
        hid = self.hidden[q, d]
        empty = n_queries - sum(1 for _, x in negatives if len(x))
        has = self.hidden_reached_q > 0
        per_query = np.bincount(q[hid], minlength=len(has))[has] / self.hidden_reached_q[has]
        return {"negatives": int(len(d)), "hidden_share": round(float(hid.mean()), 4) if len(d) else None,
                "mean_rank": round(float(self.rank[q, d].mean()), 2) if len(d) else None,
                "hidden_leak": round(float(hid.sum()) / max(1, self.hidden_reached), 4),
                "hidden_leak_query_mean": round(float(per_query.mean()), 4) if has.any() else None,
                "queries_short": short, "queries_empty": empty, "queries": n_queries}


def mined(engine: Selector, judge: Judge, params: MineParams) -> dict:
    sel = engine.selection(params)
    return judge.score(list(zip(sel.query_idx.tolist(), sel.negatives)), len(sel.query_ids), len(sel.short))


def st_recipe(ds: Dataset, judge: Judge, **kwargs) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datasets import Dataset as HFDataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    q = dict(zip(ds.queries.ids, ds.queries.texts))
    qrow = {t: judge.qids.index(i) for i, t in q.items()}
    drow = {}
    for i, text in enumerate(ds.corpus.texts):
        drow.setdefault(text, i)
    d = dict(zip(ds.corpus.ids, ds.corpus.texts))
    pairs = HFDataset.from_dict({"anchor": [q[r.query_id] for r in ds.qrels], "positive": [d[r.doc_id] for r in ds.qrels]})
    model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    out = mine_hard_negatives(pairs, model, corpus=ds.corpus.texts, num_negatives=N, use_faiss=True,
                              output_format="n-tuple", verbose=False,
                              cache_folder=str(ROOT / "build" / "bench" / "st-cache"), **kwargs)
    negs: dict[int, set[int]] = {}
    for row in out:  # a query's negatives: the union over its two rows
        negs.setdefault(qrow[row["anchor"]], set()).update(drow[row[f"negative_{k}"]] for k in range(1, N + 1))
    result = judge.score([(qi, np.array(sorted(x))) for qi, x in negs.items()], len(q), len(q) - len(negs))
    result["queries_short"] = None  # rows, not queries, are dropped by sentence-transformers
    return result


def label(setting: dict) -> str:
    return " ".join(f"{k}={'off' if v is None else v}" for k, v in setting.items())


BASE = MineParams(recipe.STRATEGY, N, thresholds={"duplicate_text": 1.0, "dup_threshold": recipe.DUP_THRESHOLD,
                                                    "max_positive_similarity": recipe.MAX_POSITIVE_SIMILARITY})
HARDEST = {"strategy": "top", "max_positive_similarity": None, "range_min": 0, "relative_margin": None}


def prepare(ds: Dataset, hidden: set[tuple[str, str]], name: str) -> tuple[Selector, Judge]:
    """The dense top-``DEPTH`` pool of a protocol and its judge (embeddings from the chunk cache after the first)."""
    out = ROOT / "build" / "bench" / name / "emb"
    encode_dataset(ds, out, SentenceTransformerEncoder(), cache_dir=ROOT / "build" / "bench-cache", force=True)
    emb = Embeddings(out)
    arrays = read_pool_arrays(build_pool(emb, PoolParams(depth=DEPTH)))
    return Selector(arrays, corpus_view(emb)), Judge(emb, arrays, hidden)


def grid_vs_hidden(engine: Selector, judge: Judge) -> tuple[list, list[dict], dict]:
    """``calibrate`` over ``GRID`` and every setting mined and judged: the rows, the grid entries, and how far the
    estimate is from the hidden-label leak, pooled over hidden documents and averaged over queries."""
    rows = calibrate(engine, BASE, GRID)
    grid = [{"setting": row.setting, **mined(engine, judge, row.params), "leak": round(row.estimate.rate, 4),
             "leak_low": round(row.estimate.low, 4), "leak_high": round(row.estimate.high, 4)} for row in rows]
    error = {}
    for key, name in (("hidden_leak", "leak_error"), ("hidden_leak_query_mean", "leak_error_query_mean")):
        signed = np.array([g["leak"] - g[key] for g in grid])
        error[name] = {"mean_signed": round(float(signed.mean()), 4), "mean_abs": round(float(np.abs(signed).mean()), 4),
                       "max_abs": round(float(np.abs(signed).max()), 4),
                       "within_5_points": round(float(np.mean(np.abs(signed) <= 0.05)), 4)}
    return rows, grid, error


def run(data: Path, with_st: bool, st_from: dict | None = None, draws: int = 0) -> dict:
    full = load_beir(data, "test")
    ds, hidden = two_visible(full)
    engine, judge = prepare(ds, hidden, f"{data.name}-two")
    result: dict = {"queries": len(ds.queries), "hidden": len(hidden), "hidden_reached": judge.hidden_reached,
                    "recipes": {}, "picked": {}, "rank_bands": judge.rank_bands(ds.qrels)}
    if st_from is not None:
        result["recipes"].update({k: v for k, v in st_from[data.name]["recipes"].items() if k.startswith("st ")})
    elif with_st:
        result["recipes"]["st top"] = st_recipe(ds, judge)
        result["recipes"]["st relative-margin 0.05"] = st_recipe(ds, judge, relative_margin=0.05)
        result["recipes"]["st random ranks 10-50"] = st_recipe(ds, judge, range_min=10, range_max=50,
                                                               sampling_strategy="random")
    result["recipes"]["minenegs default"] = mined(engine, judge, BASE)
    result["recipes"]["minenegs default without the guard"] = mined(
        engine, judge, MineParams(recipe.STRATEGY, N, thresholds={**BASE.thresholds, "max_positive_similarity": None}))
    rows, result["grid"], errors = grid_vs_hidden(engine, judge)
    result.update(errors)
    result["holdouts"] = rows[0].estimate.holdouts
    for bound in MAX_LEAKS:
        try:
            chosen = pick(rows, bound, 0.0)
        except AcceptanceError as exc:
            result["picked"][str(bound)] = {"error": str(exc)}
            continue
        entry = next(g for g in result["grid"] if g["setting"] == chosen.setting)
        result["picked"][str(bound)] = entry
    # the hardest grid settings at a mean rank of 10 or less with no query empty, by hidden share
    fit = [g for g in result["grid"] if g["mean_rank"] is not None and g["mean_rank"] <= 10 and not g["queries_empty"]]
    result["best_rank_10"] = min(fit, key=lambda g: g["hidden_share"]) if fit else None
    if draws:
        result["random_visible"] = []
        for draw in range(draws):
            ds_r, hidden_r = two_visible(full, draw)
            engine_r, judge_r = prepare(ds_r, hidden_r, f"{data.name}-random{draw}")
            rows_r, grid_r, errors_r = grid_vs_hidden(engine_r, judge_r)
            hardest = next(g for g in grid_r if g["setting"] == HARDEST)
            result["random_visible"].append({"draw": draw, "holdouts": rows_r[0].estimate.holdouts, **errors_r,
                                             "hardest": {k: hardest[k] for k in ("leak", "leak_low", "leak_high",
                                                         "hidden_leak", "hidden_leak_query_mean", "mean_rank")},
                                             "rank_bands": judge_r.rank_bands(ds_r.qrels)})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="*",
                        default=[Path("../shared/data/dbpedia_subset"), Path("../shared/data/msmarco_dl19_subset")])
    parser.add_argument("--no-st", action="store_true", help="Skip the sentence-transformers recipes.")
    parser.add_argument("--st-from", type=Path, help="Take the sentence-transformers figures from an earlier results "
                        "file (they depend only on the data and the model) instead of mining again.")
    parser.add_argument("--random-draws", type=int, default=0, metavar="K",
                        help="Also run the grid on K protocols with the two visible positives drawn at random.")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "false_negatives.json")
    args = parser.parse_args()
    results, series = {}, {}
    for data in args.data:
        res = run(data, not args.no_st, json.loads(args.st_from.read_text()) if args.st_from else None,
                  args.random_draws)
        results[data.name] = res
        print(f"\n{data.name}: {res['queries']} queries, two visible positives each, {res['hidden']} hidden relevant "
              f"({res['hidden_reached']} within depth {DEPTH}), {N} negatives a query, {res['holdouts']} held-out positives")
        print(f"{'recipe':<58}{'hidden':>8}{'rank':>8}{'empty':>7}{'leak':>8}{'est.':>8}")
        named = list(res["recipes"].items()) + [(f"calibrated --max-leak {b}: {label(g['setting'])}", g)
                                                for b, g in res["picked"].items() if "error" not in g]
        if res["best_rank_10"]:
            named.append((f"lowest hidden share at rank <= 10: {label(res['best_rank_10']['setting'])}", res["best_rank_10"]))
        for name, r in named:
            est = f"{r['leak']:>8.3f}" if "leak" in r else f"{'':>8}"
            print(f"{name[:58]:<58}{r['hidden_share']:>8.3f}{r['mean_rank']:>8.1f}{r['queries_empty']:>7}"
                  f"{r['hidden_leak']:>8.3f}{est}")
        print(f"calibrate vs hidden leak over {len(res['grid'])} settings: {res['leak_error']}; "
              f"vs its mean over queries: {res['leak_error_query_mean']}")
        print("ranks within the depth (share per band, median): " + "; ".join(
            f"{who} {b['reached']}: " + ", ".join(f"{k} {v:.0%}" for k, v in b.items() if "-" in k)
            + f", median {b['median']}" for who, b in res["rank_bands"].items()))
        for r in res.get("random_visible", []):
            h = r["hardest"]
            print(f"visible positives drawn at random (draw {r['draw']}, {r['holdouts']} held out): estimate within 5 "
                  f"points of the hidden leak on {r['leak_error']['within_5_points']:.0%} of the settings (mean signed "
                  f"{r['leak_error']['mean_signed']:+.3f}), of its mean over queries on "
                  f"{r['leak_error_query_mean']['within_5_points']:.0%} ({r['leak_error_query_mean']['mean_signed']:+.3f}); "
                  f"top 5 from rank 1: estimate {h['leak']:.3f}, hidden {h['hidden_leak']:.3f}, "
                  f"over queries {h['hidden_leak_query_mean']:.3f}")
        series[f"{data.name}: grid"] = [(g["mean_rank"], g["hidden_share"], "") for g in res["grid"]]
        series[f"{data.name}: sentence-transformers"] = [(r["mean_rank"], r["hidden_share"], k.removeprefix("st "))
                                                         for k, r in res["recipes"].items() if k.startswith("st ")]
    write_results(args.output, results)
    plot_frontier(series, args.output.with_suffix(".png"), title="hidden relevant share of negatives (5 a query)",
                  ylabel="share of negatives that are hidden relevant documents")
    print(f"\nwrote {args.output} and {args.output.with_suffix('.png')}")


if __name__ == "__main__":
    main()
