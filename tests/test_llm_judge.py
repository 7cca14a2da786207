"""The LLM judge's client against an OpenAI-compatible server started here on 127.0.0.1 (tests/openai_stub.py):
verdicts, retries on 429/5xx/timeouts/dropped connections, malformed answers as no verdict, a server without
JSON-schema support, the key, bad settings."""

from __future__ import annotations

import pytest

from minenegs.errors import InputError
from minenegs.select.judges.base import NOT_RELEVANT, RELEVANT, Ask
from minenegs.select.judges.llm import LLMJudge
from openai_stub import Stub


def by_marker(prompt: str) -> str:
    """The stub's judgement: a candidate whose text says RELEVANT is relevant."""
    candidate = prompt.split("Candidate document:")[1]
    return RELEVANT if "RELEVANT" in candidate else NOT_RELEVANT


ASKS = [Ask("q one", ("p one",), "c RELEVANT"), Ask("q one", ("p one",), "c plain"), Ask("q two", (), "c RELEVANT")]


def judge(stub: Stub, **kw) -> LLMJudge:
    return LLMJudge("tiny-model", stub.url, backoff=0.01, **kw)


def test_verdicts_tokens_and_the_request_sent():
    with Stub(by_marker) as stub:
        j = judge(stub)
        answers = j.ask_all(ASKS)
    assert [a.verdict for a in answers] == [RELEVANT, NOT_RELEVANT, RELEVANT]
    body = stub.requests[0]["body"]
    assert body["model"] == "tiny-model" and body["temperature"] == 0
    assert body["response_format"]["json_schema"]["schema"]["properties"]["verdict"]["enum"] == [
        "relevant", "not_relevant", "unsure"]
    assert all("- p one" in r["body"]["messages"][0]["content"] for r in stub.requests if "q one" in
               r["body"]["messages"][0]["content"])  # the labelled positives, for reference
    assert j.usage.requests == j.usage.answers == 3 and j.usage.no_verdict == 0
    assert j.usage.completion_tokens == 15 and j.usage.prompt_tokens > 0


@pytest.mark.parametrize("fault", ["429", "500", "drop", "slow"])
def test_a_passing_fault_is_retried(fault):
    with Stub(by_marker) as stub:
        stub.faults = [fault, fault]
        stub.slow_seconds = 3.0
        j = judge(stub, timeout=0.5)
        answers = j.ask_all(ASKS[:1])
    assert answers[0].verdict == RELEVANT
    assert j.usage.retries == 2 and j.usage.requests == 3


def test_a_fault_that_lasts_is_no_verdict_never_not_relevant():
    with Stub(by_marker) as stub:
        stub.faults = ["500"] * 10
        j = judge(stub, retries=2)
        answers = j.ask_all(ASKS[:1])
    assert answers[0].verdict is None and answers[0].error == "HTTP 500"
    assert j.usage.requests == 3 and j.usage.no_verdict == 1


def test_a_malformed_answer_is_no_verdict_and_not_asked_again():
    with Stub(by_marker) as stub:
        stub.faults = ["malformed"]
        j = judge(stub, concurrency=1)  # one at a time: the first ask gets the malformed answer
        answers = j.ask_all(ASKS[:2])
    assert [a.verdict for a in answers] == [None, NOT_RELEVANT] and answers[0].error == "no verdict in the answer"
    assert j.usage.requests == 2 and j.usage.no_verdict == 1


def test_a_server_without_json_schema_is_asked_in_plain_words_and_each_form_is_tried_once():
    with Stub(by_marker, schema=False) as stub:
        j = judge(stub, concurrency=1)
        answers = j.ask_all(ASKS[:3])
    assert [a.verdict for a in answers] == [RELEVANT, NOT_RELEVANT, RELEVANT]
    forms = [(r["body"].get("response_format") or {}).get("type") for r in stub.requests]
    assert forms == ["json_schema", "json_object", None, None, None]  # refused once each, then plain for all
    assert j.usage.retries == 0


def test_a_server_that_takes_only_json_object_gets_the_schema_there_and_a_500_about_it_is_not_retried():
    with Stub(by_marker, schema="json_object") as stub:  # llama-cpp-python's server: a 500 for json_schema
        j = judge(stub, concurrency=1)
        answers = j.ask_all(ASKS[:3])
    assert [a.verdict for a in answers] == [RELEVANT, NOT_RELEVANT, RELEVANT]
    bodies = [r["body"] for r in stub.requests]
    assert [b["response_format"]["type"] for b in bodies] == ["json_schema", "json_object", "json_object",
                                                              "json_object"]
    assert bodies[1]["response_format"]["schema"]["properties"]["verdict"]["enum"] == [
        "relevant", "not_relevant", "unsure"]
    assert j.usage.retries == 0 and j.usage.no_verdict == 0


def test_requests_go_out_concurrently():
    with Stub(by_marker, delay=0.2) as stub:
        seen = []
        j = judge(stub, concurrency=4)
        asks = [Ask(f"q{i}", (), "c") for i in range(8)]
        j.ask_all(asks, done=lambda i, answer: seen.append(asks[i].query))
    assert sorted(seen) == sorted(f"q{i}" for i in range(8))
    assert 1 < stub.most_in_flight <= 4  # several at once, never more than asked


def test_the_key_comes_from_the_named_variable(monkeypatch):
    monkeypatch.setenv("STUB_KEY", "s3cret")
    with Stub(by_marker) as stub:
        judge(stub, key_env="STUB_KEY").ask_all(ASKS[:1])
    assert stub.requests[0]["auth"] == "Bearer s3cret"


@pytest.mark.parametrize("kw,message", [
    ({"template": "no slots at all"}, "has no {query} slot"),
    ({"template": "{query} but no candidate"}, "has no {candidate} slot"),
    ({"template": "{query} {candidate} {other}"}, "not a template"),
    ({"url": "not a url"}, "--judge llm:m@not a url: give the server's base URL"),
    ({"key_env": "NO_SUCH_VARIABLE_SET"}, "--judge-key-env NO_SUCH_VARIABLE_SET: that environment variable is not set"),
    ({"concurrency": 0}, "--judge-concurrency 0"),
])
def test_bad_settings_are_one_line(kw, message):
    with pytest.raises(InputError, match=message.replace("{", r"\{").replace("}", r"\}")):
        LLMJudge("m", kw.pop("url", "http://127.0.0.1:9/v1"), **kw)


def test_an_unreachable_server_is_found_before_any_work():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match=f"--judge llm:m@http://127.0.0.1:{port}/v1: no server answers at http://127.0.0.1:{port}/v1"):
        LLMJudge("m", f"http://127.0.0.1:{port}/v1").probe()


def test_the_fingerprint_follows_what_decides_a_verdict():
    a = LLMJudge("m", "http://127.0.0.1:1/v1")
    assert a.fingerprint() == LLMJudge("m", "http://127.0.0.2:2/v1", concurrency=2).fingerprint()  # where: no
    assert a.fingerprint() != LLMJudge("m2", "http://127.0.0.1:1/v1").fingerprint()
    assert a.fingerprint() != LLMJudge("m", "http://127.0.0.1:1/v1", template="{query}|{candidate}").fingerprint()
