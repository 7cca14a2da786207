"""The cross-encoder filter with a tiny CrossEncoder built here (random weights: it tests the code path,
not the judgement), and the promise that filtering without one never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fakes import FakeEncoder
from minenegs.cli import app
from minenegs.inputs.dataset import load_beir
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings
from minenegs.select.params import MineParams
from minenegs.retrieve.pool import PoolParams, build_pool
from minenegs.select.judges import CrossEncoderJudge, sigmoid
from minenegs.select.judging import Judging
from minenegs.api import negatives_from_pool


@pytest.fixture
def pool(tmp_path) -> Path:
    encode_dataset(load_beir(Path(__file__).resolve().parents[1] / "data_samples"), tmp_path / "emb", FakeEncoder(),
                   cache_dir=tmp_path / "cache")
    return build_pool(Embeddings(tmp_path / "emb"), PoolParams(depth=20))


@pytest.fixture
def calls(monkeypatch) -> list[list[tuple[str, str]]]:
    seen: list[list[tuple[str, str]]] = []
    original = CrossEncoderJudge.predict

    def spy(self, pairs):
        seen.append(list(pairs))
        return original(self, pairs)

    monkeypatch.setattr(CrossEncoderJudge, "predict", spy)
    return seen


def cached(pool: Path) -> dict[str, float]:
    """The cross-encoder's cached logits: one file, in the verdict cache every judge writes."""
    files = list((pool / "judges").glob("ce-*.jsonl"))
    assert len(files) == 1
    return {e["key"]: e["verdict"] for e in map(json.loads, files[0].read_text().splitlines())}


def test_scores_once_in_batches_spanning_queries_then_reuses_the_cache(tmp_path, pool, tiny_ce, calls):
    negatives_from_pool(pool, tmp_path / "a.parquet", MineParams("top", 3, ce_depth=10), judging=Judging(scorer=CrossEncoderJudge(str(tiny_ce))))
    scored = cached(pool)
    # positives (22) and each query's non-positive candidates up to rank 10
    assert len(scored) == sum(len(c) for c in calls) and 16 * 10 <= len(scored) <= 16 * 10 + 22
    assert len({q for q, _ in calls[0]}) > 1  # one batch holds pairs of several queries
    calls.clear()
    negatives_from_pool(pool, tmp_path / "b.parquet", MineParams("top", 3, ce_depth=10, thresholds={"ce_max": 0.4}),
                        judging=Judging(scorer=CrossEncoderJudge(str(tiny_ce))))
    assert calls == []  # a new threshold re-scores nothing
    negatives_from_pool(pool, tmp_path / "c.parquet", MineParams("top", 3, ce_depth=12), judging=Judging(scorer=CrossEncoderJudge(str(tiny_ce))))
    assert 0 < sum(len(c) for c in calls) <= 16 * 2  # deeper: only the new ranks are scored


def test_ce_max_drops_what_the_cross_encoder_finds_relevant(tmp_path, pool, tiny_ce):
    negatives_from_pool(pool, tmp_path / "a.parquet", MineParams("top", 3, ce_depth=20), judging=Judging(scorer=CrossEncoderJudge(str(tiny_ce))))
    probs = {k: float(sigmoid(np.float32(v))) for k, v in cached(pool).items()}
    t = float(np.median(list(probs.values())))
    summary = negatives_from_pool(pool, tmp_path / "b.parquet", MineParams("top", 3, ce_depth=20,
                                  thresholds={"ce_max": t}), judging=Judging(scorer=CrossEncoderJudge(str(tiny_ce))), scores=True, fmt="triplet")
    assert summary["removed_by_ce_max"] > 0  # works without any margin set
    rows = pq.read_table(tmp_path / "b.parquet").to_pylist()
    assert rows and all(sigmoid(np.float32(r["ce_score"][1])) <= t for r in rows)
    assert all(len(r["score"]) == len(r["ce_score"]) == 2 for r in rows)


