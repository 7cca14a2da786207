"""Do minenegs' negatives train a better retriever? Fine-tune all-MiniLM-L6-v2 on SciFact train per recipe.

Every recipe starts from the bundled model and trains one epoch of MultipleNegativesRankingLoss (batch 32,
learning rate 2e-5, 10 % warm-up, the seed given) on rows mined from SciFact ``train`` with the bundled model,
then is evaluated on SciFact ``test``: nDCG@10 and Recall@100 (ir-measures, binary relevance) over an exact
search of the test corpus, encoded under bf16 autocast. Training runs under bf16 autocast too (about 3x faster
on this CPU) with attention-probability dropout off (with it, CPU attention takes an unfused path: 30 s a step
instead of 10 s); hidden dropout stays. The loop is a plain one around the library's loss. Every recipe gets
the same treatment, so compare recipes within this table.

Mined training files are cached under ``build/bench/finetune/``, embeddings and pools by minenegs' own caches,
so re-running a recipe costs only its training and evaluation. Results are appended to the JSON file, one
entry per (recipe, seed).

    python benchmarks/finetune.py --recipe mn-top3-margin --seeds 42,43
    python benchmarks/finetune.py --skip-done      # everything not measured yet
    python benchmarks/finetune.py --list
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _proc import write_results  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # its threads fight torch's on two cores
ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "bench" / "finetune"
BATCH = 32

# name -> how its training rows are made. "mn" recipes: minenegs options; "st": mine_hard_negatives options.
RECIPES: dict[str, dict] = {  # in the order a full run measures them
    "in-batch": {"kind": "pairs"},
    "st-top3": {"kind": "st", "num_negatives": 3},
    "st-top3-margin": {"kind": "st", "num_negatives": 3, "relative_margin": 0.05},
    "mn-top3-margin": {"kind": "mn", "strategy": "top", "n": 3, "relative_margin": 0.05},
    "mn-top3": {"kind": "mn", "strategy": "top", "n": 3},
    "mn-top5": {"kind": "mn", "strategy": "top", "n": 5},
    "mn-hybrid-top5": {"kind": "mn", "strategy": "top", "n": 5, "retriever": "hybrid"},
    "mn-top3-dup": {"kind": "mn", "strategy": "top", "n": 3, "dup_threshold": 0.95},
    "mn-simans5": {"kind": "mn", "strategy": "simans", "n": 5},
    "mn-top10": {"kind": "mn", "strategy": "top", "n": 10},
    "mn-skip3-top5": {"kind": "mn", "strategy": "top", "n": 5, "range_min": 3},
    "mn-simans3": {"kind": "mn", "strategy": "simans", "n": 3},
    "mn-top5-margin": {"kind": "mn", "strategy": "top", "n": 5, "relative_margin": 0.05},
    "mn-top5-guard0.7": {"kind": "mn", "strategy": "top", "n": 5, "dup_threshold": 0.95,
                         "max_positive_similarity": 0.7},
    # the levers of issue 14, each on mn-top3 (sentence-transformers' count: the direct comparison with st-top3)
    "mn-mpnet-top3": {"kind": "mn", "strategy": "top", "n": 3, "model": "all-mpnet-base-v2"},
    "mn-tas10-top3": {"kind": "mn", "strategy": "top", "n": 3, "query_clusters": 10, "order": "clusters"},
    # round 2: SciFact train re-encoded by the mn-top3 model trained with seed 42, its pool combined with the
    # bundled model's; the student trains from the bundled model again (one epoch, as every recipe)
    "mn-r2-top3": {"kind": "mn", "strategy": "top", "n": 3, "round1": "mn-top3"},
    # ANCE as published: the round-1 model itself trains a second epoch, on the round-2 negatives (two epochs in
    # all, so compare it with its round-1 model, mn-top3 seed 42, as well as with the one-epoch recipes)
    "mn-r2-continue-top3": {"kind": "mn", "strategy": "top", "n": 3, "round1": "mn-top3", "continue_from": "mn-top3"},
    # its control: the same second epoch on the round-1 model, on round 1's negatives (no re-mining)
    "mn-r1-continue-top3": {"kind": "mn", "strategy": "top", "n": 3, "continue_from": "mn-top3", "rows_of": "mn-top3"},
    # the same two-epoch budget for sentence-transformers: st-top3's seed-42 model, a second epoch on its negatives
    "st-top3-continue": {"kind": "st", "num_negatives": 3, "continue_from": "st-top3", "rows_of": "st-top3"},
    # the combination: the teacher with cluster-ordered batches
    "mn-mpnet-tas10-top3": {"kind": "mn", "strategy": "top", "n": 3, "model": "all-mpnet-base-v2",
                            "query_clusters": 10, "order": "clusters"},
}


@dataclass(frozen=True)
class Profile:
    """How a data folder is trained and evaluated: the qrels split mined for training rows, the split evaluated
    (with every label), how many training queries are sampled (None: all), each given ONE positive or all of
    them, the training texts' token cut (None: the model's), and whether nDCG is also reported graded."""

    train: str = "train"
    test: str = "test"
    queries: int | None = None
    seq_len: int | None = None
    graded: bool = False


# nfcorpus_train: 800 training queries (a seeded sample), each with ONE given positive (highest grade, then lowest
# id), the other labels hidden as a user's would be; training texts cut at 128 tokens; nDCG@10 on validation
PROFILES = {"nfcorpus_train": Profile(test="validation", queries=800, seq_len=128, graded=True)}
SAMPLE_SEED = 0


def profile(data: Path) -> Profile:
    return PROFILES.get(Path(data).name, Profile())


def work(data: Path) -> Path:
    """Where a data folder's mined rows and checkpoints are kept (SciFact's where they always were)."""
    return WORK if Path(data).name not in PROFILES else WORK.with_name(f"finetune-{Path(data).name}")


def train_folder(data: Path) -> Path:
    """The BEIR folder rows are mined from: ``data`` itself, or for a profile with sampled queries a folder with
    the sample and its one given positive each in ``qrels/train.tsv`` and all its labels in ``qrels/hidden.tsv``
    (what a simulated judge knows), made once."""
    prof = profile(data)
    if prof.queries is None:
        return data
    folder = work(data) / "train-data"
    if (folder / "qrels" / "hidden.tsv").exists():
        return folder
    import csv

    with open(data / "qrels" / f"{prof.train}.tsv", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    labels: dict[str, dict[str, int]] = {}
    for q, d, s in rows:
        labels.setdefault(q, {})[d] = int(s)
    judged = sorted(q for q, docs in labels.items() if max(docs.values()) > 0)
    sample = sorted(np.random.default_rng(SAMPLE_SEED).choice(judged, prof.queries, replace=False).tolist())
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        (folder / name).unlink(missing_ok=True)
        (folder / name).symlink_to((data / name).resolve())
    given = {q: min(labels[q].items(), key=lambda kv: (-kv[1], kv[0])) for q in sample}
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{s}\n" for q, (d, s) in given.items()))
    (folder / "qrels" / "hidden.tsv.partial").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{s}\n" for q in sample for d, s in sorted(labels[q].items())))
    (folder / "qrels" / "hidden.tsv.partial").rename(folder / "qrels" / "hidden.tsv")
    return folder


# densely judged data (nfcorpus_train): what might beat in-batch negatives where a quarter of the top ranks are
# secretly relevant. "fixed" is the default recipe as it was before it adapted (top 5, duplicates and the 0.7
# guard); "adaptive" is `minenegs mine` with no options, as a user runs it.
RECIPES.update({
    "st-top5": {"kind": "st", "num_negatives": 5},
    # the default as a user runs it (`minenegs mine` without options), trained with MultipleNegativesRankingLoss;
    # "guided": with the loss its output recommends where it chose the dense recipe (GISTEmbedLoss, guide = the
    # bundled model), as a user following that advice would
    "mn-adaptive": {"kind": "mn", "adaptive": True},
    "mn-adaptive-guided": {"kind": "mn", "adaptive": True, "guided": True, "rows_of": "mn-adaptive"},
    "mn-fixed": {"kind": "mn", "strategy": "top", "n": 5, "dup_threshold": 0.95, "max_positive_similarity": 0.7},
    "mn-top1": {"kind": "mn", "strategy": "top", "n": 1, "dup_threshold": 0.95, "max_positive_similarity": 0.7},
    "mn-far1": {"kind": "mn", "strategy": "random", "n": 1, "range_min": 30, "dup_threshold": 0.95,
                "max_positive_similarity": 0.5},
    # in-batch negatives only, batches without a repeated anchor or positive text (pairs in file order)
    "in-batch-spread": {"kind": "pairs", "order": "spread"},
    # in-batch negatives only, GISTEmbedLoss guided by the bundled model: in-batch candidates the guide scores
    # above the positive are masked
    "in-batch-gist": {"kind": "pairs", "loss": "gist"},
    # the same guide with the top-ranked hard negative (GISTEmbedLoss takes one negative a row): in-batch and hard
    # negatives the guide scores above the positive are masked
    "mn-top1-gist": {"kind": "mn", "strategy": "top", "n": 1, "dup_threshold": 0.95, "max_positive_similarity": 0.7,
                     "loss": "gist"},
    # variations on mn-far1: the window's start, the guard, how many
    "mn-far1-r10": {"kind": "mn", "strategy": "random", "n": 1, "range_min": 10, "dup_threshold": 0.95,
                    "max_positive_similarity": 0.5},
    "mn-far1-r50": {"kind": "mn", "strategy": "random", "n": 1, "range_min": 50, "dup_threshold": 0.95,
                    "max_positive_similarity": 0.5},
    "mn-far1-g0.7": {"kind": "mn", "strategy": "random", "n": 1, "range_min": 30, "dup_threshold": 0.95,
                     "max_positive_similarity": 0.7},
    "mn-far3": {"kind": "mn", "strategy": "random", "n": 3, "range_min": 30, "dup_threshold": 0.95,
                "max_positive_similarity": 0.5},
    "mn-far1-spread": {"kind": "mn", "strategy": "random", "n": 1, "range_min": 30, "dup_threshold": 0.95,
                       "max_positive_similarity": 0.5, "order": "spread"},
    "in-batch-gist-spread": {"kind": "pairs", "order": "spread", "loss": "gist"},
    "mn-far1-gist": {"kind": "mn", "strategy": "random", "n": 1, "range_min": 30, "dup_threshold": 0.95,
                     "max_positive_similarity": 0.5, "loss": "gist"},
    # hard negatives the miner's model scores below the positive (--absolute-margin 0): GIST's rule at mining time
    "mn-below1": {"kind": "mn", "strategy": "top", "n": 1, "dup_threshold": 0.95, "max_positive_similarity": 0.7,
                  "absolute_margin": 0.0},
    "mn-below5": {"kind": "mn", "strategy": "top", "n": 5, "dup_threshold": 0.95, "max_positive_similarity": 0.7,
                  "absolute_margin": 0.0},
    # SIMULATED judges (a benchmark device: verdicts drawn from the hidden labels with set error rates, as in
    # judges_sim.py): the first n of the default recipe's candidates the judge clears
    "mn-top5-judge-sim": {"kind": "mn", "strategy": "top", "n": 5, "dup_threshold": 0.95,
                          "max_positive_similarity": 0.7, "judge_sim": (0.9, 0.95)},
    "mn-top1-judge-sim": {"kind": "mn", "strategy": "top", "n": 1, "dup_threshold": 0.95,
                          "max_positive_similarity": 0.7, "judge_sim": (0.9, 0.95)},
})
TEACHERS = {"all-mpnet-base-v2": ROOT / "build" / "models" / "all-mpnet-base-v2"}  # made by setup_teacher.py


def train_embeddings(ds, data: Path, model: str | None = None, path: Path | None = None) -> Path:
    """SciFact train encoded (bf16 autocast) with the bundled model, a teacher by name, or the model folder
    ``path`` (under the name ``model``), made once. The encode summary is kept beside it (``texts_encoded``)."""
    from minenegs.encode.embeddings import encode_dataset
    from minenegs.encode.models import SentenceTransformerEncoder

    emb_dir = ROOT / "build" / "bench" / f"{Path(data).name}-train" / ("emb" if model is None else f"emb-{model}")
    if not (emb_dir / "manifest.json").exists():
        if model in TEACHERS:
            from setup_teacher import assemble

            path = assemble(TEACHERS[model])
        encoder = SentenceTransformerEncoder(None if path is None else str(path))
        summary = encode_dataset(ds, emb_dir, encoder, cache_dir=ROOT / "build" / "bench-cache", force=True)
        (work(data) / f"encode-{emb_dir.name}.json").write_text(json.dumps(summary.to_dict(), indent=1))
    return emb_dir


def round1_checkpoint(name: str, data: Path, seed: int = 42) -> Path:
    """The model recipe ``name`` trains with ``seed``, saved once: the round-1 model of a round-2 recipe."""
    folder = work(data) / "checkpoints" / f"{name}-s{seed}"
    if not (folder / "modules.json").exists():
        model = fresh_model(seed)
        train(model, training_rows(name, data, seed), seed, None, seq_len=profile(data).seq_len)
        staged = folder.with_name(folder.name + ".partial")
        model.save(str(staged))
        staged.rename(folder)
    return folder


def training_file(name: str, data: Path, seed: int) -> Path:
    """The recipe's training rows as Parquet (anchor, positive[, negative_1..n]), made once and cached; a recipe
    with ``order: clusters`` has one file per seed (the seed shuffles its blocks)."""
    recipe = RECIPES[name]
    out = work(data) / (f"{name}-s{seed}.parquet" if recipe.get("order") else f"{name}.parquet")
    if out.exists():
        return out
    work(data).mkdir(parents=True, exist_ok=True)
    from minenegs.inputs.dataset import load_beir

    ds = load_beir(train_folder(data), "train")
    if recipe["kind"] in ("pairs", "st"):
        from datasets import Dataset as HFDataset

        q = dict(zip(ds.queries.ids, ds.queries.texts))
        d = dict(zip(ds.corpus.ids, ds.corpus.texts))
        pos = [r for r in ds.qrels if r.is_positive]
        pairs = HFDataset.from_dict({"anchor": [q[r.query_id] for r in pos], "positive": [d[r.doc_id] for r in pos]})
        if recipe["kind"] == "pairs":
            if recipe.get("order") == "spread":
                pairs = spread(pairs, seed)
            pairs.to_parquet(str(out))
            return out
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.util import mine_hard_negatives

        from minenegs.encode.models import bundled_model_path

        model = SentenceTransformer(str(bundled_model_path()), device="cpu")
        mined = mine_hard_negatives(pairs, model, corpus=ds.corpus.texts, num_negatives=recipe["num_negatives"],
                                    relative_margin=recipe.get("relative_margin"), use_faiss=True,
                                    output_format="n-tuple", verbose=False, cache_folder=str(work(data) / "st-cache"))
        mined.to_parquet(str(out))
        return out
    from minenegs.encode.folder import Embeddings
    from minenegs.select.params import MineParams
    from minenegs.retrieve.pool import PoolParams, build_pool
    from minenegs.api import negatives_from_pool

    if "round1" in recipe:
        pool, _ = round2_pool(ds, recipe["round1"], data)
    else:
        pool = build_pool(Embeddings(train_embeddings(ds, data, recipe.get("model"))),
                          PoolParams(depth=100, retriever=recipe.get("retriever", "dense"),
                                     query_clusters=recipe.get("query_clusters", 0)))
    thresholds = {"relative_margin": recipe.get("relative_margin"), "dup_threshold": recipe.get("dup_threshold"),
                  "absolute_margin": recipe.get("absolute_margin"),
                  "max_positive_similarity": recipe.get("max_positive_similarity"), "duplicate_text": 1.0}
    if recipe.get("adaptive"):  # the default as a user gets it: no options; what it chose is kept beside
        summary = negatives_from_pool(pool, out, MineParams.default(), fmt="n-tuple")
        out.with_suffix(".density.json").write_text(json.dumps(summary["density"], indent=1))
        return out
    if "judge_sim" in recipe:
        return judged_rows(ds, data, pool, MineParams(recipe["strategy"], JUDGE_DRAW, thresholds=thresholds),
                           recipe["n"], recipe["judge_sim"], out)
    ordered = recipe.get("order") == "clusters"
    spread_rows = recipe.get("order") == "spread"
    negatives_from_pool(pool, out, MineParams(recipe["strategy"], recipe["n"], range_min=recipe.get("range_min", 0),
                                              seed=seed if ordered else 0, thresholds=thresholds), fmt="n-tuple",
                        batch_order="pool" if spread_rows else recipe.get("order", "pool"), batch_size=BATCH,
                        adapt="fixed", force=spread_rows)
    if spread_rows:
        from datasets import Dataset as HFDataset

        spread(HFDataset.from_parquet(str(out)), seed).to_parquet(str(out))
    return out


JUDGE_DRAW = 30  # candidates a simulated judge goes through per query, in the recipe's order


def judged_rows(ds, data: Path, pool: Path, params, n: int, judge: tuple[float, float], out: Path) -> Path:
    """n-tuple rows of the first ``n`` of each query's candidates (``params``' selection) a SIMULATED judge clears:
    a hidden relevant document (``qrels/hidden.tsv``) is caught with probability ``judge[0]``, any other passes
    with probability ``judge[1]``, one seeded draw per (query, document). Queries left with fewer than ``n`` are
    dropped, as sentence-transformers' n-tuple output drops them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from minenegs.encode.folder import Embeddings
    from minenegs.select.candidates import corpus_view, read_pool_arrays
    from minenegs.select.engine import Selector

    hidden = relevant_pairs(data)
    emb = Embeddings(train_embeddings(ds, data))
    doc_ids, q_text = emb.ids("corpus"), dict(zip(ds.queries.ids, ds.queries.texts))
    d_text = dict(zip(ds.corpus.ids, ds.corpus.texts))
    sel = Selector(read_pool_arrays(pool), corpus_view(emb)).selection(params)

    def cleared(q: str, d: str) -> bool:
        u = int.from_bytes(hashlib.blake2b(f"{q}|{d}".encode(), digest_size=8).digest(), "little") / 2 ** 64
        return u >= judge[0] if (q, d) in hidden else u < judge[1]

    rows = []
    for q, negs, poss in zip(sel.query_ids, sel.negatives, sel.positives):
        kept = [doc_ids[int(d)] for d in negs if cleared(q, doc_ids[int(d)])][:n]
        if len(kept) == n:
            rows.append({"anchor": q_text[q], "positive": d_text[doc_ids[int(poss[0])]],
                         **{f"negative_{i + 1}": d_text[d] for i, d in enumerate(kept)}})
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out


