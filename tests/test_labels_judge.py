"""The labels judge (``--judge labels:PATH``): verdicts read from a file of labelled pairs, one kind of judge in
one module, found by the registry like every other."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import SAMPLES
from fakes import FakeEncoder
from minenegs.cli import app
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings
from minenegs.inputs.dataset import load_beir
from minenegs.retrieve.pool import PoolParams, build_pool
from minenegs.select.judges import KINDS, parse_judge
from minenegs.select.judges.labels import LabelsJudge

runner = CliRunner()


@pytest.fixture
def pool(tmp_path) -> Path:
    encode_dataset(load_beir(SAMPLES), tmp_path / "emb", FakeEncoder(), cache_dir=tmp_path / "cache")
    return build_pool(Embeddings(tmp_path / "emb"), PoolParams(depth=20))


def texts(pool: Path, table: str) -> list[str]:
    return pq.read_table(pool.parent.parent / f"{table}.parquet", columns=["text"]).column("text").to_pylist()


def write_labels(path: Path, queries: list[str], docs: list[str]) -> None:
    """Every (query, document) pair labelled: relevant when the document's text has a length divisible by 3 (a
    grade 2), else not relevant (the verdict word)."""
    with open(path, "w", encoding="utf-8") as fh:
        for q in queries:
            for d in docs:
                fh.write(json.dumps({"query": q, "candidate": d, "verdict": 2 if len(d) % 3 == 0 else "not_relevant"})
                         + "\n")


def run(pool: Path, out: Path, *extra: str):
    return runner.invoke(app, ["filter", str(pool), "-o", str(out), "--format", "flag-jsonl", "--json",
                               "--keep-duplicates", "--num-negatives", "3", "--judge-probes", "0", *extra])


def test_the_registry_finds_it_and_parses_its_spec(tmp_path):
    assert {"llm", "cross-encoder", "labels"} <= set(KINDS) and KINDS["labels"].syntax == "labels:PATH"
    (tmp_path / "l.jsonl").write_text(json.dumps({"query": "q", "candidate": "c", "verdict": "relevant"}) + "\n")
    judge = parse_judge(f"labels:{tmp_path / 'l.jsonl'}")
    assert isinstance(judge, LabelsJudge) and judge.name == "labels"
    assert judge.fingerprint() == parse_judge(f"labels:{tmp_path / 'l.jsonl'}").fingerprint()
    (tmp_path / "m.jsonl").write_text(json.dumps({"query": "q", "candidate": "c", "verdict": 0}) + "\n")
    assert parse_judge(f"labels:{tmp_path / 'm.jsonl'}").fingerprint() != judge.fingerprint()  # another file


def test_it_clears_what_the_file_calls_not_relevant_and_nothing_unlabelled(pool, tmp_path):
    queries, docs = texts(pool, "queries"), texts(pool, "corpus")
    write_labels(tmp_path / "all.jsonl", queries, docs)
    result = run(pool, tmp_path / "a.jsonl", "--judge", f"labels:{tmp_path / 'all.jsonl'}")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    got = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    negatives = [n for r in got for n in r["neg"]]
    assert negatives and all(len(n) % 3 != 0 for n in negatives)  # the file's relevant ones are dropped
    judge = summary["judging"]["judges"]["labels"]
    assert judge["verdicts"]["relevant"] == summary["removed_by_judges"] > 0
    assert judge["calls"] == len(negatives) + summary["removed_by_judges"]

    write_labels(tmp_path / "half.jsonl", queries[:10], docs)  # the other queries' pairs are not in the file
    half = run(pool, tmp_path / "h.jsonl", "--judge", f"labels:{tmp_path / 'half.jsonl'}")
    assert half.exit_code == 0, half.output
    rows = [json.loads(line) for line in (tmp_path / "h.jsonl").read_text().splitlines()]
    handed = {r["query"] for r in rows if r["neg"]}
    assert handed and handed <= set(queries[:10])  # no verdict: not handed out
    assert json.loads(half.stdout)["judging"]["judges"]["labels"]["verdicts"]["none"] > 0


@pytest.mark.parametrize("content,message", [
    ('{"query": "q", "candidate": "c"}\n', "l.jsonl:1: give"),
    ('{"query": "q", "candidate": "c", "verdict": "maybe"}\n', "l.jsonl:1: give"),
    ('not json\n', "l.jsonl:1: give"),
])
def test_a_bad_labels_file_is_one_line_exit_2_and_no_output(pool, tmp_path, content, message):
    (tmp_path / "l.jsonl").write_text(content)
    result = run(pool, tmp_path / "o.jsonl", "--judge", f"labels:{tmp_path / 'l.jsonl'}")
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.jsonl").exists()
    missing = run(pool, tmp_path / "o.jsonl", "--judge", f"labels:{tmp_path / 'none.jsonl'}")
    assert missing.exit_code == 2 and "no such file" in missing.stderr
