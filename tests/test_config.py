"""Recipes: `minenegs run CONFIG`, `--set` overrides, root `--config` defaults that flags override."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from minenegs.cli import app
from minenegs.config import load_config, section_args

ROOT = Path(__file__).resolve().parents[1]


def recipe(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "r.toml"
    path.write_text(f"""
[encode]
data = "{ROOT / 'data_samples'}"
output = "{tmp_path / 'emb'}"
cache-dir = "{tmp_path / 'cache'}"

[mine]
num-negatives = 2
relative-margin = 0.05
output = "{tmp_path / 'neg.parquet'}"
{extra}
""")
    return path


def meta(path: Path) -> dict:
    return json.loads(pq.read_metadata(path).metadata[b"minenegs"])


def test_run_a_recipe_then_override_a_key(tmp_path):
    cfg = recipe(tmp_path)
    first = CliRunner().invoke(app, ["run", str(cfg), "-q"])
    assert first.exit_code == 0, first.output
    assert meta(tmp_path / "neg.parquet")["params"]["strategy"] == "top"
    assert meta(tmp_path / "neg.parquet")["params"]["thresholds"]["relative_margin"] == 0.05
    again = CliRunner().invoke(app, ["run", str(cfg), "--force", "--set", "mine.strategy=simans",
                                     "--set", "mine.num-negatives=3", "--json"])
    assert again.exit_code == 0, again.output
    summaries = [json.loads(line) for line in again.stdout.splitlines()]
    assert summaries[0]["texts_encoded"] == 0  # the encode stage was cached
    assert summaries[1]["num_negatives"] == 3
    assert meta(tmp_path / "neg.parquet")["params"]["strategy"] == "simans"


def test_flags_override_the_config(tmp_path):
    cfg = recipe(tmp_path)
    assert CliRunner().invoke(app, ["run", str(cfg), "-q"]).exit_code == 0
    out = tmp_path / "other.parquet"
    result = CliRunner().invoke(app, ["--config", str(cfg), "mine", str(tmp_path / "emb"), "-o", str(out),
                                      "--relative-margin", "0.2", "-q"])
    assert result.exit_code == 0, result.output
    params = meta(out)["params"]
    assert params["thresholds"]["relative_margin"] == 0.2 and params["num_negatives"] == 2  # flag, then file


@pytest.mark.parametrize("extra, message", [
    ("bogus = 1", "mine has no option 'bogus'"),
    ("[train]\nx = 1", "unknown section 'train'"),
    ("relative-margin = [", "not valid TOML"),
])
def test_bad_recipes_fail_before_any_work(tmp_path, extra, message):
    result = CliRunner().invoke(app, ["run", str(recipe(tmp_path, extra))])
    assert result.exit_code == 2 and message in result.stderr
    assert not (tmp_path / "emb").exists()


def test_bad_set_override(tmp_path):
    result = CliRunner().invoke(app, ["run", str(recipe(tmp_path)), "--set", "relative-margin=0.1"])
    assert result.exit_code == 2 and "write section.key=value" in result.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_recipes_are_valid(path):
    import typer.main

    group = typer.main.get_command(app)
    for name, section in load_config(path).items():
        args = section_args(group.commands[name], section, str(path))
        assert args