def relevant_pairs(data: Path) -> set[tuple[str, str]]:
    """Every (query id, document id) labelled relevant for the sampled training queries (``qrels/hidden.tsv``)."""
    from minenegs.inputs.dataset import load_beir

    return {(r.query_id, r.doc_id) for r in load_beir(train_folder(data), "hidden").qrels if r.is_positive}


def spread(pairs, seed: int):
    """The (anchor, positive) rows in a seeded random order, then placed in batches of ``BATCH`` where no anchor or
    positive text comes twice (minenegs' batch placement with one cluster): a positive shared by two queries is
    never the other row's in-batch negative."""
    from minenegs.write.batching import cluster_order

    shuffled = pairs.select(np.random.default_rng(seed).permutation(len(pairs)).tolist())
    keys = list(zip(shuffled["anchor"], shuffled["positive"]))
    return shuffled.select(cluster_order([None] * len(keys), keys, BATCH, seed))


def round2_pool(ds, round1: str, data: Path) -> tuple[Path, Path]:
    """Round 2's pool and embeddings: SciFact train encoded by recipe ``round1``'s seed-42 model, its top 100
    combined with the bundled model's pool (``--previous-pool``)."""
    from minenegs.encode.folder import Embeddings
    from minenegs.retrieve.pool import PoolParams, build_pool

    previous = (str(build_pool(Embeddings(train_embeddings(ds, data)), PoolParams(depth=100))),)
    emb_dir = train_embeddings(ds, data, f"r1-{round1}", round1_checkpoint(round1, data))
    return build_pool(Embeddings(emb_dir), PoolParams(depth=100, previous=previous)), emb_dir


