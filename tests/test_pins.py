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
from fakes import DyadicEncoder, tiny_cross_encoder
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
    "mine-default": "506d46feed9808cd7b9ad61d4698ac749d15e6a4bcdcfb2c69b3d9dda779ab2a",
    "mine-random-triplet": "cd9119cf2c250ea941863637b2b19edb820ff23fb766db8c0d6befc71c1c54a3",
    "mine-simans-labeled-list-scores": "fafda5e8abc5d022651821a3b7a10c1bd6f88c205e9f0687916a8cdc4d9cc914",
    "mine-ids-window-scores": "9f245fbbb23af5b03a42b1ac98c27c4ac722039b643f81e2cd00a9b023f3acc9",
    "mine-flag-jsonl": "7098207efc0282f61283d3e42017d55ba349d00d049a2c61a528a3658b93cad9",
    "mine-bm25": "196ca2b8945482b925904d765e01a60efd26243084bc2dfeaebbe26da633498f",
    "mine-hybrid-relative": "bda1dbdb6c113b6160dbc1d2c34495d4ec7d0124b1e782df94f397d7f67e7692",
    "mine-clusters": "fd296f914c4c042b54fe2cc94b4a0bb9d9c907b306fcdd9b7adb380cc6d42121",
    "filter-margins": "a6b17974bd6cd1f4168ca56012f0524a37646fb7d15f120e6b95e8876d7b5e14",
    "filter-guards": "ca3bc95243747db5b65660c13e4dbdfccf4e9a7366f29815234812c0f55bf22e",
    "filter-keep-duplicates": "d45e5bdfcce67a3e2bc37605d86eee63949bff9795227ee8cc0e6d68da1e5ab4",
    "filter-ce-max": "6dbf631306e6a227bcee5893d701e0370fc20aaaaded42636ebaa3aa8eefbb39",
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
    return tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce"))


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
