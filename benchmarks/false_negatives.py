"""False negatives: how many mined negatives are relevant documents the miner was not told about.

MS MARCO DL19 subset (about 95 relevant documents a query): the miner sees one positive per query (its
highest-graded), the other relevant documents are hidden. For 5 negatives a query, each setting reports the
share of mined negatives that are hidden positives, the mean rank of those false negatives and of all mined
negatives, and the queries left short. Settings: top; top + relative margin 0.05; simans; simans + relative
margin 0.05; each without and with the near-duplicate filters (normalised text, cosine >= 0.95); and
sentence-transformers' ``mine_hard_negatives`` (use_faiss) with the settings it has (top, top + margin).
Writes ``benchmarks/results/false_negatives.json``.

    python benchmarks/false_negatives.py --data ../shared/data/msmarco_dl19_subset
"""

from __future__ import annotations

import argparse
import sys
import os
from pathlib import Path

import numpy as np

from minenegs.dataset import load_beir
from minenegs.embeddings import Embeddings, encode_dataset
from minenegs.mine import MineParams, corpus_view, read_pool_arrays, select
from minenegs.models import SentenceTransformerEncoder, bundled_model_path
from minenegs.pool import PoolParams, build_pool
from minenegs.records import Dataset

sys.path.insert(0, str(Path(__file__).parent))
from _proc import write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N = 5


def one_visible(full: Dataset) -> tuple[Dataset, set[tuple[str, str]]]:
    best: dict[str, tuple[int, str]] = {}
    for r in full.qrels:
        if r.is_positive and (r.query_id not in best or r.score > best[r.query_id][0]):
            best[r.query_id] = (r.score, r.doc_id)
    visible = [r for r in full.qrels if r.is_positive and best[r.query_id][1] == r.doc_id]
    hidden = {(r.query_id, r.doc_id) for r in full.qrels if r.is_positive} - {(r.query_id, r.doc_id) for r in visible}
    return Dataset(full.corpus, full.queries, visible, full.sources), hidden


def score(pairs: list[tuple[str, str]], hidden, rank_of, n_queries: int, short: int) -> dict:
    false = [p for p in pairs if p in hidden]
    ranks = [rank_of.get(p, np.nan) for p in pairs]
    return {"negatives": len(pairs), "false_negative_share": round(len(false) / max(1, len(pairs)), 4),
            "mean_rank_false": round(float(np.nanmean([rank_of.get(p, np.nan) for p in false])), 1) if false else None,
            "mean_rank_all": round(float(np.nanmean(ranks)), 1), "queries_short": short, "queries": n_queries}


def sentence_transformers(ds: Dataset, hidden, rank_of, margin: float | None) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datasets import Dataset as HFDataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    q = dict(zip(ds.queries.ids, ds.queries.texts))
    d = dict(zip(ds.corpus.ids, ds.corpus.texts))
    id_of_text: dict[str, str] = {}
    for did, text in zip(ds.corpus.ids, ds.corpus.texts):
        id_of_text.setdefault(text, did)
    qid_of_text = {t: i for i, t in q.items()}
    pairs = HFDataset.from_dict({"anchor": [q[r.query_id] for r in ds.qrels], "positive": [d[r.doc_id] for r in ds.qrels]})
    model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    mined = mine_hard_negatives(pairs, model, corpus=ds.corpus.texts, num_negatives=N, relative_margin=margin,
                                use_faiss=True, output_format="n-tuple", verbose=False,
                                cache_folder=str(ROOT / "build" / "bench" / "st-cache"))
    out = [(qid_of_text[row["anchor"]], id_of_text[row[f"negative_{k}"]]) for row in mined for k in range(1, N + 1)]
    return score(out, hidden, rank_of, len(q), len(q) - len(mined))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/msmarco_dl19_subset"))
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "false_negatives.json")
    args = parser.parse_args()
    ds, hidden = one_visible(load_beir(args.data, "test"))
    out = ROOT / "build" / "bench" / "dl19-one-positive" / "emb"
    encode_dataset(ds, out, SentenceTransformerEncoder(), cache_dir=ROOT / "build" / "bench-cache", force=True)
    emb = Embeddings(out)
    pool = build_pool(emb, PoolParams(depth=100))
    a = read_pool_arrays(pool)
    qids, dids = emb.ids("queries"), emb.ids("corpus")
    rank_of = {(qids[q], dids[d]): int(r) for q, d, r, ok in zip(a["query_idx"], a["doc_idx"], a["rank"], a["retrieved"]) if ok}
    corpus = corpus_view(emb)
    rows: dict[str, dict] = {}
    for strategy in ("top", "simans"):
        for margin in (None, 0.05):
            for dedup in (False, True):
                thresholds = {"relative_margin": margin, "duplicate_text": 1.0 if dedup else None,
                              "dup_threshold": 0.95 if dedup else None}
                sel = select(pool, MineParams(strategy, N, thresholds=thresholds), corpus, arrays=a)
                pairs = [(q, dids[d]) for q, negs in zip(sel.query_ids, sel.negatives) for d in negs]
                name = f"minenegs {strategy}" + (" + margin 0.05" if margin else "") + (" + near-dup" if dedup else "")
                rows[name] = score(pairs, hidden, rank_of, len(sel.query_ids), len(sel.short))
    rows["sentence-transformers top"] = sentence_transformers(ds, hidden, rank_of, None)
    rows["sentence-transformers top + margin 0.05"] = sentence_transformers(ds, hidden, rank_of, 0.05)

    print(f"{args.data.name}: {len(qids)} queries, one visible positive each, {len(hidden)} hidden positives, {N} negatives a query")
    print(f"{'setting':<42}{'FN share':>9}{'rank FN':>9}{'rank all':>9}{'short':>7}")
    for name, r in rows.items():
        print(f"{name:<42}{r['false_negative_share']:>9.3f}{(r['mean_rank_false'] or float('nan')):>9.1f}"
              f"{r['mean_rank_all']:>9.1f}{r['queries_short']:>7}")
    write_results(args.output, rows)


if __name__ == "__main__":
    main()