# strategies that draw deeper than `top`, for the share of round 2's negatives only round 1's pool had
UNION_STRATEGIES = {"top 3": ("top", 3, {}), "random 3": ("random", 3, {}), "simans 3": ("simans", 3, {}),
                    "random 3, ranks 30-100": ("random", 3, {"range_min": 30, "range_max": 100}),
                    "random 5, ranks 50-150": ("random", 5, {"range_min": 50, "range_max": 150})}


def union_share(data: Path, round1: str = "mn-top3") -> dict:
    """Per strategy, how many of round 2's negatives come from candidates only round 1's pool had (source
    ``previous``): what the union of pools adds, without training."""
    from minenegs.artifacts import read_parquet
    from minenegs.inputs.dataset import load_beir
    from minenegs.encode.folder import Embeddings
    from minenegs.select.candidates import corpus_view, read_pool_arrays
    from minenegs.select.engine import Selector
    from minenegs.select.params import MineParams

    ds = load_beir(train_folder(data), "train")
    pool, emb_dir = round2_pool(ds, round1, data)
    table = read_parquet(pool / "candidates.parquet", columns=["query_idx", "doc_idx", "source"])
    columns = (table.column(c).to_pylist() for c in table.column_names)
    previous = {(q, d) for q, d, s in zip(*columns) if s == "previous"}
    engine = Selector(read_pool_arrays(pool), corpus_view(Embeddings(emb_dir)))
    out = {}
    for name, (strategy, n, window) in UNION_STRATEGIES.items():
        sel = engine.selection(MineParams(strategy, n, thresholds={"duplicate_text": 1.0}, **window))
        picked = [(int(q), int(d)) in previous for q, negs in zip(sel.query_idx, sel.negatives) for d in negs]
        out[name] = {"negatives": len(picked), "previous_only": int(sum(picked)),
                     "share": round(float(np.mean(picked)), 4) if picked else None}
    return {"round1": round1, "strategies": out}


