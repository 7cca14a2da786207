"""``minenegs.mine_hard_negatives``: the drop-in for sentence-transformers' function of that name."""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import SAMPLES, clear_of_noise
from minenegs.inputs.dataset import load_beir

pytestmark = pytest.mark.slow  # the bundled model, and sentence-transformers' own function beside ours

SETTINGS = [{}, {"relative_margin": 0.05}, {"absolute_margin": 0.02}, {"max_score": 0.45}, {"min_score": 0.2},
            {"relative_margin": 0.1, "max_score": 0.5}]
FORMATS = ["triplet", "n-tuple", "labeled-pair", "labeled-list"]


@pytest.fixture(scope="module")
def st_model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from minenegs.encode.models import bundled_model_path

    return SentenceTransformer(str(bundled_model_path()), device="cpu")


@pytest.fixture(scope="module")
def pairs():
    from datasets import Dataset as HFDataset

    ds = load_beir(SAMPLES)
    text = dict(zip(ds.corpus.ids, ds.corpus.texts))
    query = dict(zip(ds.queries.ids, ds.queries.texts))
    return HFDataset.from_dict({"anchor": [query[r.query_id] for r in ds.qrels],
                                "positive": [text[r.doc_id] for r in ds.qrels]}), ds.corpus.texts


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("compat-cache")


@pytest.fixture(scope="module")
def dense(st_model, pairs):
    """Every (query, document) score of the sample data under the bundled model, each query's lowest positive
    score beside it: what a positive-aware setting is compared with (:func:`conftest.clear_of_noise`)."""
    dataset, corpus = pairs
    queries = list(dict.fromkeys(dataset["anchor"]))
    docs = list(dict.fromkeys([*corpus, *dataset["positive"]]))
    q = st_model.encode(queries, normalize_embeddings=True)
    d = st_model.encode(docs, normalize_embeddings=True)
    scores = q @ d.T
    row, col = {t: i for i, t in enumerate(queries)}, {t: i for i, t in enumerate(docs)}
    floor = np.full(len(queries), np.inf)
    for a, p in zip(dataset["anchor"], dataset["positive"]):
        floor[row[a]] = min(floor[row[a]], scores[row[a], col[p]])
    return scores, np.broadcast_to(floor[:, None], scores.shape)


def _ours(pairs, model, cache, **kw):
    import minenegs

    dataset, corpus = pairs
    return minenegs.mine_hard_negatives(dataset, model, corpus=corpus, verbose=False, cache_dir=cache, **kw)


@pytest.mark.parametrize("scores", [False, True])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "none")
def test_rows_match_sentence_transformers(st_model, pairs, cache, dense, tmp_path_factory, setting, fmt, scores):
    """Established on sentence-transformers 6.2.0 and 6.3.0."""
    from sentence_transformers.util import mine_hard_negatives

    dataset, corpus = pairs
    setting = clear_of_noise(setting, *dense)
    theirs = mine_hard_negatives(dataset, st_model, corpus=corpus, output_format=fmt, output_scores=scores,
                                 use_faiss=True, verbose=False, cache_folder=str(tmp_path_factory.getbasetemp() / "st"),
                                 **setting)
    ours = _ours(pairs, st_model, cache, output_format=fmt, output_scores=scores, **setting)
    assert ours.column_names == theirs.column_names
    assert len(ours) == len(theirs) > 0
    a, b = ours.to_dict(), theirs.to_dict()
    for column in theirs.column_names:
        if column in ("score", "scores"):
            continue
        assert a[column] == b[column], column
    for column in ("score", "scores"):
        if column in b:
            assert [np.size(x) for x in a[column]] == [np.size(x) for x in b[column]]
            flat = [np.concatenate([np.atleast_1d(np.asarray(x, dtype=float)) for x in d[column]]) for d in (a, b)]
            np.testing.assert_allclose(*flat, atol=2e-5)


