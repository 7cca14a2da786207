"""Reports: summary statistics, inspect (and its plot), sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakes import FakeEncoder
from conftest import select_negatives
from minenegs.cli import app
from minenegs.inputs.dataset import load_beir
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings

from minenegs.select.params import MineParams
from minenegs.select.selection import score_stats
from minenegs.retrieve.pool import PoolParams, build_pool
from minenegs.api import negatives_from_pool, sweep
from minenegs.report.stats import inspect_path



@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rep")
    encode_dataset(load_beir(Path(__file__).resolve().parents[1] / "data_samples"), root / "emb", FakeEncoder(),
                   cache_dir=root / "cache")
    return build_pool(Embeddings(root / "emb"), PoolParams(depth=30))


def test_score_stats_by_hand():
    assert score_stats([[1.0, 2.0], [3.0, float("nan")]]) == {"n": 3, "mean": 2.0, "p5": 1.1, "p50": 2.0, "p95": 2.9}
    assert score_stats([]) == {"n": 0}


def test_summary_has_statistics_of_kept_and_dropped(pool):
    sel = select_negatives(pool, MineParams("top", 3, thresholds={"relative_margin": 0.0}))
    s = sel.summary(3)["scores"]
    assert s["positives"]["n"] == 22 and s["negatives"]["n"] == sum(len(n) for n in sel.negatives)
    assert s["dropped"]["n"] == sel.removed["relative_margin"] > 0
    for kept, dropped in zip(sel.negative_scores, sel.dropped_scores):  # margin 0: dropped ones beat the positive
        if len(kept) and len(dropped):
            assert dropped.min() > kept.max()


def test_sweep_matches_select_and_grows_with_the_margin(pool):
    rows = sweep(pool, MineParams("top", 5), {"relative_margin": [0.0, 0.05, 0.2, 0.5]})
    assert [r["relative_margin"] for r in rows] == [0.0, 0.05, 0.2, 0.5]
    removed = [r["removed"] for r in rows]
    assert removed == sorted(removed) and removed[-1] > removed[0]
    direct = select_negatives(pool, MineParams("top", 5, thresholds={"relative_margin": 0.5}))
    assert rows[-1]["queries_short"] == len(direct.short)
    assert rows[-1]["removed"] == sum(direct.removed.values())


def test_inspect_pool_and_output_and_plot(tmp_path, pool):
    info, pos, neg = inspect_path(pool)
    assert info["kind"] == "pool" and info["queries"] == 16 and info["scores"]["positives"]["n"] == 22
    out = tmp_path / "o.parquet"
    negatives_from_pool(pool, out, MineParams("top", 3), fmt="n-tuple", scores=True)
    result = CliRunner().invoke(app, ["inspect", str(out), "--plot", str(tmp_path / "h.png"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 22 and summary["scores"]["positives"]["n"] == 22
    assert summary["scores"]["negatives"]["n"] == 66
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspect_without_scores_says_so(tmp_path, pool):
    out = tmp_path / "o.parquet"
    negatives_from_pool(pool, out, MineParams("top", 3), fmt="n-tuple")
    info, _, _ = inspect_path(out)
    assert "write outputs with --scores" in info["note"]
    bad = CliRunner().invoke(app, ["inspect", str(out), "--plot", str(tmp_path / "h.png")])
    assert bad.exit_code == 2 and "nothing to plot" in bad.stderr


def test_sweep_cli(pool):
    result = CliRunner().invoke(app, ["sweep", str(pool), "--relative-margin", "0,0.1", "--max-score", "0.5,0.9",
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 4
    bad = CliRunner().invoke(app, ["sweep", str(pool), "--relative-margin", "a,b"])
    assert bad.exit_code == 2 and "comma-separated values" in bad.stderr
    none = CliRunner().invoke(app, ["sweep", str(pool)])
    assert none.exit_code == 2


@pytest.mark.parametrize("args, says", [
    (["--relative-margin", ","], "grid is empty"),
    (["--max-positive-similarity", "0.5,nan"], "finite number"),
    (["--max-positive-similarity", "inf"], "finite number"),
    (["--max-positive-similarity", "1.5"], "in [-1.0, 1.0]"),
    (["--relative-margin", "-0.1"], "in [0.0, 1.0]"),
    (["--ce-max", "2", "--cross-encoder", "x"], "in [0.0, 1.0]"),
    (["--strategy", "top,best", "--relative-margin", "0"], "--strategy best"),
])
@pytest.mark.parametrize("command", ["sweep", "calibrate"])
def test_bad_grids_exit_2_with_one_line(pool, command, args, says):
    result = CliRunner().invoke(app, [command, str(pool), *args])
    assert result.exit_code == 2 and says in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["--max-positive-similarity", "nan"], ["--dup-threshold", "inf"],
                                  ["--relative-margin", "1.5"], ["--simans-a", "0"], ["--simans-b", "nan"],
                                  ["--absolute-margin", "-1"]])
def test_bad_thresholds_exit_2_with_one_line(tmp_path, pool, args):
    result = CliRunner().invoke(app, ["filter", str(pool), "-o", str(tmp_path / "o.parquet"), *args])
    assert result.exit_code == 2 and result.stderr.startswith("minenegs: error: "), result.output
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.parquet").exists()


def test_every_command_has_quiet_and_json():
    import typer.main

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        flags = {opt for p in command.params for opt in getattr(p, "opts", [])}
        assert {"--quiet", "--json"} <= flags, name


def test_quiet_prints_nothing(tmp_path, pool):
    out = tmp_path / "o.parquet"
    result = CliRunner().invoke(app, ["filter", str(pool), "-o", str(out), "-q"])
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""
    result = CliRunner().invoke(app, ["inspect", str(out), "-q"])
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""


@pytest.mark.parametrize("width, shown", [(80, 3), (200, 7)])
def test_preview_shows_the_columns_that_fit_and_names_the_rest(pool, tmp_path, capsys, monkeypatch, width, shown):
    from minenegs.report.console import show_rows

    out = tmp_path / "n.parquet"
    negatives_from_pool(pool, out, MineParams("top", 5), fmt="n-tuple")
    monkeypatch.setenv("COLUMNS", str(width))
    show_rows(out, 2, quiet=False)
    err = capsys.readouterr().err
    header = next(line for line in err.splitlines() if "anchor" in line)  # the line of column names
    columns = ["anchor", "positive"] + [f"negative_{i}" for i in range(1, 6)]
    assert [c for c in columns if c in header] == columns[:shown]
    if shown < len(columns):
        assert f"not shown: {', '.join(columns[shown:])}" in err
    else:
        assert "not shown" not in err
