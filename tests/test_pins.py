"""Pinned outputs: the SHA-256 of what each of these recipes writes on the sample data must not change when the
code is reorganised. The embeddings are the dyadic fake's (exact inner products, the same bytes on every CPU),
so a changed hash means changed behaviour, never another machine. Only the public surfaces are used: the
command line, the package's top-level calls and ``minenegs.mine_hard_negatives``.

A deliberate change of behaviour updates the pins: run with ``MINENEGS_PRINT_PINS=1`` and ``-s`` to print them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import minenegs
from conftest import SAMPLES
from fakes import DyadicEncoder
from minenegs.cli import app

runner = CliRunner()

MINE = [
    ("mine-default", ["mine", "{emb}"], "out.parquet"),
    ("mine-random-triplet", ["mine", "{emb}", "--strategy", "random", "--seed", "7", "--format", "triplet"],
     "out.parquet"),
    ("mine-simans-labeled-list-scores", ["mine", "{emb}", "--strategy", "simans", "--num-negatives", "3",
                                         "--format", "labeled-list", "--scores"], "out.parquet"),
    ("mine-ids-window-scores", ["mine", "{emb}", "--format", "ids", "--scores", "--range-min", "2", "--range-max",
                                "30"], "out.parquet"),
    ("mine-flag-jsonl", ["mine", "{emb}", "--format", "flag-jsonl", "--num-negatives", "4"], "out.jsonl"),
    ("mine-bm25", ["mine", "{emb}", "--retriever", "bm25", "--depth", "30"], "out.parquet"),
    ("mine-hybrid-relative", ["mine", "{emb}", "--retriever", "hybrid", "--relative-margin", "0.05",
                              "--num-negatives", "3"], "out.parquet"),
    ("mine-clusters", ["mine", "{emb}", "--query-clusters", "3", "--batch-order", "clusters", "--batch-size", "4",
                       "--format", "triplet", "--num-negatives", "2"], "out.parquet"),
    ("filter-margins", ["filter", "{pool}", "--absolute-margin", "0.02", "--max-score", "0.8", "--min-score", "0.05",
                        "--scores"], "out.parquet"),
    ("filter-guards", ["filter", "{pool}", "--dup-threshold", "0.9", "--max-positive-similarity", "0.6",
                       "--strategy", "random", "--seed", "3"], "out.parquet"),
    ("filter-keep-duplicates", ["filter", "{pool}", "--keep-duplicates", "--format", "labeled-list"], "out.parquet"),
    ("filter-ce-max", ["filter", "{pool}", "--cross-encoder", "{ce}", "--ce-max", "0.5", "--ce-depth", "10"],
     "out.parquet"),
    ("filter-ce-promote", ["filter", "{pool}", "--cross-encoder", "{ce}", "--promote", "0.5", "--ce-depth", "10",
                           "--format", "flag-jsonl"], "out.jsonl"),
    ("sweep-json", ["sweep", "{pool}", "--relative-margin", "0,0.05,0.1", "--strategy", "top,random", "--json"],
     None),
    ("calibrate-json", ["calibrate", "{pool}", "--min-queries", "3", "--json"], None),
    ("calibrate-grid-json", ["calibrate", "{pool}", "--min-queries", "3", "--max-positive-similarity", "off,0.6",
                             "--range-min", "0,3", "--json"], None),
]

PINS = {
    "mine-default": "a393dfecd7a2431dc56e7a56802890b894c3ce31b8daded7ca060a7e84d4632b",
    "mine-random-triplet": "6fd5b85d32ecff15a0a87ca26a312e74b294228be6cb22373c9f73657363a9c0",
    "mine-simans-labeled-list-scores": "de89aed551039122c258b72a115038f38d93dd5dc27254cc01020ce5c1d607c0",
    "mine-ids-window-scores": "fbfdf293809fcabf3de628de38cb4ecbde44df932c7362ab4360170ec281884d",
    "mine-flag-jsonl": "7098207efc0282f61283d3e42017d55ba349d00d049a2c61a528a3658b93cad9",
    "mine-bm25": "a0f175f83c36ac209f6a0c6572ca71c4a18b18a1c372c17d433a08c19d5e65f5",
    "mine-hybrid-relative": "b23dd815fa0b6b09d090e064bad749fd26fbc6339388152aeef59423e06568e7",
    "mine-clusters": "87c3a5375947b999d85dca0f4994ae469bd788fbd65f9280376a78f95a038eda",
    "filter-margins": "0e70af8e49280d345d6e7e62f9e228fea48dda2db82e8cc61615f1c6cf343ba0",
    "filter-guards": "323e23625b38cd33cf7c6bed579992feb1719e13e7baf7a94a002fa46fc4b3f8",
    "filter-keep-duplicates": "4ff1dae5365565960820d89480e0bf785d32c30a38b8f15d779b965f65b693c5",
    "filter-ce-max": "fbd76766ed87e894e5dd2d99ddc72c1c076231e6d31721d20e29210b24b43f40",
    "filter-ce-promote": "d261cbb20599d534791ec0e25f6d222b18e885de74a872cc756ac7d8e43bd445",
    "sweep-json": "695c1df0e6462ea11390dc9f75e4a5086d9839a951613b135cc006822ba4725a",
    "calibrate-json": "00ecc9f90e9146bf4702d75f14a55bcfd32475714089d68e85f22422ceeae5aa",
    "calibrate-grid-json": "cdc0cebeaf183f847ec8b894be0c8d6e5c723baf6d72d30a9268758af2a221a4",
    "dropin-st-defaults": "2b1886f3803a959a2cc01cca63aca28930ff7d500b55ece1e26e607abe67f3b9",
    "dropin-guards": "792b0ce598c40af9f48b0d9dfab4ee2f9f700e3ee0cec4de71d220705784835b",
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def emb(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pins")
    minenegs.encode_dataset(minenegs.load_beir(SAMPLES), root / "emb", DyadicEncoder(), cache_dir=root / "cache",
                            normalize=False)
    return root / "emb"


@pytest.fixture(scope="module")
def pool(emb, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pins-pool") / "pool"
    done = runner.invoke(app, ["mine", str(emb), "-o", str(folder.parent / "seed.parquet"), "--pool", str(folder),
                               "-q"])
    assert done.exit_code == 0, done.output
    return folder


@pytest.fixture(scope="module")
def ce(tmp_path_factory) -> Path:
    """A tiny CrossEncoder with seeded random weights (the same judgement on every run)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("pins-ce")
    tok = AutoTokenizer.from_pretrained(str(minenegs.bundled_model_path()))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=1, max_position_embeddings=512)
    BertForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _check(name: str, digest: str) -> None:
    if os.environ.get("MINENEGS_PRINT_PINS"):
        print(f'    "{name}": "{digest}",')
    assert PINS.get(name) == digest, f"{name}: output changed"


