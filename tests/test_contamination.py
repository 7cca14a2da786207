"""The relevant share of the handed-out negatives read from the judges' flags (minenegs.select.contamination)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fakes import near_docs_pool
from minenegs.cli import app
from minenegs.select.contamination import Flags, Probes, estimate, far_documents, share

runner = CliRunner()


def test_the_share_by_hand():
    # 100 seen, 30 flagged, 60 cleared; s = 0.9, m = 0.1 (45 and 5 of 50 known positives); f = 0.05 (5 of 100 far)
    # relevant seen R = (30 - 0.05 * 100) / 0.85 = 29.41; cleared relevant 0.1 R = 2.941; share 2.941 / 60
    got = share(np.array([100.0, 30, 60]), np.array([50.0, 45, 5]), np.array([100.0, 5]))
    assert got == pytest.approx(0.1 * (25 / 0.85) / 60)
    # a judge no better than chance (s <= f) tells nothing: the share is 1
    assert share(np.array([100.0, 30, 60]), np.array([50.0, 5, 40]), np.array([100.0, 20])) == 1.0
    # more flags read as false alarms than there were flags: no relevant document seen
    assert share(np.array([100.0, 2, 90]), np.array([50.0, 45, 5]), np.array([100.0, 5])) == 0.0


def test_what_cannot_be_estimated_says_why():
    flags = Flags(np.array([5, 5]), np.array([1, 2]), np.array([3, 3]))
    no_known = Probes([], np.zeros(0, int), ["not_relevant"], np.array([0]))
    got = estimate(flags, no_known)
    assert got["rate"] is None and "miss rate" in got["why"] and got["handed_out"] == 6
    no_far = Probes(["relevant", None], np.array([0, 1]), [None], np.array([0]))  # unanswered probes do not count
    assert estimate(flags, no_far)["why"] == "no far document was judged"


def simulate(rng, queries: int, sensitivity: float, false_alarm: float, probes: int):
    """Mining as a lazy judge walks it: each query's candidates relevant with its own prevalence, the judge
    asked until 5 are cleared; then the probes. Returns the flags, the probes and the true share."""
    miss = 1 - sensitivity
    asked, flagged, cleared, hidden = [], [], [], 0
    for prevalence in rng.beta(2, 5, size=queries):
        n = f = c = 0
        while c < 5 and n < 30:
            relevant = rng.random() < prevalence
            verdict = rng.random()
            n += 1
            if relevant and verdict < sensitivity or not relevant and verdict < false_alarm:
                f += 1
            elif relevant and verdict < sensitivity + miss or not relevant:
                c += 1
                hidden += relevant
        asked.append(n), flagged.append(f), cleared.append(c)
    known_q = np.arange(probes) % queries
    known = list(np.where(rng.random(probes) < sensitivity, "relevant", "not_relevant"))
    far = list(np.where(rng.random(probes) < false_alarm, "relevant", "not_relevant"))
    flags = Flags(np.array(asked), np.array(flagged), np.array(cleared))
    return flags, Probes(known, known_q, far, known_q.copy()), hidden / sum(cleared)


@pytest.mark.parametrize("sensitivity,false_alarm", [(0.9, 0.05), (0.8, 0.1)])
def test_the_interval_holds_the_true_share_in_most_draws(sensitivity, false_alarm):
    held = []
    for seed in range(20):
        flags, probes, truth = simulate(np.random.default_rng(seed), 150, sensitivity, false_alarm, 200)
        got = estimate(flags, probes, draws=1000, seed=seed)
        assert got["low"] <= got["rate"] <= got["high"]
        held.append(got["low"] <= truth <= got["high"])
    assert sum(held) >= 17, held


def test_far_documents_come_from_outside_each_pool():
    docs = [np.array([0, 1, 2]), np.array([3, 4]), np.arange(10)]  # the third pool holds the whole corpus
    segments, far = far_documents(docs, 10, 7, seed=0)
    assert len(far) == 7 and set(segments.tolist()) == {0, 1} and (np.diff(segments) >= 0).all()
    assert all(d not in docs[s] for s, d in zip(segments, far))
    assert len(set(zip(segments.tolist(), far.tolist()))) == 7  # no document twice for a query
    again = far_documents(docs, 10, 7, seed=0)
    assert (again[0] == segments).all() and (again[1] == far).all()  # seeded
    segments, far = far_documents(docs, 10, 40, seed=0)  # more than there are: every row outside each pool once
    assert sorted(far[segments == 1].tolist()) == [0, 1, 2, 5, 6, 7, 8, 9] and len(far[segments == 0]) == 7
    assert len(far_documents([np.arange(10)], 10, 5, seed=0)[0]) == 0


class NoisyOracle:
    """Knows every relevant document of ``q:a,b,...``; right with probability 0.9 on a relevant one and 0.95 on
    any other (a seeded draw per pair)."""

    name = "noisy"

    def __init__(self) -> None:
        self.calls = 0

    def fingerprint(self) -> str:
        return "noisy-oracle-1"

    def verdicts(self, asks, done):
        out = []
        for i, ask in enumerate(asks):
            relevant = ask.candidate in {f"d{x}" for x in ask.query[2:].split(",")}
            draw = hashlib.sha256(f"{ask.query}|{ask.candidate}".encode()).digest()[0] / 256
            right = draw < (0.9 if relevant else 0.95)
            out.append("relevant" if relevant == right else "not_relevant")
            done(i, out[-1])
        self.calls += len(asks)
        return out


@pytest.fixture(scope="module")
def hidden_pool(tmp_path_factory) -> Path:
    """600 queries with six relevant documents each among 2,000, two of them labelled, four hidden."""
    return near_docs_pool(tmp_path_factory.mktemp("hidden"), 2000, 600, 6, 1, 128, 0.5)


def test_mine_reports_the_flags_estimate_and_it_holds_the_hidden_truth(hidden_pool, tmp_path):
    from minenegs import api
    from minenegs.select.judging import Judging
    from minenegs.select.params import MineParams

    judge = NoisyOracle()
    info = api.filter(hidden_pool, tmp_path / "out.jsonl", MineParams("top", 3), fmt="flag-jsonl", adapt="fixed",
                      judging=Judging([judge]))
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    handed = [(r["query"], n) for r in rows for n in r["neg"]]
    truth = np.mean([n in {f"d{x}" for x in q[2:].split(",")} for q, n in handed])
    got = info["contamination"]
    assert 0.05 < truth < 0.3  # hidden relevant documents slip through the 10 % misses
    assert got["low"] <= truth <= got["high"] and got["high"] - got["low"] < 0.15  # 200 probes each: m within ~0.04
    assert got["handed_out"] == len(handed) and got["known_positives"] == 200 and got["far_documents"] == 200
    assert got["sensitivity"] == pytest.approx(0.9, abs=0.07) and got["false_alarm"] == pytest.approx(0.05, abs=0.05)
    assert judge.calls == info["judging"]["judges"]["noisy"]["calls"]  # the probes are counted with the calls
    calls = judge.calls
    again = api.filter(hidden_pool, tmp_path / "again.jsonl", MineParams("top", 3), fmt="flag-jsonl", adapt="fixed",
                       judging=Judging([judge]))
    assert judge.calls == calls and again["contamination"] == got  # every probe's verdict came from the cache
    off = api.filter(hidden_pool, tmp_path / "off.jsonl", MineParams("top", 3), fmt="flag-jsonl", adapt="fixed",
                     judging=Judging([judge], probes=0))
    assert "contamination" not in off


def test_calibrate_shows_the_flags_estimate_beside_the_hold_out_one(hidden_pool):
    from minenegs import api
    from minenegs.select.judging import Judging
    from minenegs.select.params import MineParams

    info = api.calibrate(hidden_pool, MineParams("top", 3), {"range_min": [0, 5]}, judging=Judging([NoisyOracle()]))
    rows = info["settings"]
    assert len(rows) == 2 and all(0 <= r["flags_estimate"]["low"] <= r["flags_estimate"]["rate"]
                                  <= r["flags_estimate"]["high"] <= 1 and "leak_rate" in r for r in rows)


def test_the_cli_prints_it_and_takes_judge_probes(hidden_pool, tmp_path):
    from minenegs.report.console import flags_line

    result = runner.invoke(app, ["filter", str(hidden_pool), "-o", str(tmp_path / "x.jsonl"), "--judge-probes", "-1",
                                 "--judge", "llm:m@http://127.0.0.1:9/v1"])
    assert result.exit_code == 2 and "--judge-probes" in result.output and not (tmp_path / "x.jsonl").exists()
    est = {"rate": 0.049, "low": 0.031, "high": 0.07, "sensitivity": 0.9, "miss_rate": 0.1, "false_alarm": 0.05,
           "known_positives": 200, "far_documents": 200}
    assert flags_line(est) == ("4.9% [3.1%, 7.0%]; judges: sensitivity 0.90, miss 0.10 on 200 held-out positives, "
                               "false alarms 0.05 on 200 far documents")
    assert flags_line({"rate": None, "why": "no far document was judged"}) == "none: no far document was judged"