def test_promote_writes_pseudo_positives(tmp_path, pool, tiny_ce):
    negatives_from_pool(pool, tmp_path / "a.parquet", MineParams("top", 2, ce_depth=20), judging=Judging(scorer=CrossEncoderJudge(str(tiny_ce))))
    probs = sorted(float(sigmoid(np.float32(v))) for v in cached(pool).values())
    t = probs[int(len(probs) * 0.9)]
    base = negatives_from_pool(pool, tmp_path / "b.parquet", MineParams("top", 2, ce_depth=20),
                               judging=Judging(scorer=CrossEncoderJudge(str(tiny_ce))), fmt="labeled-list")
    lifted = negatives_from_pool(pool, tmp_path / "c.parquet", MineParams("top", 2, ce_depth=20,
                                 thresholds={"ce_max": t, "promote": t}), judging=Judging(scorer=CrossEncoderJudge(str(tiny_ce))), fmt="labeled-list")
    assert lifted["promoted"] > 0 and base["promoted"] == 0
    before = sum(r["labels"].count(1) for r in pq.read_table(tmp_path / "b.parquet").to_pylist())
    after = sum(r["labels"].count(1) for r in pq.read_table(tmp_path / "c.parquet").to_pylist())
    assert after == before + lifted["promoted"]


def test_ce_thresholds_need_a_cross_encoder(tmp_path, pool):
    result = CliRunner().invoke(app, ["filter", str(pool), "-o", str(tmp_path / "x.parquet"), "--ce-max", "0.9"])
    assert result.exit_code == 2 and "--ce-max and --promote need --cross-encoder" in result.stderr


def test_cli_cross_encoder(tmp_path, pool, tiny_ce):
    out = tmp_path / "x.parquet"
    result = CliRunner().invoke(app, ["filter", str(pool), "-o", str(out), "--cross-encoder", str(tiny_ce),
                                      "--ce-max", "0.99", "--scores", "--json"])
    assert result.exit_code == 0, result.output
    assert "ce_score" in pq.read_schema(out).names


def test_filtering_without_a_cross_encoder_does_not_import_torch(tmp_path, pool):
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom minenegs.cli import app\n"
            f"r = CliRunner().invoke(app, ['filter', {str(pool)!r}, '-o', {str(tmp_path / 'o.parquet')!r}, "
            "'--relative-margin', '0.05', '--dup-threshold', '0.9', '-q'])\n"
            "assert r.exit_code == 0, r.output\nprint('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_calibrate_takes_cross_encoder_thresholds_as_an_axis(pool, tiny_ce, calls):
    import json

    args = ["calibrate", str(pool), "--cross-encoder", str(tiny_ce), "--ce-max", "off,0", "--min-queries", "3",
            "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    by_setting = {row["ce_max"]: row for row in json.loads(result.stdout)["settings"]}
    assert set(by_setting) == {None, 0.0}
    # ce-max 0 drops every scored candidate (all 20 ranks are within --ce-depth 30): nothing is handed out
    assert by_setting[0.0]["leaks"] == 0 and by_setting[0.0]["share_empty"] == 1.0
    assert by_setting[None]["share_empty"] == 0.0 and by_setting[None]["negatives_per_query"] == 5
    assert calls  # scored once ...
    calls.clear()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and json.loads(again.stdout) == json.loads(result.stdout)
    assert calls == []  # ... and read from the pool's cache the second time
    no_model = CliRunner().invoke(app, ["calibrate", str(pool), "--ce-max", "0.5", "--min-queries", "3"])
    assert no_model.exit_code == 2 and "--cross-encoder" in no_model.stderr


def test_one_cache_for_the_filters_and_the_judge_whatever_the_threshold(tmp_path, pool, tiny_ce, calls):
    """Scores the --ce-max filter paid for answer --judge cross-encoder:... at any threshold, and back."""
    def filter_(*args: str) -> dict:
        result = CliRunner().invoke(app, ["filter", str(pool), "-o", str(tmp_path / "x.parquet"), "--force", "--json",
                                          "--num-negatives", "3", *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    filter_("--cross-encoder", str(tiny_ce), "--ce-max", "1", "--ce-depth", "20")
    scored = len(cached(pool))
    assert calls and scored == sum(len(c) for c in calls)
    calls.clear()
    probs = np.sort(sigmoid(np.asarray(list(cached(pool).values()), dtype=np.float32)))
    for t in (probs[len(probs) // 2], 1.0):  # about half flagged, then none
        judged = filter_("--judge", f"cross-encoder:{tiny_ce}@{t:.6f}", "--judge-probes", "0")["judging"]["judges"]
        assert judged["cross-encoder"]["calls"] == 0 and judged["cross-encoder"]["cache_hits"] > 0
    assert calls == [] and len(cached(pool)) == scored and len(list((pool / "judges").iterdir())) == 1
