"""The density probe and the adaptive default: what is measured, when the recipe switches, the line, the warning,
``--recipe fixed`` and ``--fail-on-dense``."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fakes import FakeEncoder
from minenegs.cli import app
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings
from minenegs.inputs.dataset import load_beir
from minenegs.select.adaptive import ABOVE_POSITIVE, choose, measure
from minenegs.select.candidates import read_pool_arrays
from minenegs.select.engine import Selector
from minenegs.select.params import MineParams
from test_mine import write_pool

TOPICS = 24


def _pool(tmp_path: Path, queries) -> Selector:
    return Selector(read_pool_arrays(write_pool(tmp_path / "p", queries)))


def test_above_positive_counted_by_hand(tmp_path):
    # 10 queries: 6 with the positive at rank 1 (nothing above it), 4 with it at rank 4 (three candidates above)
    sparse = [[(0.9, True)] + [(0.5 - 0.01 * i, False) for i in range(8)] for _ in range(6)]
    dense = [[(0.8, False), (0.79, False), (0.78, False), (0.7, True)] + [(0.5 - 0.01 * i, False) for i in range(5)]
             for _ in range(4)]
    got = measure(_pool(tmp_path, sparse + dense), MineParams("top", 5))
    assert got.above_positive == pytest.approx(12 / 50) and 12 / 50 < ABOVE_POSITIVE  # 3 of each dense query's 5
    assert got.leak is None and got.queries == 10 and got.positives_per_query == 1.0
    assert not got.dense
    only_dense = measure(_pool(tmp_path / "d", dense), MineParams("top", 5))
    assert only_dense.above_positive == pytest.approx(3 / 5) and 3 / 5 >= ABOVE_POSITIVE and only_dense.dense
    # the same queries, negatives from rank 5 on: none outranks the positive
    assert measure(_pool(tmp_path / "w", dense), MineParams("top", 5, range_min=4)).above_positive == 0.0


def test_the_hold_out_leak_is_reported_not_decisive(tmp_path):
    # two positives at ranks 1-2 per query: nothing outranks a positive, but a held-out positive is handed out
    queries = [[(0.9, True), (0.85, True)] + [(0.8 - 0.01 * i, False) for i in range(6)] for _ in range(20)]
    got = measure(_pool(tmp_path, queries), MineParams("top", 5))
    assert got.above_positive == 0.0 and not got.dense
    assert got.leak is not None and got.leak.rate == 1.0 and got.leak.holdouts == 40
    assert "hold-out leak 100%" in got.describe() and got.to_dict()["leak"]["rate"] == 1.0
    # skipping the top two ranks, the held-out positive is out of reach
    assert measure(_pool(tmp_path / "s", queries), MineParams("top", 5, range_min=2)).leak.rate == 0.0
    # fewer than MIN_QUERIES queries with two positives: no estimate
    assert measure(_pool(tmp_path / "f", queries[:5]), MineParams("top", 5)).leak is None


def test_only_the_default_switches_and_only_when_adaptive(tmp_path):
    # 100 ranks deep: the dense recipe skips the first 30
    dense = [[(0.8, False), (0.79, False), (0.78, False), (0.7, True)] + [(0.5 - 0.004 * i, False) for i in range(96)]
             for _ in range(4)]
    pool = _pool(tmp_path, dense)
    default = MineParams.default()
    switched = choose(pool, default, "adaptive", "m")
    assert switched.switched and "dense relevance likely" in switched.line() and not switched.risky
    p = switched.params
    assert (p.strategy, p.num_negatives, p.range_min, p.seed) == ("random", 1, 30, 0)
    assert p.thresholds["max_positive_similarity"] == 0.5 and p.thresholds["dup_threshold"] == 0.95
    assert switched.to_dict()["loss"] == {"name": "GISTEmbedLoss", "guide": "m"}
    assert choose(pool, MineParams.default(seed=4)).params.seed == 4  # the seed is the user's
    for kept in (choose(pool, default, "fixed"), choose(pool, MineParams.default(num_negatives=3))):
        assert not kept.switched and kept.density.dense and kept.params.num_negatives > 0
        # 3 of their first 3-5 negatives outrank the positive; none of the dense recipe's (ranks 31+)
        assert kept.risky and kept.asked >= 0.6 and kept.safe == 0.0 and "outrank" in kept.warning()
    # negatives from the dense recipe's ranks, asked for by hand: no risk above the recipe's own
    assert not choose(pool, MineParams("random", 2, range_min=35)).risky
    sparse = [[(0.9, True)] + [(0.5 - 0.01 * i, False) for i in range(8)] for _ in range(4)]
    left = choose(_pool(tmp_path / "s", sparse), default)
    assert not left.switched and left.params == default and "sparse" in left.line() and not left.risky
    # a shallower pool: the window starts 30 % down it
    assert choose(_pool(tmp_path / "h", [q[:50] for q in dense]), default).params.range_min == 15
    # a pool too shallow for the dense recipe to give half its queries a negative: kept as given, with the warning
    below_top = [[(0.8, False), (0.7, True), (0.69, True), (0.68, True)] for _ in range(4)]  # all but rank 1 skipped
    shallow = choose(_pool(tmp_path / "t", below_top), default)
    assert not shallow.switched and shallow.params == default and shallow.risky


def _topics(root: Path, dense: bool) -> Path:
    """Per topic a query and ONE labelled positive. ``dense``: ten documents share the query's three words and the
    positive two of them among noise, so every top candidate outranks the positive, as where relevance is dense
    and one label is given; else the positive has the query's words and the ten only one of them."""
    data = root / "data"
    (data / "qrels").mkdir(parents=True)
    queries, corpus, qrels = [], [], ["query-id\tcorpus-id\tscore"]
    for t in range(TOPICS):
        queries.append({"_id": f"q{t}", "text": f"topic{t} alpha{t} beta{t}"})
        shared, positive = (f"topic{t} alpha{t} beta{t}", f"topic{t} alpha{t}") if dense else (f"topic{t}", f"topic{t} alpha{t} beta{t}")
        corpus += [{"_id": f"t{t}-{j}", "text": f"{shared} filler{t}x{j}"} for j in range(10)]
        corpus.append({"_id": f"p{t}", "text": positive + " " + " ".join(f"noise{t}x{j}" for j in range(8 if dense else 1))})
        qrels.append(f"q{t}\tp{t}\t1")
    for name, rows in (("queries.jsonl", queries), ("corpus.jsonl", corpus)):
        (data / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (data / "qrels" / "train.tsv").write_text("\n".join(qrels) + "\n")
    encode_dataset(load_beir(data), root / "emb", FakeEncoder(dim=256), cache_dir=root / "cache")
    return root / "emb"


@pytest.fixture(scope="module")
def dense_emb(tmp_path_factory) -> Path:
    return _topics(tmp_path_factory.mktemp("dense"), dense=True)


def _mine(emb: Path, out: Path, *args: str):
    return CliRunner().invoke(app, ["mine", str(emb), "-o", str(out), "--preview", "0", *args])


def test_dense_data_gets_the_dense_recipe_and_says_why(tmp_path, dense_emb):
    out = tmp_path / "out.parquet"
    result = _mine(dense_emb, out, "--json")
    assert result.exit_code == 0, result.output
    density = json.loads(result.stdout)["density"]
    assert density["chose"] == "dense" and density["dense"] and density["above_positive"] == 1.0
    assert density["loss"] == {"name": "GISTEmbedLoss", "guide": Embeddings(dense_emb).manifest["model"]}
    table = pq.read_table(out)
    assert table.column_names == ["anchor", "positive", "negative_1"] and table.num_rows == TOPICS
    meta = json.loads(pq.read_metadata(out).metadata[b"minenegs"])
    assert (meta["params"]["strategy"], meta["params"]["num_negatives"], meta["params"]["range_min"]) == ("random", 1, 30)
    assert meta["training"]["name"] == "GISTEmbedLoss" and meta["training"]["density"]["above_positive"] == 1.0
    # each negative is another topic's document: none shares the query's topic word
    for row in table.to_pylist():
        assert row["anchor"].split()[0] not in row["negative_1"].split()
    again = _mine(dense_emb, tmp_path / "again.parquet")  # without --json: the one line on stderr
    assert again.exit_code == 0 and "dense relevance likely (100% of the top negatives outrank" in again.stderr
    assert "warning" not in again.stderr
    # triplets too: the dense recipe has a negative a row
    triplets = _mine(dense_emb, tmp_path / "t.parquet", "--format", "triplet", "--json")
    assert json.loads(triplets.stdout)["density"]["chose"] == "dense"
    assert pq.read_table(tmp_path / "t.parquet").num_rows == TOPICS


def test_fixed_recipe_keeps_the_negatives_and_warns(tmp_path, dense_emb):
    out = tmp_path / "out.parquet"
    result = _mine(dense_emb, out, "--recipe", "fixed", "--quiet")
    assert result.exit_code == 0
    assert result.stderr.startswith("warning: these negatives will likely hurt training: dense relevance (100% of "
                                    "the top negatives outrank")
    assert "100% of the negatives asked for outrank their query's positive (the dense recipe's: 0%)" in result.stderr
    assert "Safer: minenegs filter" in result.stderr
    table = pq.read_table(out)
    assert table.num_rows == TOPICS and "negative_5" in table.column_names
    assert "training" not in json.loads(pq.read_metadata(out).metadata[b"minenegs"])
    # explicit options are the user's choice under the adaptive recipe too: written, with the warning
    chosen = _mine(dense_emb, tmp_path / "chosen.parquet", "--num-negatives", "3", "--json")
    assert chosen.exit_code == 0 and "warning" in json.loads(chosen.stdout)["density"]
    # the dense recipe's own options, given by hand: no warning
    by_hand = _mine(dense_emb, tmp_path / "hand.parquet", "--strategy", "random", "--num-negatives", "1",
                    "--range-min", "30", "--max-positive-similarity", "0.5", "--json")
    density = json.loads(by_hand.stdout)["density"]
    assert by_hand.exit_code == 0 and density["chose"] == "as given" and "warning" not in density
    assert pq.read_table(tmp_path / "hand.parquet").equals(pq.read_table(_default_dense(dense_emb, tmp_path)))


def _default_dense(emb: Path, tmp_path: Path) -> Path:
    out = tmp_path / "default.parquet"
    assert _mine(emb, out, "--quiet").exit_code == 0
    return out


def test_fail_on_dense_exits_3_and_writes_nothing(tmp_path, dense_emb):
    out = tmp_path / "out.parquet"
    result = _mine(dense_emb, out, "--recipe", "fixed", "--fail-on-dense")
    assert result.exit_code == 3 and "--fail-on-dense: these negatives will likely hurt" in result.stderr
    assert not out.exists() and not list(tmp_path.iterdir())
    # the adaptive default has nothing to fail on: it mined the dense recipe
    assert _mine(dense_emb, out, "--fail-on-dense").exit_code == 0 and out.exists()


def test_sparse_data_is_mined_as_before(tmp_path):
    emb = _topics(tmp_path, dense=False)
    outs = {}
    for recipe in ("adaptive", "fixed"):
        outs[recipe] = tmp_path / f"{recipe}.parquet"
        result = _mine(emb, outs[recipe], "--recipe", recipe, "--json")
        assert result.exit_code == 0
        density = json.loads(result.stdout)["density"]
        assert density["chose"] == "as given" and density["above_positive"] == 0.0 and not density["dense"]
        assert "warning" not in density
    assert pq.read_table(outs["fixed"]).num_rows == TOPICS and pq.read_table(outs["adaptive"]).equals(pq.read_table(outs["fixed"]))


def test_an_unknown_recipe_is_one_line(tmp_path, dense_emb):
    result = _mine(dense_emb, tmp_path / "o.parquet", "--recipe", "loose")
    assert result.exit_code == 2 and "--recipe loose: choose one of adaptive, fixed" in result.stderr
    assert not (tmp_path / "o.parquet").exists()