@pytest.mark.parametrize("setting", [{}, {"max_score": 0.45}], ids=["none", "max_score"])
def test_where_releases_differ_the_installed_one_is_followed(st_model, pairs, cache, dense, tmp_path, monkeypatch,
                                                            setting):
    """sentence-transformers 6.3 skips a corpus text equal to the query's own and searches one candidate deeper;
    6.2 did neither. Two queries' texts in the corpus and as many negatives as the window holds make both show:
    the drop-in gives the installed release's rows, and the other release's behaviour would not."""
    import minenegs.compat as compat
    from sentence_transformers.util import mine_hard_negatives

    dataset, corpus = pairs
    queries = list(dict.fromkeys(dataset["anchor"]))
    corpus = [*corpus, queries[0], queries[3]]
    setting = clear_of_noise(setting, *dense)
    kw = dict(corpus=corpus, range_max=10, num_negatives=10, output_format="triplet", verbose=False, **setting)
    theirs = mine_hard_negatives(dataset, st_model, use_faiss=True, cache_folder=str(tmp_path / "st"), **kw).to_dict()
    ours = compat.mine_hard_negatives(dataset, st_model, cache_dir=cache, **kw).to_dict()
    assert ours == theirs and len(ours["negative"]) > 0
    installed = compat.st_behaviour()
    other = compat.st_behaviour("6.2.0" if installed.skips_query_text else "6.3.0")
    monkeypatch.setattr(compat, "st_behaviour", lambda: other)
    assert compat.mine_hard_negatives(dataset, st_model, cache_dir=cache, **kw).to_dict() != theirs
    if not setting:  # with no max_score, 6.2 hands a query its own text (score 1) as its hardest negative
        own_text = {(a, n) for a, n in zip(ours["anchor"], ours["negative"]) if a == n}
        assert bool(own_text) is not installed.skips_query_text


def test_release_behaviours_are_read_from_the_version():
    from minenegs.compat import st_behaviour

    assert st_behaviour("6.2.0") == ((6, 2, 0), 0, False)
    assert st_behaviour("6.3.0") == ((6, 3, 0), 1, True)
    assert st_behaviour("7.0.0.dev1+local") == ((7, 0, 0), 1, True)
    assert st_behaviour("5.7") == ((5, 7), 0, False)


def test_a_second_call_selects_again_without_encoding(st_model, pairs, cache, monkeypatch):
    import minenegs.encode.embeddings

    first = _ours(pairs, st_model, cache, relative_margin=0.05, num_negatives=2, output_format="n-tuple")

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded again")

    monkeypatch.setattr(minenegs.encode.embeddings, "encode_dataset", no_encoding)
    second = _ours(pairs, st_model, cache, relative_margin=0.2, num_negatives=2, output_format="n-tuple")
    changed = sum(a != b for a, b in zip(first["negative_1"], second["negative_1"]))
    assert len(second) == len(first) and changed > 0  # the wider margin skipped some of the hardest


def test_a_list_of_dicts_and_minenegs_own_options(st_model, pairs, cache):
    dataset, corpus = pairs
    rows = [{"q": a, "p": p} for a, p in zip(dataset["anchor"], dataset["positive"])]
    listed = _ours((rows, corpus), st_model, cache, output_format="n-tuple")
    assert listed.column_names == ["q", "p", "negative_1", "negative_2", "negative_3"]
    assert listed["negative_1"] == _ours(pairs, st_model, cache, output_format="n-tuple")["negative_1"]
    a = _ours(pairs, st_model, cache, strategy="simans", seed=1, num_negatives=2, output_format="n-tuple")
    b = _ours(pairs, st_model, cache, strategy="simans", seed=1, num_negatives=2, output_format="n-tuple")
    c = _ours(pairs, st_model, cache, strategy="simans", seed=2, num_negatives=2, output_format="n-tuple")
    assert a.to_dict() == b.to_dict() != c.to_dict()
    guarded = _ours(pairs, st_model, cache, max_positive_similarity=0.5, num_negatives=2, output_format="triplet")
    plain = _ours(pairs, st_model, cache, num_negatives=2, output_format="triplet")
    assert guarded["negative"] != plain["negative"]  # the guard took some of the hardest, the next ones came in


