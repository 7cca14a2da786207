"""Listwise LLM judging (``--judge-batch K``): one request for up to K candidates of a query, the same verdicts
as one request each from a deterministic server, fewer prompt tokens a verdict, one cache whatever K, a missing or
malformed item costing that item only."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from typer.testing import CliRunner

from minenegs.cli import app
from minenegs.errors import InputError
from minenegs.select.judges.base import NOT_RELEVANT, RELEVANT, Ask
from minenegs.select.judges.prompts import list_verdicts
from minenegs.select.judges.llm import LLMJudge
from minenegs.select.judges import JudgeOptions, parse_judge
from openai_stub import Stub
from test_judging import kill_after, pool, thirds  # noqa: F401  (pool: the fixture)
from test_llm_judge import by_marker

ASKS = [Ask("q one", ("p one", "p two"), f"c{i} {'RELEVANT' if i % 3 == 0 else 'plain'} words words words")
        for i in range(7)] + [Ask("q two", (), "c RELEVANT")]


def _verdicts(stub: Stub, batch: int) -> tuple[list, LLMJudge]:
    judge = LLMJudge("tiny", stub.url, backoff=0.01, batch=batch)
    done = []
    said = judge.verdicts(ASKS, lambda i, v: done.append((i, v)))
    assert sorted(done) == list(enumerate(said))  # each verdict reported once, as it arrived
    return said, judge


def test_listwise_gives_the_same_verdicts_in_fewer_requests_and_tokens():
    with Stub(by_marker) as stub:
        one, single = _verdicts(stub, 1)
        five, listwise = _verdicts(stub, 5)
        listed = [r["body"] for r in stub.requests[len(ASKS):]]
    assert one == five == [RELEVANT if i % 3 == 0 else NOT_RELEVANT for i in range(7)] + [RELEVANT]
    assert single.usage.requests == 8 and listwise.usage.requests == 3  # q one: 5 + 2, q two: 1
    assert listwise.usage.answers == 8 and listwise.usage.no_verdict == 0
    assert listwise.usage.prompt_tokens < 0.6 * single.usage.prompt_tokens
    first = next(b["messages"][0]["content"] for b in listed if "\n[5] " in b["messages"][0]["content"])
    assert len(re.findall(r"(?m)^\[\d\] ", first)) == 5 and "[5] c4" in first and first.count("- p one") == 1  # positives sent once
    assert listed[0]["response_format"]["json_schema"]["schema"]["required"] == ["verdicts"]
    assert single.fingerprint() == listwise.fingerprint()  # one cache whatever K


def test_a_missing_or_malformed_item_is_no_verdict_for_it_alone():
    with Stub(by_marker) as stub:
        stub.faults = ["missing-first"]
        judge = LLMJudge("tiny", stub.url, backoff=0.01, batch=5, concurrency=1)
        said = judge.verdicts(ASKS[:5], lambda i, v: None)
    assert said[0] is None and said[1:] == [NOT_RELEVANT, NOT_RELEVANT, RELEVANT, NOT_RELEVANT]
    assert judge.usage.no_verdict == 1 and judge.usage.requests == 1
    response = {"choices": [{"message": {"content": json.dumps({"verdicts": [
        {"id": 1, "verdict": "relevant"}, {"id": 2, "verdict": "maybe"}, {"id": 3, "verdict": "unsure"},
        {"id": 3, "verdict": "relevant"}, {"id": 9, "verdict": "relevant"}, "junk"]})}}]}
    assert list_verdicts(response, 4) == [RELEVANT, None, None, None]  # unknown word, given twice, missing
    plain = {"choices": [{"message": {"content": "1: relevant\n2. Not relevant\n[3] unsure"}}]}
    assert list_verdicts(plain, 3) == [RELEVANT, NOT_RELEVANT, "unsure"]
    assert list_verdicts({"choices": [{"message": {"content": "{broken"}}]}, 2) == [None, None]


def test_a_server_without_structured_answers_is_asked_in_plain_words():
    with Stub(by_marker, schema=False) as stub:
        judge = LLMJudge("tiny", stub.url, backoff=0.01, batch=5, concurrency=1)
        said = judge.verdicts(ASKS[:5], lambda i, v: None)
    assert said == [RELEVANT, NOT_RELEVANT, NOT_RELEVANT, RELEVANT, NOT_RELEVANT]
    assert "response_format" not in stub.requests[-1]["body"]


def test_filter_with_a_batch_writes_what_one_at_a_time_writes_and_shares_the_cache(pool, tmp_path):  # noqa: F811
    copy = tmp_path / "copy"  # the same pool, its own (empty) verdict cache
    shutil.copytree(pool, copy)

    def filter_(folder, out, *extra):
        result = CliRunner().invoke(app, ["filter", str(folder), "-o", str(out), "--format", "flag-jsonl", "--json",
                                          "--keep-duplicates", "--num-negatives", "5", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["judging"]["judges"]["llm:tiny"]

    with Stub(thirds) as one, Stub(thirds) as five:
        single = filter_(pool, tmp_path / "one.jsonl", "--judge", f"llm:tiny@{one.url}")
        listwise = filter_(copy, tmp_path / "five" / "five.jsonl", "--judge", f"llm:tiny@{five.url}",
                           "--judge-batch", "5")
        assert (tmp_path / "one.jsonl").read_text() == (tmp_path / "five" / "five.jsonl").read_text()
        assert listwise["calls"] == single["calls"] and len(five.requests) < len(one.requests)
        per_verdict = [j["usage"]["prompt_tokens"] / j["calls"] for j in (single, listwise)]
        assert per_verdict[1] < per_verdict[0]
        again = filter_(pool, tmp_path / "again.jsonl", "--judge", f"llm:tiny@{five.url}", "--judge-batch", "3")
    assert again["calls"] == 0 and again["cache_hits"] == single["calls"]  # another K asks nothing answered


def test_bad_batches_are_one_line():
    with pytest.raises(InputError, match="--judge-batch 0: must be at least 1"):
        LLMJudge("tiny", "http://127.0.0.1:9/v1", batch=0)
    with pytest.raises(InputError, match="with --judge-batch 4, give a listwise template with"):
        parse_judge("llm:tiny@http://127.0.0.1:9/v1", JudgeOptions(template="{query} {candidate}", batch=4))
    own = parse_judge("llm:tiny@http://127.0.0.1:9/v1", JudgeOptions(template="{query}: {candidates}", batch=4))
    assert own.list_template == "{query}: {candidates}"
    assert own.fingerprint() != parse_judge("llm:tiny@http://127.0.0.1:9/v1", JudgeOptions(batch=4)).fingerprint()


KILLED = """
import sys
sys.argv = ["minenegs", "filter", {pool!r}, "-o", {out!r}, "--format", "flag-jsonl", "--keep-duplicates",
            "--num-negatives", "5", "--judge", "llm:tiny@{url}", "--judge-batch", "5", "--judge-concurrency", "2",
            "-q"]
from minenegs.cli import main
main()
"""


def _pairs(request: dict) -> set[str]:
    """The (query, candidate) pairs a listwise request asked about, as their one-candidate prompts."""
    from openai_stub import pointwise

    return set(pointwise(request["body"]["messages"][0]["content"]) or [])


def test_a_listwise_run_killed_midway_then_rerun_repeats_no_answered_pair(pool, tmp_path):  # noqa: F811
    with Stub(thirds, delay=0.05) as stub:
        kill_after(stub, KILLED.format(pool=str(pool), out=str(tmp_path / "k.jsonl"), url=stub.url), 8)
        answered = set().union(*(_pairs(r) for r in stub.requests[:4]))  # sent well before the kill
        before = len(stub.requests)
        assert answered and not (tmp_path / "k.jsonl").exists()
        result = CliRunner().invoke(app, ["filter", str(pool), "-o", str(tmp_path / "k.jsonl"), "--format",
                                          "flag-jsonl", "--keep-duplicates", "--num-negatives", "5", "--judge",
                                          f"llm:tiny@{stub.url}", "--judge-batch", "5", "-q"])
        assert result.exit_code == 0, result.output
        again = set().union(*(_pairs(r) for r in stub.requests[before:]))
    assert again and not answered & again
