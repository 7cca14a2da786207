"""The default recipe: `minenegs mine` and `minenegs filter` default to configs/default.toml's [mine] section, the
recipe benchmarks/finetune.py chose (benchmarks/RESULTS.md), and so does the library's MineParams."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import typer.main
from fakes import FakeEncoder
from typer.testing import CliRunner

from minenegs import recipe
from minenegs.recipe import DENSE, DENSE_MAX_POSITIVE_SIMILARITY
from minenegs.cli import app
from minenegs.config import _param, load_config
from minenegs.inputs.dataset import load_beir
from minenegs.encode.embeddings import encode_dataset
from minenegs.select.params import MineParams

ROOT = Path(__file__).resolve().parents[1]
RECIPE = load_config(ROOT / "configs" / "default.toml")["mine"]
WHERE = {"output", "format"}  # where the rows go, not how they are chosen
RETRIEVAL = {"retriever", "depth"}  # how the pool is made: `filter` takes a made pool


def test_the_recipe_sets_how_negatives_are_chosen():
    assert {"strategy", "num-negatives"} <= set(RECIPE)


@pytest.mark.parametrize("command", ["mine", "filter"])
def test_command_defaults_are_the_recipe(command):
    cmd = typer.main.get_command(app).commands[command]
    for key, value in RECIPE.items():
        if key not in WHERE and not (command == "filter" and key in RETRIEVAL):
            default = _param(cmd, key, "default.toml").default
            if key == "dup-threshold":  # None on the command line: 0.95 unless --keep-duplicates
                default = recipe.DUP_THRESHOLD
            if key == "max-positive-similarity":  # None on the command line: 0.7 unless --keep-duplicates
                default = recipe.MAX_POSITIVE_SIMILARITY
            assert default == value, key


def test_library_defaults_are_the_recipe():
    params = MineParams()
    assert params.strategy == RECIPE["strategy"]
    assert params.num_negatives == RECIPE["num-negatives"]
    assert params.range_min == RECIPE.get("range-min", 0)


@pytest.mark.parametrize("recipe_name", ["fixed", "adaptive"])
def test_mine_without_options_writes_what_the_recipe_writes(samples, cache_dir, tmp_path, recipe_name):
    emb = tmp_path / "emb"
    encode_dataset(load_beir(samples), emb, FakeEncoder(), cache_dir=cache_dir)
    plain, recipe = tmp_path / "plain.parquet", tmp_path / "recipe.parquet"
    runner = CliRunner()
    result = runner.invoke(app, ["mine", str(emb), "-o", str(plain), "--quiet", "--recipe", recipe_name])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["--config", str(ROOT / "configs" / "default.toml"), "mine", str(emb),
                                 "-o", str(recipe), "--quiet", "--recipe", recipe_name])
    assert result.exit_code == 0, result.output
    a, b = pq.read_table(plain), pq.read_table(recipe)
    assert a.num_rows > 0 and a.equals(b)
    params = [json.loads(pq.read_metadata(p).metadata[b"minenegs"])["params"] for p in (plain, recipe)]
    assert params[0] == params[1]
    assert params[0]["thresholds"]["dup_threshold"] == RECIPE["dup-threshold"]
    guard = RECIPE["max-positive-similarity"] if recipe_name == "fixed" else DENSE_MAX_POSITIVE_SIMILARITY
    assert params[0]["thresholds"]["max_positive_similarity"] == guard
    # the fake encoder's pool looks dense: the adaptive default writes the dense recipe's one negative there
    negatives = RECIPE["num-negatives"] if recipe_name == "fixed" else DENSE["num_negatives"]
    assert len([c for c in a.column_names if c.startswith("negative")]) == negatives


def test_keep_duplicates_turns_the_similarity_filters_off(samples, cache_dir, tmp_path):
    emb = tmp_path / "emb"
    encode_dataset(load_beir(samples), emb, FakeEncoder(), cache_dir=cache_dir)
    out = tmp_path / "keep.parquet"
    result = CliRunner().invoke(app, ["mine", str(emb), "-o", str(out), "--keep-duplicates", "--quiet"])
    assert result.exit_code == 0, result.output
    thresholds = json.loads(pq.read_metadata(out).metadata[b"minenegs"])["params"]["thresholds"]
    assert thresholds.get("dup_threshold") is None and thresholds.get("duplicate_text") is None
    assert thresholds.get("max_positive_similarity") is None
    guarded = tmp_path / "guarded.parquet"
    result = CliRunner().invoke(app, ["mine", str(emb), "-o", str(guarded), "--keep-duplicates",
                                      "--max-positive-similarity", "0.8", "--quiet"])
    assert result.exit_code == 0, result.output
    thresholds = json.loads(pq.read_metadata(guarded).metadata[b"minenegs"])["params"]["thresholds"]
    assert thresholds["max_positive_similarity"] == 0.8 and thresholds.get("dup_threshold") is None
    both = CliRunner().invoke(app, ["mine", str(emb), "-o", str(tmp_path / "x.parquet"), "--keep-duplicates",
                                    "--dup-threshold", "0.9"])
    assert both.exit_code == 2 and "not both" in both.stderr
    assert not (tmp_path / "x.parquet").exists()
