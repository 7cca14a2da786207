"""Pinned outputs: the SHA-256 of what each of these recipes writes on the sample data (a Parquet file's schema,
rows and provenance, whatever pyarrow's version; other outputs' bytes) must not change when the code is
reorganised. The embeddings are the dyadic fake's (exact inner products, the same bytes on every CPU),
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
    ("mine-default", ["mine", "{emb}", "--recipe", "fixed"], "out.parquet"),
    # the fake encoder's pool looks dense to the density probe: the adaptive default mines the dense recipe
    ("mine-default-adaptive", ["mine", "{emb}"], "out.parquet"),
    ("mine-random-triplet", ["mine", "{emb}", "--strategy", "random", "--seed", "7", "--format", "triplet"],
     "out.parquet"),
    ("mine-simans-labeled-list-scores", ["mine", "{emb}", "--strategy", "simans", "--num-negatives", "3",
                                         "--format", "labeled-list", "--scores"], "out.parquet"),
    ("mine-ids-window-scores", ["mine", "{emb}", "--format", "ids", "--scores", "--range-min", "2", "--range-max",
                                "30"], "out.parquet"),
    ("mine-flag-jsonl", ["mine", "{emb}", "--format", "flag-jsonl", "--num-negatives", "4"], "out.jsonl"),
    ("mine-bm25", ["mine", "{emb}", "--retriever", "bm25", "--depth", "30", "--recipe", "fixed"], "out.parquet"),
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
    "mine-default": "8c090f527338668a5c66401d07d8186c16fd1f0f786930cdb99edf313946d4ee",
    "mine-default-adaptive": "c41e06e36ddec780e12aab188332d14c2e4d4c03bc6ed6f2272fe6ac9e0087cc",
    "mine-random-triplet": "1d2183a325fef75c79346dc908d53ea53fbf2213f8415feff7cdfbcdbc3bfeb4",
    "mine-simans-labeled-list-scores": "42636120d4dd0d426ddedd1cf2d1f10e25b35622b7d36b2f05f7a385d5873058",
    "mine-ids-window-scores": "d5d8ce3ba49862645c920f05d17a06b441298049730723d5b3679c847846a7bf",
    "mine-flag-jsonl": "7098207efc0282f61283d3e42017d55ba349d00d049a2c61a528a3658b93cad9",
    "mine-bm25": "0dd290d62a7580ff0a2d268825b473a6754548f3f205ed4c4d6050ba130c6cea",
    "mine-hybrid-relative": "68acab05156626dbcd3e3e592c6c3ee2f09357cbf89606cb5681466750933a66",
    "mine-clusters": "c571b25d4853fc9b9b804e3acb8fd2bdf2de235309d44c1c77e687b08a927bdd",
    "filter-margins": "87a24e824c1687ca2717a67adc7dc184efa4bd2156408600536d7526e8cf4caa",
    "filter-guards": "0f0c9abbb4166723cc9d34bd4290d02ac574185d217f239ce27a493bf2ad2adf",
    "filter-keep-duplicates": "194204185f2852e94e62457e993aee0c699b2d6e538b282e972c0511084fa0d1",
    "filter-ce-max": "c30da8d60a388c65311fa4bfdcf53f6b106a90501c72adaef1ac80e18e19c00a",
    "filter-ce-promote": "d261cbb20599d534791ec0e25f6d222b18e885de74a872cc756ac7d8e43bd445",
    "sweep-json": "695c1df0e6462ea11390dc9f75e4a5086d9839a951613b135cc006822ba4725a",
    "calibrate-json": "00ecc9f90e9146bf4702d75f14a55bcfd32475714089d68e85f22422ceeae5aa",
    "calibrate-grid-json": "cdc0cebeaf183f847ec8b894be0c8d6e5c723baf6d72d30a9268758af2a221a4",
    "dropin-st-defaults": "2b1886f3803a959a2cc01cca63aca28930ff7d500b55ece1e26e607abe67f3b9",
    "dropin-guards": "792b0ce598c40af9f48b0d9dfab4ee2f9f700e3ee0cec4de71d220705784835b",
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _content(path: Path) -> bytes:
    """What an output says: a Parquet file's schema, rows and minenegs provenance (not pyarrow's encoding of them,
    which changes with pyarrow's version: the writer's name and version are in every footer); other files' bytes."""
    if path.suffix != ".parquet":
        return path.read_bytes()
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = pq.ParquetFile(path).metadata.metadata or {}
    return json.dumps({"schema": [(f.name, str(f.type)) for f in table.schema], "rows": table.to_pydict(),
                       "minenegs": json.loads(meta.get(b"minenegs", b"null"))}, sort_keys=True).encode()


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
    data = _content(tmp_path / out) if out else json.dumps(json.loads(result.stdout), sort_keys=True).encode()
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
