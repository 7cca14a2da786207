"""False-negative filters: near-duplicates and parity with sentence-transformers' thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from fakes import FakeEncoder
from conftest import clear_of_noise, select_negatives
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings
from minenegs.select.filters.corpus import normalise_many
from minenegs.select.candidates import corpus_view

from minenegs.select.params import MineParams
from minenegs.retrieve.pool import PoolParams, build_pool
from minenegs.inputs.dataset import load_beir
from minenegs.records import Dataset, Qrel, TextTable


def normalise(text: str) -> str:
    import pyarrow as pa

    return normalise_many(pa.array([text])).to_pylist()[0]


def test_normalise_folds_case_accents_punctuation_and_spacing():
    assert normalise("  Héllo,   WORLD!! ") == "hello world"
    assert normalise("e-mail") == normalise("E mail")
    assert normalise("cat") != normalise("cats")


@pytest.fixture
def dup_emb(tmp_path) -> Embeddings:
    texts = ["The cat sat on the mat.", "the CAT sat on the mat", "A dog ran in the park.", "Cats like mats a lot.",
             "Birds sing at dawn."]
    ds = Dataset(TextTable([f"d{i}" for i in range(5)], texts), TextTable(["q"], ["where did the cat sit"]),
                 [Qrel("q", "d0")])
    encode_dataset(ds, tmp_path / "emb", FakeEncoder(), cache_dir=tmp_path / "cache")
    return Embeddings(tmp_path / "emb")


def test_text_duplicate_of_a_positive_is_never_a_negative(dup_emb):
    pool = build_pool(dup_emb, PoolParams(depth=5))
    on = select_negatives(pool, MineParams("top", 4, thresholds={"duplicate_text": 1.0}), corpus_view(dup_emb))
    off = select_negatives(pool, MineParams("top", 4), corpus_view(dup_emb))
    assert 1 not in on.negatives[0].tolist() and on.removed["duplicate_text"] == 1
    assert 1 in off.negatives[0].tolist()


@pytest.mark.parametrize("name", ["dup_threshold", "max_positive_similarity"])
def test_similarity_guards_use_cosine_to_any_positive(dup_emb, name):
    pool = build_pool(dup_emb, PoolParams(depth=5))
    vectors = dup_emb.vectors("corpus")
    cos = vectors[[1, 2, 3, 4]] @ vectors[0]
    t = float(np.sort(cos)[-2]) + 1e-6  # between the two most similar
    sel = select_negatives(pool, MineParams("top", 4, thresholds={name: t}), corpus_view(dup_emb))
    assert sorted(sel.negatives[0].tolist()) == sorted(np.array([1, 2, 3, 4])[cos < t].tolist())
    assert sel.removed == {name: 1} and sel.short == ["q"]


def test_guard_is_counted_apart_from_the_duplicate_filter(dup_emb):
    pool = build_pool(dup_emb, PoolParams(depth=5))
    sel = select_negatives(pool, MineParams("top", 4, thresholds={"dup_threshold": 0.999, "max_positive_similarity": -1.0}),
                 corpus_view(dup_emb))
    assert sel.removed["max_positive_similarity"] == 4 - sel.removed["dup_threshold"]  # what dup left, it takes
    assert len(sel.negatives[0]) == 0


def test_planted_near_duplicates_are_caught(tmp_path, samples):
    encode_dataset(load_beir(samples), tmp_path / "emb", FakeEncoder(dim=256), cache_dir=tmp_path / "c")
    emb = Embeddings(tmp_path / "emb")
    pool = build_pool(emb, PoolParams(depth=20))
    ids = emb.ids("corpus")
    # the train-split plants: (query, near-duplicate of its positive)
    plants = {f"q-{src.split('-')[0]}": ids.index(f"{src}-dup") for src in ("photo-p1", "gil-p1", "coral-p1")}

    def handed_out(sel):
        return {q for q, negs in zip(sel.query_ids, sel.negatives) if q in plants and plants[q] in negs.tolist()}

    plain = select_negatives(pool, MineParams("top", 3), corpus_view(emb))
    assert handed_out(plain) == set(plants)  # top mining hands every plant to its own query
    filtered = select_negatives(pool, MineParams("top", 3, thresholds={"dup_threshold": 0.9}), corpus_view(emb))
    assert handed_out(filtered) == set()
    assert filtered.removed["dup_threshold"] >= 3
    assert filtered.short == []  # nobody is left short: the next candidates take their place


@pytest.mark.slow
@pytest.mark.parametrize("setting", [{"relative_margin": 0.05}, {"absolute_margin": 0.02}, {"max_score": 0.45},
                                     {"min_score": 0.2}, {"relative_margin": 0.1, "max_score": 0.5}])
def test_kept_sets_match_sentence_transformers(tmp_path_factory, samples, setting):
    """The same model and data through mine_hard_negatives and through minenegs keep the same candidates.

    Established on sentence-transformers 6.2.0 and 6.3.0: the pool is as deep as the installed release searches
    (6.3 retrieves one candidate more, :func:`minenegs.compat.st_behaviour`), and no setting lies within float
    noise of a candidate's critical value (:func:`conftest.clear_of_noise`)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datasets import Dataset as HFDataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from minenegs.compat import st_behaviour
    from minenegs.encode.models import SentenceTransformerEncoder, bundled_model_path
    from minenegs.select.candidates import read_pool_arrays

    root = tmp_path_factory.getbasetemp() / "parity"
    ds = load_beir(samples)
    text = dict(zip(ds.corpus.ids, ds.corpus.texts))
    query = dict(zip(ds.queries.ids, ds.queries.texts))
    range_max = 20
    max_pos = max(len(v) for v in ds.positives().values())
    st_model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    if not (root / "emb").exists():
        encode_dataset(ds, root / "emb", SentenceTransformerEncoder(precision="fp32"), cache_dir=root / "cache")
    emb = Embeddings(root / "emb")
    pool = build_pool(emb, PoolParams(depth=range_max + max_pos + st_behaviour().extra_candidates))
    a = read_pool_arrays(pool)
    floor = np.full(a["query_idx"].max() + 1, np.inf)
    np.minimum.at(floor, a["query_idx"][a["is_positive"]], a["score"][a["is_positive"]])
    candidate = ~a["is_positive"]
    setting = clear_of_noise(setting, a["score"][candidate], floor[a["query_idx"][candidate]])
    pairs = HFDataset.from_dict({"anchor": [query[r.query_id] for r in ds.qrels],
                                 "positive": [text[r.doc_id] for r in ds.qrels]})
    mined = mine_hard_negatives(pairs, st_model, corpus=ds.corpus.texts, range_max=range_max,
                                num_negatives=range_max, sampling_strategy="top", output_format="triplet",
                                use_faiss=True, verbose=False, **setting)
    st_kept: dict[str, set[str]] = {}
    for row in mined:
        st_kept.setdefault(row["anchor"], set()).add(row["negative"])

    sel = select_negatives(pool, MineParams("top", range_max, thresholds=dict(setting)))
    texts = emb.table("corpus").texts
    queries = dict(zip(emb.ids("queries"), emb.table("queries").texts))
    ours = {queries[q]: {texts[d] for d in negs} for q, negs in zip(sel.query_ids, sel.negatives) if len(negs)}
    assert ours == st_kept
    assert sum(sel.removed.values()) > 0 and sum(map(len, ours.values())) > 0  # the filter did bite