def measure(test, query_ids: list[str], doc_ids: list[str], queries: np.ndarray, docs: np.ndarray,
            graded: bool = False) -> dict[str, float]:
    """nDCG@10 and Recall@100 (ir-measures, binary relevance) of an exact search of ``docs`` for ``queries``;
    ``graded``: also nDCG@10 with the qrels' grades (``ndcg@10_graded``)."""
    import faiss
    import ir_measures
    from ir_measures import R, nDCG

    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(np.ascontiguousarray(docs, dtype=np.float32))
    scores, idx = index.search(np.ascontiguousarray(queries, dtype=np.float32), 100)
    run = [ir_measures.ScoredDoc(qid, doc_ids[d], float(s))
           for qid, row_s, row_d in zip(query_ids, scores, idx) for s, d in zip(row_s, row_d)]
    qrels = [ir_measures.Qrel(r.query_id, r.doc_id, 1 if r.is_positive else 0) for r in test.qrels]
    agg = ir_measures.calc_aggregate([nDCG @ 10, R @ 100], qrels, run)
    found = {"ndcg@10": round(float(agg[nDCG @ 10]), 4), "recall@100": round(float(agg[R @ 100]), 4)}
    if graded:
        grades = [ir_measures.Qrel(r.query_id, r.doc_id, max(0, r.score)) for r in test.qrels]
        found["ndcg@10_graded"] = round(float(ir_measures.calc_aggregate([nDCG @ 10], grades, run)[nDCG @ 10]), 4)
    return found