@pytest.mark.parametrize("kwargs, message", [
    ({"include_positives": True}, "'include_positives' has no equivalent"),
    ({"use_multi_process": True}, "'use_multi_process' has no equivalent"),
    ({"faiss_batch_size": 1024}, "'faiss_batch_size' has no equivalent"),
    ({"cross_encoder": "some/model", "relative_margin": 0.05}, "cross_encoder with margins"),
    ({"cross_encoder": "some/model"}, "without ce_max= or promote="),
    ({"shuffle": True}, "unexpected keyword argument 'shuffle'"),
])
def test_arguments_without_an_equivalent_are_named(st_model, pairs, cache, kwargs, message):
    with pytest.raises(TypeError, match=message):
        _ours(pairs, st_model, cache, **kwargs)


def test_a_model_changed_in_place_is_encoded_again(pairs, tmp_path):
    import torch
    from sentence_transformers import SentenceTransformer

    from minenegs.encode.models import LoadedEncoder, bundled_model_path

    model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    encoder = LoadedEncoder(model)
    before = encoder.fingerprint()
    assert encoder.fingerprint() == before  # remembered while nothing changed
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert encoder.fingerprint() != before


def test_the_returned_dataset_trains_with_the_sentence_transformers_trainer(st_model, pairs, cache, tmp_path):
    import copy

    import torch
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    train = _ours(pairs, st_model, cache, output_format="n-tuple", num_negatives=2)
    model = copy.deepcopy(st_model)
    before = next(model.parameters()).detach().clone()
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "out"), max_steps=2,
                                                per_device_train_batch_size=4, learning_rate=1e-4,
                                                report_to=[], save_strategy="no", use_cpu=True,
                                                disable_tqdm=True, logging_steps=1)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train,
                                         loss=MultipleNegativesRankingLoss(model))
    result = trainer.train()
    assert np.isfinite(result.training_loss)
    assert not torch.equal(before, next(model.parameters()).detach())


def test_prompts_are_applied_as_sentence_transformers_applies_them(st_model, pairs, cache, tmp_path_factory):
    from sentence_transformers.util import mine_hard_negatives

    dataset, corpus = pairs
    prompts = {"query_prompt": "query: ", "corpus_prompt": "passage: ", "output_format": "n-tuple"}
    theirs = mine_hard_negatives(dataset, st_model, corpus=corpus, use_faiss=True, verbose=False, **prompts)
    ours = _ours(pairs, st_model, cache, **prompts)
    assert ours.to_dict() == theirs.to_dict()
    assert ours.to_dict() != _ours(pairs, st_model, cache, output_format="n-tuple").to_dict()  # they mattered


def test_recipe_default_adds_the_default_recipes_filters(st_model, pairs, cache):
    from minenegs import recipe

    kw = {"output_format": "n-tuple", "num_negatives": 3}
    plain = _ours(pairs, st_model, cache, **kw).to_dict()
    default = _ours(pairs, st_model, cache, recipe="default", **kw).to_dict()
    spelled = _ours(pairs, st_model, cache, **recipe.THRESHOLDS, **kw).to_dict()
    assert default == spelled
    assert default != plain  # the guard changes what sentence-transformers' defaults hand out on the sample data


def test_a_filter_the_registry_does_not_know_is_a_type_error(st_model, pairs, cache):
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_filter'"):
        _ours(pairs, st_model, cache, no_such_filter=0.5)
    with pytest.raises(ValueError, match="recipe 'strict'"):
        _ours(pairs, st_model, cache, recipe="strict")


def test_judges_in_the_dropin(st_model, pairs, cache):
    from openai_stub import Stub

    def shortish(prompt: str) -> str:
        text = prompt.split("Candidate document:\n")[1].split("\n\nIs the candidate")[0]
        return "relevant" if len(text) % 2 == 0 else "not_relevant"

    with Stub(shortish) as stub:
        out = _ours(pairs, st_model, cache, output_format="triplet", judges=[f"llm:tiny@{stub.url}"])
        asked = len(stub.requests)
    assert asked > 0 and len(out) > 0
    assert all(len(n) % 2 == 1 for n in out["negative"])  # nothing the judge flagged is handed out
    with Stub(shortish) as stub:  # the verdicts cached in the pool; any query with a flagged candidate dropped
        strict = _ours(pairs, st_model, cache, output_format="triplet", judges=[f"llm:tiny@{stub.url}"],
                       judge_max_flagged=0)
        assert len(stub.requests) == 0
    assert len(strict) < len(out) and set(strict["anchor"]) <= set(out["anchor"])
