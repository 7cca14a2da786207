"""Output formats, provenance metadata, the short-queries side file, and training on the output."""

from __future__ import annotations

import json
from pathlib import Path

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
from minenegs.api import negatives_from_pool


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("out")
    encode_dataset(load_beir(Path(__file__).resolve().parents[1] / "data_samples"), root / "emb", FakeEncoder(),
                   cache_dir=root / "cache")
    return build_pool(Embeddings(root / "emb"), PoolParams(depth=10, query_clusters=2))


def rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_ntuple_with_scores_and_clusters(tmp_path, pool):
    out = tmp_path / "n.parquet"
    summary = negatives_from_pool(pool, out, MineParams("top", 3), fmt="n-tuple", scores=True)
    got = rows(out)
    assert summary["rows"] == len(got) == 22  # one row per (query, positive)
    assert set(got[0]) == {"anchor", "positive", "negative_1", "negative_2", "negative_3", "score", "cluster_id"}
    assert all(len(r["score"]) == 4 and r["score"][1] >= r["score"][2] >= r["score"][3] for r in got)
    assert {r["cluster_id"] for r in got} <= {0, 1}
    meta = json.loads(pq.read_metadata(out).metadata[b"minenegs"])
    assert meta["rows"] == 22 and meta["params"]["num_negatives"] == 3 and meta["seed"] == 0
    assert meta["fingerprint"] == "fake-bow-1-32" and "corpus" in meta["inputs"]
    assert meta["counts"]["queries"] == 16


def test_triplet_and_labeled_list_and_ids(tmp_path, pool):
    negatives_from_pool(pool, tmp_path / "t.parquet", MineParams("top", 2), fmt="triplet")
    trip = rows(tmp_path / "t.parquet")
    assert len(trip) == 22 * 2 and set(trip[0]) >= {"anchor", "positive", "negative"}
    negatives_from_pool(pool, tmp_path / "l.parquet", MineParams("top", 2), fmt="labeled-list")
    lab = rows(tmp_path / "l.parquet")
    assert len(lab) == 16 and all(r["labels"].count(1) >= 1 and r["labels"][-2:] == [0, 0] for r in lab)
    negatives_from_pool(pool, tmp_path / "i.parquet", MineParams("top", 2), fmt="ids")
    ids = rows(tmp_path / "i.parquet")
    blackhole = [r for r in ids if r["query_id"] == "q-blackhole"]
    assert len(blackhole) == 3 and {r["document_ids"][0] for r in blackhole} == {"blackhole-p1", "blackhole-p2", "blackhole-p3"}
    assert all(len(r["document_ids"]) == len(r["scores"]) == 3 for r in ids)


def test_flag_jsonl(tmp_path, pool):
    out = tmp_path / "train.jsonl"
    negatives_from_pool(pool, out, MineParams("top", 4), fmt="flag-jsonl", scores=True)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 16
    assert all(len(x["neg"]) == 4 == len(x["neg_scores"]) and len(x["pos"]) == len(x["pos_scores"]) for x in lines)


def test_short_queries_go_to_a_side_file_and_are_not_padded(tmp_path, pool):
    out = tmp_path / "n.parquet"
    summary = negatives_from_pool(pool, out, MineParams("top", 3, thresholds={"max_score": 0.25}), fmt="n-tuple")
    side = Path(str(out) + ".short.txt")
    short = side.read_text().split()
    assert summary["queries_short"] == len(short) > 0
    anchors = {r["anchor"] for r in rows(out)}
    queries = dict(zip(Embeddings(json.loads((pool / "manifest.json").read_text())["embeddings"]).ids("queries"),
                       Embeddings(json.loads((pool / "manifest.json").read_text())["embeddings"]).table("queries").texts))
    assert not anchors & {queries[q] for q in short}
    negatives_from_pool(pool, out, MineParams("top", 3), fmt="n-tuple", force=True)
    assert not side.exists()  # a later run without short queries leaves no stale list


def test_filter_cli(tmp_path, pool):
    out = tmp_path / "f.parquet"
    result = CliRunner().invoke(app, ["filter", str(pool), "-o", str(out), "--relative-margin", "0.05", "--json",
                                      "--format", "triplet"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == len(rows(out)) and "removed_by_relative_margin" in summary
    bad = CliRunner().invoke(app, ["filter", str(pool), "-o", str(tmp_path / "x"), "--format", "csv"])
    assert bad.exit_code == 2 and "--format csv: choose one of" in bad.stderr


@pytest.mark.slow
def test_output_trains_with_sentence_transformers_without_reshaping(tmp_path, pool):
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datasets import load_dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    from minenegs.encode.models import bundled_model_path

    out = tmp_path / "train.parquet"
    plain = build_pool(Embeddings(json.loads((pool / "manifest.json").read_text())["embeddings"]), PoolParams(depth=10))
    negatives_from_pool(plain, out, MineParams("top", 2), fmt="n-tuple", scores=False)
    train = load_dataset("parquet", data_files=str(out), split="train")
    model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    before = model[0].auto_model.embeddings.word_embeddings.weight.detach().clone()
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=4,
                                                report_to=[], save_strategy="no", logging_steps=1, use_cpu=True)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train,
                                         loss=MultipleNegativesRankingLoss(model))
    result = trainer.train()
    assert result.global_step == 2
    assert not model[0].auto_model.embeddings.word_embeddings.weight.detach().equal(before)  # it learned


def test_min_coverage_gives_exit_3_and_keeps_the_output(tmp_path, pool):
    out = tmp_path / "n.parquet"
    strict = CliRunner().invoke(app, ["filter", str(pool), "-o", str(out), "--max-score", "0.25", "--min-coverage", "0.99"])
    assert strict.exit_code == 3, strict.output
    assert "below --min-coverage 0.99" in strict.stderr and out.exists()
    lenient = CliRunner().invoke(app, ["filter", str(pool), "-o", str(out), "--max-score", "0.25", "--min-coverage", "0",
                                       "--force", "-q"])
    assert lenient.exit_code == 0
    bad = CliRunner().invoke(app, ["filter", str(pool), "-o", str(tmp_path / "z.parquet"), "--min-coverage", "5"])
    assert bad.exit_code == 2 and not (tmp_path / "z.parquet").exists()


@pytest.mark.parametrize("fmt", ["n-tuple", "triplet", "labeled-list"])
def test_an_arrow_output_is_a_dataset_folder_load_from_disk_opens(tmp_path, pool, fmt):
    from datasets import load_from_disk

    for name in ("n.parquet", "n.arrow"):
        result = CliRunner().invoke(app, ["filter", str(pool), "-o", str(tmp_path / name), "--format", fmt,
                                          "--scores", "--num-negatives", "3", "-q"])
        assert result.exit_code == 0, result.output
    # no progress bar of datasets' own (the fake encoder's pool draws the density warning, nothing else)
    assert [line for line in result.stderr.splitlines() if not line.startswith("warning: these negatives")] == []
    opened = load_from_disk(str(tmp_path / "n.arrow"))
    assert opened.to_list() == rows(tmp_path / "n.parquet")
    assert json.loads(opened.info.description)["minenegs"]["format"] == fmt
    again = CliRunner().invoke(app, ["filter", str(pool), "-o", str(tmp_path / "n.arrow"), "--format", fmt, "-q"])
    assert again.exit_code == 2 and "already exists" in again.stderr  # kept, not half-replaced
    assert load_from_disk(str(tmp_path / "n.arrow")).to_list() == opened.to_list()
