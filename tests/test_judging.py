"""Judges in `mine` and `filter`, against OpenAI-compatible servers started here on 127.0.0.1: lazy calls, the
verdict cache (a rerun and a killed run repeat no answered call), veto and confirm chains, actions, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import SAMPLES
from fakes import FakeEncoder, near_docs_pool
from minenegs.cli import app
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings
from minenegs.inputs.dataset import load_beir
from minenegs.retrieve.pool import PoolParams, build_pool
from openai_stub import Stub

runner = CliRunner()


def candidate(prompt: str) -> str:
    return prompt.split("Candidate document:\n")[1].split("\n\nIs the candidate")[0]


def thirds(prompt: str) -> str:
    """A judge that calls about a third of the candidates relevant, the same way every time."""
    return "relevant" if len(candidate(prompt)) % 3 == 0 else "not_relevant"


@pytest.fixture
def pool(tmp_path) -> Path:
    encode_dataset(load_beir(SAMPLES), tmp_path / "emb", FakeEncoder(), cache_dir=tmp_path / "cache")
    return build_pool(Embeddings(tmp_path / "emb"), PoolParams(depth=20))


def run(pool: Path, out: Path, *extra: str):
    result = runner.invoke(app, ["filter", str(pool), "-o", str(out), "--format", "flag-jsonl", "--json",
                                 "--keep-duplicates", "--num-negatives", "3", *extra])
    return result


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_judges_lazily_and_hands_out_only_what_it_cleared(pool, tmp_path):
    with Stub(thirds) as stub:
        result = run(pool, tmp_path / "a.jsonl", "--judge", f"llm:tiny@{stub.url}", "--judge-probes", "0")
        asked = [candidate(r["body"]["messages"][0]["content"]) for r in stub.requests]
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    got = rows(tmp_path / "a.jsonl")
    negatives = [n for r in got for n in r["neg"]]
    assert negatives and all(len(n) % 3 != 0 for n in negatives)  # nothing the judge called relevant
    flagged = sum(1 for text in asked if len(text) % 3 == 0)
    assert len(asked) == len(negatives) + flagged  # asked only until each query had its three
    assert len(asked) < 16 * 20  # not the whole depth
    judge = summary["judging"]["judges"]["llm:tiny"]
    assert judge["calls"] == len(asked) and judge["cache_hits"] == 0 and judge["seconds"] > 0
    assert judge["verdicts"]["relevant"] == flagged == summary["removed_by_judges"]
    assert judge["usage"]["completion_tokens"] == 5 * len(asked)


def test_the_output_records_the_judges_and_no_run_counts(pool, tmp_path):
    with Stub(thirds) as stub:
        for name in ("a", "b"):
            result = runner.invoke(app, ["filter", str(pool), "-o", str(tmp_path / f"{name}.parquet"), "-q",
                                         "--num-negatives", "3", "--judge", f"llm:tiny@{stub.url}"])
            assert result.exit_code == 0, result.output
    meta = json.loads(pq.read_metadata(tmp_path / "a.parquet").metadata[b"minenegs"])
    assert meta["judging"]["mode"] == "veto" and meta["judging"]["judges"][0].startswith("llm-")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()  # the rerun: same bytes


def test_a_rerun_and_a_new_strategy_ask_no_answered_pair_again(pool, tmp_path):
    with Stub(thirds) as stub:
        run(pool, tmp_path / "a.jsonl", "--judge", f"llm:tiny@{stub.url}")
        first = len(stub.requests)
        again = run(pool, tmp_path / "b.jsonl", "--judge", f"llm:tiny@{stub.url}")
        assert len(stub.requests) == first  # every verdict came from the pool's cache
        rerun = json.loads(again.stdout)["judging"]["judges"]["llm:tiny"]
        assert rerun["cache_hits"] == first and rerun["calls"] == 0 and rerun["seconds"] == 0
        assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
        run(pool, tmp_path / "c.jsonl", "--judge", f"llm:tiny@{stub.url}", "--strategy", "random", "--seed", "4")
        prompts = [r["body"]["messages"][0]["content"] for r in stub.requests]
    assert len(prompts) == len(set(prompts))  # no pair asked twice across the three runs


KILLED = """
import sys
sys.argv = ["minenegs", "filter", {pool!r}, "-o", {out!r}, "--format", "flag-jsonl", "--keep-duplicates",
            "--num-negatives", "3", "--judge", "llm:tiny@{url}", "--judge-concurrency", "2", "-q"]