@pytest.mark.parametrize("name,args,out", MINE, ids=[m[0] for m in MINE])
def test_recipe_output_is_pinned(name, args, out, emb, pool, ce, tmp_path):
    fill = {"emb": str(emb), "pool": str(pool), "ce": str(ce)}
    argv = [a.format(**fill) for a in args] + (["-o", str(tmp_path / out), "-q"] if out else [])
    if args[0] == "mine":  # each mine run gets a fresh copy, so no run reuses another's pool
        import shutil

        copy = tmp_path / "emb"
        shutil.copytree(emb, copy, ignore=shutil.ignore_patterns("pools", "indexes"))
        argv[1] = str(copy)
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    data = (tmp_path / out).read_bytes() if out else json.dumps(json.loads(result.stdout), sort_keys=True).encode()
    _check(name, _sha(data))


@pytest.mark.slow
@pytest.mark.parametrize("kw", [{}, {"max_positive_similarity": 0.7, "dup_threshold": 0.95, "num_negatives": 2,
                                     "output_format": "n-tuple"}], ids=["st-defaults", "guards"])
def test_dropin_output_is_pinned(kw, tmp_path):
    ds = minenegs.load_beir(SAMPLES)
    text = dict(zip(ds.corpus.ids, ds.corpus.texts))
    query = dict(zip(ds.queries.ids, ds.queries.texts))
    pairs = [{"anchor": query[r.query_id], "positive": text[r.doc_id]} for r in ds.qrels]
    rows = minenegs.mine_hard_negatives(pairs, str(minenegs.bundled_model_path()), corpus=ds.corpus.texts, verbose=False,
                                        cache_dir=tmp_path, **kw)
    _check("dropin-" + ("guards" if kw else "st-defaults"), _sha(json.dumps(rows.to_dict()).encode()))