def evaluate(model, data: Path) -> dict[str, float]:
    import torch

    from minenegs.inputs.dataset import load_beir

    test = load_beir(data, profile(data).test)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        docs = model.encode(test.corpus.texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        queries = model.encode(test.queries.texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    return measure(test, test.queries.ids, test.corpus.ids, queries, docs, profile(data).graded)


def train(model, rows: list[dict], seed: int, max_steps: int | None, in_order: bool = False,
          seq_len: int | None = None, loss: str = "mnrl") -> int:
    """One epoch of sentence-transformers' MultipleNegativesRankingLoss (``loss="gist"``: GISTEmbedLoss guided by
    the bundled model, frozen): batches of 32 rows in a seeded random order (``in_order``: consecutive rows, as
    the file has them), AdamW at 2e-5 with 10 % linear warm-up then linear decay, under bf16 autocast, texts cut
    at ``seq_len`` tokens (None: the model's limit, restored after). Returns the steps."""
    import torch
    from sentence_transformers.sentence_transformer.losses import GISTEmbedLoss, MultipleNegativesRankingLoss
    from transformers import get_linear_schedule_with_warmup

    if loss == "gist":
        guide = fresh_model(0)
        guide.max_seq_length = seq_len or guide.max_seq_length
        loss_fn = GISTEmbedLoss(model, guide)
    else:
        loss_fn = MultipleNegativesRankingLoss(model)
    limit = model.max_seq_length
    model.max_seq_length = seq_len or limit
    columns = list(rows[0])
    order = np.arange(len(rows)) if in_order else np.random.default_rng(seed).permutation(len(rows))
    batches = [order[i:i + BATCH] for i in range(0, len(order), BATCH)][: max_steps or None]
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * len(batches)), len(batches))
    model.train()
    for k, batch in enumerate(batches, 1):
        tick = time.perf_counter()
        features = [model.tokenize([rows[i][c] for i in batch]) for c in columns]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_fn(features, None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        print(f"step {k}/{len(batches)} {time.perf_counter() - tick:.1f} s loss {loss.item():.3f}", file=sys.stderr, flush=True)
    model.eval()
    model.max_seq_length = limit
    return len(batches)


def fresh_model(seed: int, path: Path | None = None):
    """The bundled model (or the model folder ``path``), seeded, as every recipe starts from it."""
    import torch
    from sentence_transformers import SentenceTransformer

    from minenegs.encode.models import bundled_model_path

    torch.manual_seed(seed)
    # attention-probability dropout off: on CPU it forces SDPA's unfused path (30 s a step instead of 10 s);
    # hidden-layer dropout stays on. Every recipe is trained the same way.
    return SentenceTransformer(str(path or bundled_model_path()), device="cpu",
                               config_kwargs={"attention_probs_dropout_prob": 0.0})


def training_rows(name: str, data: Path, seed: int) -> list[dict]:
    import pyarrow.parquet as pq

    table = pq.read_table(training_file(RECIPES[name].get("rows_of", name), data, seed))
    return table.select([c for c in table.column_names if c == "anchor" or c == "positive"
                         or c.startswith("negative")]).to_pylist()


def loss_of(name: str, data: Path, seed: int) -> str:
    """The recipe's loss: its own, or for the guided adaptive default the one its output recommends (the guided
    loss where it chose the dense recipe), as a user following it would."""
    recipe = RECIPES.get(name, {})
    if recipe.get("guided"):
        said = json.loads(training_file(recipe["rows_of"], data, seed).with_suffix(".density.json").read_text())
        return "gist" if (said.get("loss") or {}).get("name") == "GISTEmbedLoss" else "mnrl"
    return recipe.get("loss", "mnrl")


def train_and_evaluate(name: str, seed: int, data: Path, max_steps: int | None) -> dict:
    rows = training_rows(name, data, seed) if name != "zero-shot" else []  # mined before the clock starts
    recipe = RECIPES.get(name, {})
    start = recipe.get("continue_from")
    model = fresh_model(seed, round1_checkpoint(start, data) if start else None)
    started = time.perf_counter()
    steps = 0
    if rows:
        steps = train(model, rows, seed, max_steps, in_order=recipe.get("order") in ("clusters", "spread"),
                      seq_len=profile(data).seq_len, loss=loss_of(name, data, seed))
    train_seconds = time.perf_counter() - started
    extra = {}
    if rows:  # the training rows' content, to show where two recipes trained on the same rows
        extra["rows_sha256"] = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    if recipe.get("adaptive"):
        said = json.loads(training_file(recipe.get("rows_of", name), data, seed).with_suffix(".density.json").read_text())
        extra.update(chose=said["chose"], above_positive=said["above_positive"])
    return {"recipe": name, "seed": seed, "rows": len(rows), "steps": steps, "train_seconds": round(train_seconds, 1),
            **extra, **evaluate(model, data)}


def teacher_zero_shot(model: str, data: Path) -> dict:
    """A teacher's own nDCG@10 and Recall@100 on SciFact test, without training: the test set encoded through
    minenegs' cache, so the corpus (the same documents as train's) is not encoded again, only the test queries."""
    from minenegs.inputs.dataset import load_beir
    from minenegs.encode.embeddings import encode_dataset
    from minenegs.encode.folder import Embeddings
    from minenegs.encode.models import SentenceTransformerEncoder

    from setup_teacher import assemble

    test = load_beir(data, profile(data).test)
    folder = ROOT / "build" / "bench" / "scifact-test" / f"emb-{model}"
    summary = encode_dataset(test, folder, SentenceTransformerEncoder(str(assemble(TEACHERS[model]))),
                             cache_dir=ROOT / "build" / "bench-cache", force=True)
    emb = Embeddings(folder)
    found = measure(test, emb.ids("queries"), emb.ids("corpus"), emb.vectors("queries"), emb.vectors("corpus"))
    return {"model": model, **found, "texts_encoded": summary.texts_encoded, "unique_texts": summary.unique_texts}


def epochs(name: str) -> int:
    """Epochs of training a recipe's model has had: a second one for a recipe that continues a trained model."""
    return 2 if RECIPES.get(name, {}).get("continue_from") else 1


def report(results: dict) -> str:
    """A Markdown table: per recipe, mean and spread (min-max) over its seeds of nDCG@10 and Recall@100; the mean
    over the seeds every recipe has (the fair comparison, where some recipes have more seeds); and that mean's
    distance to the best sentence-transformers recipe's, in nDCG@10 points (x 100)."""
    by: dict[str, list[dict]] = {}
    for r in results["runs"]:
        by.setdefault(r["recipe"], []).append(r)
    order = [n for n in ["zero-shot", *RECIPES] if n in by]
    common = set.intersection(*({r["seed"] for r in by[n]} for n in order)) if order else set()
    fair = {n: float(np.mean([r["ndcg@10"] for r in by[n] if r["seed"] in common] or [np.nan])) for n in order}
    best_st = max((n for n in order if RECIPES.get(n, {}).get("kind") == "st" and epochs(n) == 1),
                  key=fair.get, default=None)  # the one-epoch baseline
    seeds = ",".join(map(str, sorted(common)))
    st = {r["seed"]: r["ndcg@10"] for r in by.get(best_st, [])}
    lines = [f"| recipe | seeds | rows | nDCG@10 mean | nDCG@10 min-max | nDCG@10 mean, seeds {seeds} "
             f"| vs {best_st or 'st'}, seeds {seeds} (points) | vs {best_st or 'st'}, same seeds (points) "
             "| R@100 mean |", "|---|---|---|---|---|---|---|---|---|"]
    for name in order:
        runs = by[name]
        nd = [r["ndcg@10"] for r in runs]
        delta = f"{100 * (fair[name] - fair[best_st]):+.2f}" if best_st else "-"
        same = [st.get(r["seed"]) for r in runs]  # the recipe's mean against st's over the recipe's own seeds
        same_delta = f"{100 * (np.mean(nd) - np.mean(same)):+.2f}" if best_st and None not in same else "-"
        lines.append(f"| {name} | {len(runs)} | {runs[0]['rows']} | {np.mean(nd):.4f} | {min(nd):.4f}-{max(nd):.4f} "
                     f"| {fair[name]:.4f} | {delta} | {same_delta} | {np.mean([r['recall@100'] for r in runs]):.4f} |")
    return "\n".join(lines)


def report_graded(results: dict, baselines: tuple[str, ...] = ("in-batch", "st-top5")) -> str:
    """A Markdown table for a graded profile (nfcorpus_train): per recipe, graded nDCG@10 mean and min-max over
    its seeds, binary nDCG@10 mean, and its distance to each baseline over the seeds both have (points x 100)."""
    by: dict[str, dict[int, dict]] = {}
    for r in results["runs"]:
        by.setdefault(r["recipe"], {})[r["seed"]] = r
    head = " | ".join(f"vs {b} (points, same seeds)" for b in baselines)
    lines = [f"| recipe | seeds | rows | nDCG@10 graded mean | min-max | nDCG@10 binary mean | {head} |",
             "|---|---|---|---|---|---|" + "---|" * len(baselines)]
    order = sorted(by, key=lambda n: -np.mean([r["ndcg@10_graded"] for r in by[n].values()]))
    for name in order:
        runs = by[name]
        g = [r["ndcg@10_graded"] for r in runs.values()]
        deltas = []
        for b in baselines:
            common = sorted(set(runs) & set(by.get(b, {})))
            deltas.append(f"{100 * np.mean([runs[k]['ndcg@10_graded'] - by[b][k]['ndcg@10_graded'] for k in common]):+.2f}"
                          f" ({len(common)})" if common and name != b else "-")
        seeds = ",".join(map(str, sorted(runs)))
        lines.append(f"| {name} | {seeds} | {next(iter(runs.values()))['rows']} | {np.mean(g):.4f} | {min(g):.4f}-{max(g):.4f} "
                     f"| {np.mean([r['ndcg@10'] for r in runs.values()]):.4f} | " + " | ".join(deltas) + " |")
    return "\n".join(lines)


def plot(results: dict, out: Path) -> None:
    """nDCG@10 per recipe (sorted by mean): each seed as a dot, the mean as a bar, sentence-transformers' top-3
    mean and that mean + 1 point (the target) as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by: dict[str, list[float]] = {}
    for r in results["runs"]:
        by.setdefault(r["recipe"], []).append(r["ndcg@10"])
    names = sorted(by, key=lambda n: np.mean(by[n]))
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(names) + 1.2))
    for y, name in enumerate(names):
        kind = RECIPES.get(name, {}).get("kind", "pairs")  # zero-shot: gray, as in-batch
        color = {"st": "tab:orange", "pairs": "tab:gray"}.get(kind, "tab:blue")
        ax.barh(y, np.mean(by[name]), color=color, alpha=0.35)
        ax.plot([min(by[name]), max(by[name])], [y, y], color=color)
        ax.scatter(by[name], [y] * len(by[name]), color=color, s=12, zorder=3)
    if "st-top3" in by:
        base = float(np.mean(by["st-top3"]))
        ax.axvline(base, color="tab:orange", ls="--", lw=1, label=f"st-top3 mean {base:.4f}")
        ax.axvline(base + 0.01, color="tab:red", ls=":", lw=1, label="st-top3 + 1 point")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(range(len(names)), [f"{n} ({len(by[n])}{', 2 epochs' if epochs(n) > 1 else ''})" for n in names],
                  fontsize=8)
    top = max([max(v) for v in by.values()] + ([float(np.mean(by["st-top3"])) + 0.01] if "st-top3" in by else []))
    ax.set_xlim(min(min(v) for v in by.values()) - 0.005, top + 0.005)
    ax.set_xlabel("nDCG@10 on SciFact test (dots: seeds; bar: mean; (n): seeds)")
    ax.set_title("all-MiniLM-L6-v2 fine-tuned on SciFact train, one epoch of MNRL unless marked", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--recipe", action="append", help="recipe name (repeatable); default: all")
    parser.add_argument("--seeds", default="42,43")
    parser.add_argument("--max-steps", type=int, default=None, help="for a smoke test only")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "finetune.json")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--report", action="store_true", help="print the table of what the results file holds")
    parser.add_argument("--teacher-zero-shot", metavar="MODEL", help="evaluate a teacher untrained (see TEACHERS)")
    parser.add_argument("--plot", type=Path, help="with --report: also draw nDCG@10 per recipe to this PNG")
    parser.add_argument("--union-share", action="store_true", help="per strategy, the share of round 2's "
                        "negatives that only round 1's pool had (no training)")
    parser.add_argument("--skip-done", action="store_true", help="skip (recipe, seed) pairs already in the file")
    args = parser.parse_args()
    if args.list:
        print("\n".join(["zero-shot", *RECIPES]))
        return
    results = json.loads(args.output.read_text()) if args.output.exists() and not args.max_steps else {"runs": []}
    if args.teacher_zero_shot:
        entry = teacher_zero_shot(args.teacher_zero_shot, args.data)
        print(json.dumps(entry))
        write_results(args.output.with_name("teacher_zero_shot.json"), entry)
        return
    if args.union_share:
        entry = union_share(args.data)
        print(json.dumps(entry))
        write_results(args.output.with_name("union_share.json"), entry)
        return
    if args.report:
        print(report_graded(results) if profile(args.data).graded else report(results))
        if args.plot:
            plot(results, args.plot)
        return
    for name in args.recipe or ["zero-shot", *RECIPES]:
        if name != "zero-shot" and name not in RECIPES:
            sys.exit(f"unknown recipe {name!r}; see --list")
        seeds = [int(s) for s in args.seeds.split(",")]
        for seed in seeds[:1] if name == "zero-shot" else seeds:  # evaluation only: the seed changes nothing
            if args.skip_done and any((r["recipe"], r["seed"]) == (name, seed) for r in results["runs"]):
                continue
            entry = train_and_evaluate(name, seed, args.data, args.max_steps)
            print(json.dumps(entry), flush=True)
            if not args.max_steps:
                results["runs"] = [r for r in results["runs"] if (r["recipe"], r["seed"]) != (name, seed)] + [entry]
                write_results(args.output, results)


if __name__ == "__main__":
    main()