from minenegs.cli import main
main()
"""


def kill_after(stub: Stub, script: str, requests: int) -> None:
    """Run ``script`` in a child process and SIGKILL it once the stub has had ``requests`` requests."""
    proc = subprocess.Popen([sys.executable, "-c", script])
    while len(stub.requests) < requests and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_a_run_killed_midway_then_rerun_repeats_no_answered_call(pool, tmp_path):
    with Stub(thirds, delay=0.05) as stub:
        kill_after(stub, KILLED.format(pool=str(pool), out=str(tmp_path / "k.jsonl"), url=stub.url), 12)
        answered = {candidate(r["body"]["messages"][0]["content"]) + r["body"]["messages"][0]["content"][:80]
                    for r in stub.requests[:8]}  # sent well before the kill: answered and cached
        before = len(stub.requests)
        assert not (tmp_path / "k.jsonl").exists()
        rerun = run(pool, tmp_path / "k.jsonl", "--judge", f"llm:tiny@{stub.url}")
        assert rerun.exit_code == 0, rerun.output
        again = [candidate(r["body"]["messages"][0]["content"]) + r["body"]["messages"][0]["content"][:80]
                 for r in stub.requests[before:]]
        whole = run(pool, tmp_path / "w.jsonl", "--judge", f"llm:tiny@{stub.url}")
    assert not answered & set(again)
    assert (tmp_path / "k.jsonl").read_text() == (tmp_path / "w.jsonl").read_text()
    assert json.loads(whole.stdout)["judging"]["judges"]["llm:tiny"]["calls"] == 0


def everything(prompt: str) -> str:
    return "relevant"


def half(prompt: str) -> str:
    return "relevant" if len(candidate(prompt)) % 2 == 0 else "not_relevant"


def test_confirm_sends_only_what_the_cheap_judge_flags_and_the_last_word_stands(pool, tmp_path):
    with Stub(half) as cheap, Stub(thirds) as strong:
        result = run(pool, tmp_path / "c.jsonl", "--judge", f"llm:cheap@{cheap.url}", "--judge",
                     f"llm:strong@{strong.url}", "--judge-mode", "confirm")
        to_strong = [candidate(r["body"]["messages"][0]["content"]) for r in strong.requests]
    assert result.exit_code == 0, result.output
    assert to_strong and all(len(t) % 2 == 0 for t in to_strong)  # only the cheap judge's flags
    negatives = [n for r in rows(tmp_path / "c.jsonl") for n in r["neg"]]
    cleared_by_strong = [t for t in to_strong if len(t) % 3 != 0]
    assert set(cleared_by_strong) & set(negatives)  # a cheap false alarm the strong judge overruled is handed out
    assert all(len(n) % 2 != 0 or len(n) % 3 != 0 for n in negatives)


def test_veto_needs_every_judge_to_clear(pool, tmp_path):
    with Stub(half) as first, Stub(thirds) as second:
        result = run(pool, tmp_path / "v.jsonl", "--judge", f"llm:first@{first.url}", "--judge",
                     f"llm:second@{second.url}")
        to_second = [candidate(r["body"]["messages"][0]["content"]) for r in second.requests]
    assert result.exit_code == 0, result.output
    assert to_second and all(len(t) % 2 != 0 for t in to_second)  # only what the first cleared
    negatives = [n for r in rows(tmp_path / "v.jsonl") for n in r["neg"]]
    assert all(len(n) % 2 != 0 and len(n) % 3 != 0 for n in negatives)


def test_promote_writes_flagged_candidates_as_positives_and_a_budget_caps_calls(pool, tmp_path):
    with Stub(thirds) as stub:
        promoted = run(pool, tmp_path / "p.jsonl", "--judge", f"llm:tiny@{stub.url}", "--judge-action", "promote")
        plain = rows(tmp_path / "p.jsonl")
        extra = [p for r in plain for p in r["pos"] if len(p) % 3 == 0]
        assert promoted.exit_code == 0 and extra
        capped = run(pool, tmp_path / "b.jsonl", "--judge", f"llm:other@{stub.url}", "--judge-budget", "5")
    assert json.loads(capped.stdout)["judging"]["judges"]["llm:other"]["calls"] == 5


def test_one_depth_caps_what_any_judge_looks_at(pool, tmp_path):
    """--judge-depth N: the lazy walk asks about at most N candidates a query (an all-relevant judge would go on);
    --ce-depth is the same option, and the output records it where every output does."""
    with Stub(everything) as stub:
        capped = run(pool, tmp_path / "d.jsonl", "--judge", f"llm:tiny@{stub.url}", "--judge-depth", "2",
                     "--judge-probes", "0")
        per_query = len(stub.requests)
        stub.requests.clear()
        same = runner.invoke(app, ["filter", str(pool), "-o", str(tmp_path / "e.parquet"), "-q", "--keep-duplicates",
                                   "--num-negatives", "3", "--judge", f"llm:other@{stub.url}", "--ce-depth", "2",
                                   "--judge-probes", "0"])
        assert same.exit_code == 3, same.output  # the empty output is still written, with its provenance
        assert len(stub.requests) == per_query
    assert capped.exit_code == 0 and json.loads(capped.stdout)["removed_by_judges"] == 16 * 2, capped.output
    assert per_query == 16 * 2
    meta = json.loads(pq.read_metadata(tmp_path / "e.parquet").metadata[b"minenegs"])
    assert meta["params"]["ce_depth"] == 2


@pytest.mark.parametrize("extra,message", [
    (["--judge", "llm:tiny@http://127.0.0.1:{dead}/v1"], "--judge llm:tiny@http://127.0.0.1:{dead}/v1: no server answers"),
    (["--judge", "llm:tiny@localhost"], "--judge llm:tiny@localhost: give the server's base URL"),
    (["--judge", "cross-encoder:/no/such/path"], "--judge cross-encoder:/no/such/path: no such folder"),
    (["--cross-encoder", "/no/such/path", "--ce-max", "0.9"], "--cross-encoder /no/such/path: no such folder"),
    (["--judge", "llm:tiny@{url}", "--judge-key-env", "MINENEGS_NO_SUCH_KEY"], "environment variable is not set"),
    (["--judge", "llm:tiny@{url}", "--judge-template", "{template}"], "has no {candidate} slot"),
    (["--judge", "llm:tiny@{url}", "--judge-budget", "0"], "--judge-budget"),
    (["--judge", "nonsense"], "--judge nonsense: give one of cross-encoder:NAME_OR_PATH[@T], labels:PATH, llm:MODEL@URL"),
    (["--judge", "llm:tiny@{url}", "--judge-mode", "vote"], "--judge-mode vote"),
])
def test_bad_judge_settings_are_one_line_exit_2_and_no_output(pool, tmp_path, extra, message):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    (tmp_path / "t.txt").write_text("Query: {query} and nothing else")
    with Stub(thirds) as stub:
        args = [a.format(url=stub.url, dead=dead, template=tmp_path / "t.txt") for a in extra]
        result = run(pool, tmp_path / "o.jsonl", *args)
        assert stub.requests == []
    assert result.exit_code == 2, result.output
    assert message.replace("{dead}", str(dead)) in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.jsonl").exists()


class Guessing:
    """Calls any candidate relevant with probability ``sensitivity``: a seeded draw per pair."""

    name = "guess"

    def __init__(self, sensitivity: float) -> None:
        self.sensitivity = sensitivity
        self.asked = 0

    def fingerprint(self) -> str:
        return f"guess-{self.sensitivity}"

    def verdicts(self, asks, done):
        import hashlib

        out = []
        for i, ask in enumerate(asks):
            u = int.from_bytes(hashlib.blake2b(ask.key().encode(), digest_size=8).digest(), "little") / 2 ** 64
            out.append("relevant" if u < self.sensitivity else "not_relevant")
            done(i, out[-1])
        self.asked += len(asks)
        return out


@pytest.fixture(scope="module")
def near_pool(tmp_path_factory) -> Path:
    """1,500 queries, each between its two positives among 3,000 documents: most positives are retrieved."""
    return near_docs_pool(tmp_path_factory.mktemp("near"), 3000, 1500, 2, 0, 16, 0.3)


def test_calibrate_reports_a_judges_miss_rate_within_its_interval_of_the_true_one(near_pool):
    from minenegs import api
    from minenegs.select.judging import Judging
    from minenegs.select.params import MineParams

    judge = Guessing(0.9)  # misses (calls a relevant document not relevant) 10 % of the time
    info = api.calibrate(near_pool, MineParams("top", 3), {"range_min": [0]}, judging=Judging([judge]))
    miss = info["judges"]["guess"]
    assert miss["holdouts"] > 2000 and miss["no_verdict"] == 0
    assert miss["miss_low"] <= 0.1 <= miss["miss_high"] and miss["miss_high"] - miss["miss_low"] < 0.05
    asked = judge.asked
    again = api.calibrate(near_pool, MineParams("top", 3), {"range_min": [0]}, judging=Judging([judge]))
    assert judge.asked == asked and again["judges"] == info["judges"]  # the verdicts came from the pool's cache


class Oracle:
    """Knows the near-positives data: a candidate is relevant to ``q:a,b`` when it is ``da`` or ``db``."""

    name = "oracle"

    def fingerprint(self) -> str:
        return "oracle-1"

    def verdicts(self, asks, done):
        out = []
        for i, ask in enumerate(asks):
            a, b = ask.query[2:].split(",")
            out.append("relevant" if ask.candidate in (f"d{a}", f"d{b}") else "not_relevant")
            done(i, out[-1])
        return out


def test_calibrate_and_sweep_after_judging(near_pool):
    from minenegs import api
    from minenegs.select.judging import Judging
    from minenegs.select.params import MineParams

    grid = {"range_min": [0, 2]}
    plain = api.calibrate(near_pool, MineParams("top", 3), grid)
    judged = api.calibrate(near_pool, MineParams("top", 3), grid, judging=Judging([Oracle()]))
    assert all(row["leak_rate"] > 0.5 for row in plain["settings"][:1])  # top-3 hands out held-out positives
    assert [row["leak_rate"] for row in judged["settings"]] == [0.0, 0.0]  # the judge sees them for what they are
    assert all(row["judge_calls"] > 0 for row in judged["settings"]) and "judge_calls" not in plain["settings"][0]
    # mining with every label: 3 negatives a query, nothing flagged (the oracle clears non-positives): 3,000 calls
    # per 1,000 queries, whether the verdicts are cached (the held-out pass asked many of them first) or not
    assert judged["settings"][0]["judge_calls_per_1000_queries"] == 3000.0
    again = api.calibrate(near_pool, MineParams("top", 3), grid, judging=Judging([Oracle()]))
    assert [row["judge_calls"] for row in again["settings"]] == [0, 0]  # every verdict cached: no call made
    assert [row["judge_calls_per_1000_queries"] for row in again["settings"]] == \
        [row["judge_calls_per_1000_queries"] for row in judged["settings"]]
    swept = api.sweep(near_pool, MineParams("top", 3), grid, judging=Judging([Oracle()]))
    assert [row["negatives_per_query"] for row in swept] == [3.0, 3.0]


def test_a_recipe_lists_its_judges(pool, tmp_path):
    with Stub(thirds) as stub:
        recipe = tmp_path / "r.toml"
        recipe.write_text(f'[mine]\nembeddings = "{pool.parent.parent}"\noutput = "{tmp_path / "r.jsonl"}"\n'
                          f'format = "flag-jsonl"\nkeep-duplicates = true\nnum-negatives = 3\ndepth = 20\n'
                          f'judge = ["llm:tiny@{stub.url}"]\njudge-mode = "confirm"\n')
        result = runner.invoke(app, ["run", str(recipe), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["judging"]["mode"] == "confirm" and stub.requests
    assert all(len(n) % 3 != 0 for r in rows(tmp_path / "r.jsonl") for n in r["neg"])


def test_a_cross_encoder_judge_clears_by_its_threshold_then_an_llm_confirms_its_flags(pool, tmp_path, tiny_ce):
    from minenegs.select.judges import CrossEncoderJudge, sigmoid

    ce = CrossEncoderJudge(str(tiny_ce))
    queries = {json.loads(line)["_id"]: json.loads(line)["text"] for line in (SAMPLES / "queries.jsonl").open()}
    docs = [json.loads(line)["text"] for line in (SAMPLES / "corpus.jsonl").open()]
    probs = sigmoid(ce.predict([(q, d) for q in queries.values() for d in docs]).astype("float64"))
    ranked = np.sort(probs)  # a threshold near the median, in the widest gap there: both verdicts occur, and no
    mid, span = len(ranked) // 2, len(ranked) // 10  # pair sits so close to it that batching could flip its verdict
    k = max(range(mid - span, mid + span), key=lambda i: ranked[i + 1] - ranked[i])
    t = float((ranked[k] + ranked[k + 1]) / 2)

    alone = run(pool, tmp_path / "ce.jsonl", "--judge", f"cross-encoder:{tiny_ce}@{t}", "--judge-probes", "0")
    assert alone.exit_code == 0, alone.output
    judge = json.loads(alone.stdout)["judging"]["judges"]["cross-encoder"]
    assert judge["calls"] > 0 and judge["seconds"] > 0 and judge["verdicts"]["relevant"] > 0
    handed = [(r["query"], n) for r in rows(tmp_path / "ce.jsonl") for n in r["neg"]]
    assert handed and (sigmoid(ce.predict(handed).astype("float64")) <= t).all()  # only what it cleared
    assert judge["calls"] == len(handed) + judge["verdicts"]["relevant"]

    with Stub(thirds) as strong:
        confirm = run(pool, tmp_path / "cc.jsonl", "--judge", f"cross-encoder:{tiny_ce}@{t}", "--judge",
                      f"llm:strong@{strong.url}", "--judge-mode", "confirm", "--judge-probes", "0")
        to_strong = [(r["body"]["messages"][0]["content"].split("Query: ")[1].split("\n")[0],
                      candidate(r["body"]["messages"][0]["content"])) for r in strong.requests]
    assert confirm.exit_code == 0, confirm.output
    summary = json.loads(confirm.stdout)["judging"]["judges"]
    assert summary["cross-encoder"]["calls"] == 0 and summary["cross-encoder"]["cache_hits"] > 0  # cached verdicts
    assert to_strong and (sigmoid(ce.predict(to_strong).astype("float64")) > t).all()  # only the cross-encoder's flags
    negatives = [n for r in rows(tmp_path / "cc.jsonl") for n in r["neg"]]
    assert {c for _, c in to_strong if len(c) % 3 != 0} & set(negatives)  # the LLM's last word stands


class Scripted:
    """A judge that calls the candidates in ``relevant`` relevant and records what it was asked."""

    name = "scripted"

    def __init__(self, relevant: set[str]) -> None:
        self.relevant, self.asked = relevant, []

    def fingerprint(self) -> str:
        return "scripted"

    def verdicts(self, asks, done):
        out = []
        for i, a in enumerate(asks):
            self.asked.append(a.candidate)
            out.append("relevant" if a.candidate in self.relevant else "not_relevant")
            done(i, out[-1])
        return out


def test_a_candidate_near_a_flagged_one_is_set_aside_without_a_call(tmp_path):
    from minenegs.select.judges.base import Ask
    from minenegs.select.judging import Judging

    judge = Scripted({"c0"})
    near = lambda flagged, c: (c, tuple(flagged)) in {(1, (0,)), (4, (0,))}  # noqa: E731  1 and 4 are near 0
    with Judging([judge]) as judging:
        cleared, flagged, aside, asked = judging.walk(tmp_path, [np.arange(6)], 2, 30, lambda q, c: Ask("q", (), f"c{c}"),
                                                      near)
    # two a batch: c0 and c1 are asked together, before c0's flag is known; then c2
    assert judge.asked == ["c0", "c1", "c2"] and cleared == [[1, 2]] and flagged == [[0]] and aside == [[]]
    assert asked == [3]
    judge = Scripted({"c0"})
    with Judging([judge]) as judging:
        cleared, flagged, aside, asked = judging.walk(tmp_path / "b", [np.arange(6)], 1, 30,
                                                      lambda q, c: Ask("q", (), f"c{c}"), near)
    assert judge.asked == ["c0", "c2"] and cleared == [[2]] and flagged == [[0]] and aside == [[1]] and asked == [2]


def test_the_guard_counts_flagged_candidates_as_positives(pool, tmp_path):
    with Stub(thirds) as stub:
        result = run(pool, tmp_path / "g.jsonl", "--max-positive-similarity", "0.8", "--judge", f"llm:tiny@{stub.url}",
                     "--judge-probes", "0")
        asked = [candidate(r["body"]["messages"][0]["content"]) for r in stub.requests]
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["removed_by_near_flagged"] >= 1  # set aside beside a flagged candidate, never asked
    negatives = [n for r in rows(tmp_path / "g.jsonl") for n in r["neg"]]
    calls = summary["judging"]["judges"]["llm:tiny"]["calls"]
    assert len(asked) == calls == len(negatives) + summary["removed_by_judges"]
    with Stub(thirds) as stub:  # --no-judge-guard: what was set aside is asked now (the rest comes from the cache)
        off = run(pool, tmp_path / "o.jsonl", "--max-positive-similarity", "0.8", "--judge", f"llm:tiny@{stub.url}",
                  "--no-judge-guard", "--judge-probes", "0")
        again = [candidate(r["body"]["messages"][0]["content"]) for r in stub.requests]
    assert off.exit_code == 0, off.output
    assert "removed_by_near_flagged" not in json.loads(off.stdout)
    assert again and not set(again) & set(asked)


def test_the_summary_shows_each_judge_on_one_line(pool, tmp_path):
    with Stub(thirds) as stub:
        result = runner.invoke(app, ["filter", str(pool), "-o", str(tmp_path / "h.parquet"), "--num-negatives", "3",
                                     "--preview", "0", "--judge", f"llm:tiny@{stub.url}"], env={"COLUMNS": "200"})
        asked = len(stub.requests)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stderr.splitlines() if "judge llm:tiny" in line)
    flagged = sum(1 for r in stub.requests if thirds(r["body"]["messages"][0]["content"]) == "relevant")
    assert f"{asked} calls, 0 cached; {flagged} relevant / {asked - flagged} not / 0 unsure / 0 no verdict" in line
    assert "retries" in line and "mode veto action drop" in result.stderr