def test_min_positive_similarity_drops_what_is_far_from_every_positive(dup_emb, tmp_path):
    pool = build_pool(dup_emb, PoolParams(depth=5))
    vectors = dup_emb.vectors("corpus")
    cos = vectors[[1, 2, 3, 4]] @ vectors[0]
    t = float(np.sort(cos)[1]) + 1e-6  # above the two least similar
    sel = select_negatives(pool, MineParams("top", 4, thresholds={"min_positive_similarity": t}), corpus_view(dup_emb))
    assert sorted(sel.negatives[0].tolist()) == sorted(np.array([1, 2, 3, 4])[cos >= t].tolist())
    assert sel.removed == {"min_positive_similarity": 2}
    # the registry gives it a command-line option, a sweep/calibrate axis and a range check, with no other change
    from typer.testing import CliRunner

    from minenegs.cli import app

    runner = CliRunner()
    out = tmp_path / "o.parquet"
    done = runner.invoke(app, ["filter", str(pool), "-o", str(out), "--keep-duplicates", "--num-negatives", "4",
                               "--min-positive-similarity", str(t), "--json"])
    assert done.exit_code == 3 and '"removed_by_min_positive_similarity": 2' in done.stdout  # short: exit 3
    swept = runner.invoke(app, ["sweep", str(pool), "--keep-duplicates", "--min-positive-similarity", f"off,{t}",
                                "--json"])
    assert [r["removed"] for r in __import__("json").loads(swept.stdout)] == [0, 2]
    bad = runner.invoke(app, ["filter", str(pool), "-o", str(tmp_path / "x.parquet"), "--min-positive-similarity", "2"])
    assert bad.exit_code == 2 and "--min-positive-similarity 2.0: give a finite number in [-1.0, 1.0]" in bad.stderr
