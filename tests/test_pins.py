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
    "mine-default": "b0e7950f827e5d51bc9b65f4049e0f58313bc5ed2d79311615c4945cedffc781",
    "mine-random-triplet": "aa1b55432b3b82a84f04290778cc358fae4860f4e8cb76793a83c28464dbc688",
    "mine-simans-labeled-list-scores": "51068cc16c9a931d8b7d9e90130c3629cce0f27ac0f6aed899112efe0a9bbe1b",
    "mine-ids-window-scores": "63a85d007ce7d02bbc951af5a0531f65b8e1f0706228213d390aa5280954eed7",
    "mine-flag-jsonl": "7098207efc0282f61283d3e42017d55ba349d00d049a2c61a528a3658b93cad9",
    "mine-bm25": "92fda2526e8be86278c069eb7d0bb7aecef0a4093db5411af949f279de386322",
    "mine-hybrid-relative": "b941a3b2e2d49f1695698e978e7c04de563e1628af290c7c680c5f3e9a78d782",
    "mine-clusters": "9511e1f1d9e348398e5fc5748f3e5311b72ffcbeea0a8744e62d27e2d7a2d74d",
    "filter-margins": "66486e5459c5cdad1b037259b4a81847f9033bd03f4331e38d283aec15a50019",
    "filter-guards": "eb27b3057049b4dfb05470f471d79e4b8eca8480490e997c7bbab89e5469cbfb",
    "filter-keep-duplicates": "32af9338361f4cbd322b213d9c2996c8b543167a6c09dce59a034bbcf866f19c",
    "filter-ce-max": "2ae30da21040ef003807d9d4215e8f525eed7cc0409a7ddb5cc3b7a532703b05",
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
    """The sample data read by a path relative to the checkout (outputs record their inputs' paths: the same
    wherever the checkout is), encoded by the dyadic fake."""
    root = tmp_path_factory.mktemp("pins")
    here = os.getcwd()
    os.chdir(SAMPLES.parent)
    try:
        dataset = minenegs.load_beir(SAMPLES.name)
    finally:
        os.chdir(here)
    minenegs.encode_dataset(dataset, root / "emb", DyadicEncoder(), cache_dir=root / "cache", normalize=False)
    return root / "emb"


@pytest.fixture(scope="module")
def pool(emb, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pins-pool") / "pool"
    done = runner.invoke(app, ["mine", str(emb), "-o", str(folder.parent / "seed.parquet"), "--pool", str(folder),
                               "-q"])
    assert done.exit_code == 0, done.output
    return folder


@pytest.fixture(scope="module")
def ce(tiny_ce) -> Path:
    """A tiny CrossEncoder with seeded random weights (the same judgement on every run)."""
    return tiny_ce


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
