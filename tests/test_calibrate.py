"""calibrate: hold-one-positive-out leak estimates, their interval, the grid, the picked recipe."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fakes import FakeEncoder
from conftest import select_negatives
from minenegs.select.calibrate import calibrate, leak_interval, pick
from minenegs.cli import app
from minenegs.inputs.dataset import load_beir
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings
from minenegs.errors import AcceptanceError, InputError
from minenegs.select.candidates import corpus_view, read_pool_arrays
from minenegs.select.engine import Selector
from minenegs.select.params import MineParams
from minenegs.retrieve.pool import PoolParams, build_pool
from test_mine import write_pool


@pytest.fixture(scope="module")
def sample_pool(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cal")
    encode_dataset(load_beir(Path(__file__).resolve().parents[1] / "data_samples"), root / "emb",
                   FakeEncoder(dim=256), cache_dir=root / "cache")
    return build_pool(Embeddings(root / "emb"), PoolParams(depth=30))


def test_interval_is_wilson_without_clustering_and_wider_with_it():
    leaked = np.array([1] * 30 + [0] * 70)
    alone = leak_interval(leaked, np.arange(100))
    # Wilson 95 % for 30/100, by hand: centre (0.3 + z^2/200) / (1 + z^2/100), half-width as below
    z = 1.959964
    centre = (0.3 + z * z / 200) / (1 + z * z / 100)
    half = z / (1 + z * z / 100) * math.sqrt(0.3 * 0.7 / 100 + z * z / 40000)
    assert alone.rate == 0.3 and alone.holdouts == 100 and alone.queries == 100
    assert alone.low == pytest.approx(centre - half) and alone.high == pytest.approx(centre + half)
    clustered = leak_interval(np.array([1, 1] * 15 + [0, 0] * 35), np.repeat(np.arange(50), 2))  # pairs agree
    assert clustered.rate == 0.3 and clustered.queries == 50
    assert clustered.high - clustered.low > 1.3 * (alone.high - alone.low)
    none = leak_interval(np.zeros(40, int), np.arange(40))
    assert none.rate == 0 and none.low == 0 and 0.05 < none.high < 0.1


def test_leaks_counted_by_hand(tmp_path):
    # every query: positives at ranks 1 and 2, then six candidates
    queries = [[(0.9, True), (0.85, True)] + [(0.8 - 0.01 * i, False) for i in range(6)] for _ in range(4)]
    engine = Selector(read_pool_arrays(write_pool(tmp_path / "p", queries)))
    rows = calibrate(engine, MineParams("top", 1), {"range_min": [0, 1, 2]}, min_queries=4)
    by_window = {r.setting["range_min"]: r for r in rows}
    # window from rank 1: holding out either positive hands it out (the other positive is skipped)
    assert by_window[0].estimate.leaks == 8 and by_window[0].estimate.holdouts == 8
    # from rank 2: the rank-1 positive is out of reach; holding out rank 2 still leaks
    assert by_window[1].estimate.leaks == 4
    assert by_window[2].estimate.leaks == 0 and by_window[2].mean_rank == 3.0
    assert by_window[0].mean_rank == 3.0 and by_window[0].share_short == 0.0


def test_unreached_positives_are_not_held_out(tmp_path):
    queries = [[(0.9, True), (0.5, False), (0.4, False)] for _ in range(3)]
    arrays = read_pool_arrays(write_pool(tmp_path / "p", queries))
    arrays["is_positive"][1::3] = True  # a second positive per query, but never retrieved
    arrays["retrieved"][1::3] = False
    inst = Selector(arrays).holdouts()
    assert sorted(inst.held_out.tolist()) == [0, 3, 6]


def test_holdouts_agree_with_mining_the_pool_relabelled(sample_pool):
    """With the corpus guards on, each hold-out's negatives are what mining gives when that positive is simply
    not labelled."""
    emb = Embeddings(json.loads((sample_pool / "manifest.json").read_text())["embeddings"])
    corpus = corpus_view(emb)
    arrays = read_pool_arrays(sample_pool)
    engine = Selector(arrays, corpus)
    params = MineParams("simans", 3, seed=1, thresholds={"duplicate_text": 1.0, "dup_threshold": 0.95,
                                                         "max_positive_similarity": 0.6, "relative_margin": 0.02})
    inst = engine.holdouts()
    assert len(inst.held_out) >= 8
    from minenegs.select.engine import RowsView

    got = engine.pick(RowsView(engine, inst), params)
    chosen = got.split(arrays["doc_idx"][inst.rows])
    for k, held in enumerate(inst.held_out):
        relabelled = {**arrays, "is_positive": arrays["is_positive"].copy()}
        relabelled["is_positive"][held] = False
        ref = select_negatives(sample_pool, params, corpus, arrays=relabelled)
        q = int(inst.segment[k])
        assert chosen[k].tolist() == ref.negatives[q].tolist()


def test_too_few_queries_is_an_error_not_an_estimate(sample_pool):
    engine = Selector(read_pool_arrays(sample_pool))
    with pytest.raises(InputError, match="at least 20 queries with two or more positives"):
        calibrate(engine, MineParams("top", 3), {"relative_margin": [0.0]})


def test_pick_takes_the_hardest_setting_under_the_bound(tmp_path):
    queries = [[(0.9, True), (0.85, True)] + [(0.8 - 0.01 * i, False) for i in range(6)] for _ in range(30)]
    rows = calibrate(Selector(read_pool_arrays(write_pool(tmp_path / "p", queries))), MineParams("top", 1),
                     {"range_min": [0, 1, 2, 3]}, min_queries=30)
    chosen = pick(rows, 0.2)
    assert chosen.setting == {"range_min": 2}  # 3 is cleaner too, but less hard
    with pytest.raises(AcceptanceError, match="no setting keeps the leak upper bound"):
        pick(rows[:2], 0.2)
    with pytest.raises(InputError):
        pick(rows, float("nan"))


def test_calibrate_cli_table_json_plot_and_recipe(tmp_path, sample_pool):
    runner = CliRunner()
    recipe, png = tmp_path / "cal.toml", tmp_path / "front.png"
    result = runner.invoke(app, ["calibrate", str(sample_pool), "--min-queries", "3", "--num-negatives", "3",
                                 "--max-positive-similarity", "off,0.5,0.7", "--range-min", "0,5",
                                 "--max-leak", "1", "--max-short", "1", "--recipe", str(recipe), "--plot", str(png),
                                 "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert len(info["settings"]) == 6 and info["holdouts"] >= 8 and info["queries"] == 5
    for row in info["settings"]:
        assert row["leak_low"] <= row["leak_rate"] <= row["leak_high"] and row["holdouts"] == info["holdouts"]
    hardest = min(info["settings"], key=lambda r: (r["mean_rank"], r["leak_high"]))
    assert info["picked"]["mean_rank"] == hardest["mean_rank"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = recipe.read_text()
    assert text.startswith("# picked by `minenegs calibrate") and "[mine]" in text
    assert "depth = 30" in text and 'retriever = "dense"' in text  # what the leaks were measured at
    # the recipe is accepted by --config (mine's defaults) and gives the picked setting
    out = tmp_path / "neg.parquet"
    emb = json.loads((sample_pool / "manifest.json").read_text())["embeddings"]
    mined = runner.invoke(app, ["--config", str(recipe), "mine", emb, "-o", str(out), "--depth", "30",
                                "--json"])
    assert mined.exit_code == 0, mined.output
    assert json.loads(mined.stdout)["negatives"] == round(info["picked"]["negatives_per_query"] * 16)
    # the table
    table = runner.invoke(app, ["calibrate", str(sample_pool), "--min-queries", "3", "--relative-margin", "0,0.1"])
    assert table.exit_code == 0 and "leak" in table.stderr and "held-out positives" in table.stderr


def test_calibrate_cli_refuses_a_pool_with_too_few_queries(sample_pool, tmp_path):
    result = CliRunner().invoke(app, ["calibrate", str(sample_pool), "--max-leak", "0.1", "--recipe",
                                      str(tmp_path / "r.toml")])
    assert result.exit_code == 2 and "label a second positive" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "r.toml").exists()


@pytest.fixture(scope="module")
def two_positive_emb(tmp_path_factory) -> str:
    """25 queries, each with two positives among 150 documents (FakeEncoder: word-hash vectors)."""
    from minenegs.records import Dataset, Qrel, TextTable

    words = [f"w{i}" for i in range(60)]
    rng = np.random.default_rng(0)
    docs = [" ".join(rng.choice(words, 8)) for _ in range(150)]
    queries = [" ".join(docs[2 * q].split()[:3] + docs[2 * q + 1].split()[:3]) for q in range(25)]
    qrels = [Qrel(f"q{q}", f"d{2 * q + k}") for q in range(25) for k in (0, 1)]
    ds = Dataset(TextTable([f"d{i}" for i in range(150)], docs), TextTable([f"q{q}" for q in range(25)], queries), qrels)
    root = tmp_path_factory.mktemp("two")
    encode_dataset(ds, root / "emb", FakeEncoder(dim=128), cache_dir=root / "cache")
    return str(root / "emb")


def test_mine_max_leak_calibrates_then_mines(tmp_path, two_positive_emb):
    runner = CliRunner()
    out = tmp_path / "neg.parquet"
    result = runner.invoke(app, ["mine", two_positive_emb, "-o", str(out), "--max-leak", "1", "--max-short", "1",
                                 "--num-negatives", "2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    cal = summary["calibrated"]
    assert cal["holdouts"] >= 40 and 0 <= cal["leak_low"] <= cal["leak_rate"] <= cal["leak_high"] <= 1
    assert out.exists() and summary["queries"] == 25
    for bad in ("nan", "1.5", "-0.1"):
        refused = runner.invoke(app, ["mine", two_positive_emb, "-o", str(tmp_path / "x.parquet"), "--max-leak", bad])
        assert refused.exit_code == 2 and "--max-leak" in refused.stderr and not (tmp_path / "x.parquet").exists()
    strict = tmp_path / "strict.parquet"
    refused = runner.invoke(app, ["mine", two_positive_emb, "-o", str(strict), "--max-leak", "0"])
    assert refused.exit_code == 3 and "no setting keeps the leak upper bound" in refused.stderr
    assert not strict.exists()
