"""What a judge of a given quality does to the false negatives, measured with simulated judges on densely judged
data (a benchmark device, not a model: no verdict here comes from reading a text).

A simulated judge knows the hidden labels of ``false_negatives.py``'s protocol (two relevant documents given per
query, the others hidden) and answers with set error rates: a hidden relevant document is called relevant with
probability ``sensitivity``, any other document not relevant with probability ``specificity``; each answer is a
seeded draw per (judge, query, document), so reruns agree. The judges run in minenegs' own lazy judging
(``minenegs.select.judging``) on top of the default recipe, 5 negatives a query:

- ``veto``: one judge (sensitivity 0.9, specificity 0.95) must clear every negative;
- ``veto-unguarded``: the same without the guard reading the judge's flags as positives (``--no-judge-guard``);
- ``confirm``: a cheap judge (0.8 / 0.8) screens, a strong one (0.9 / 0.95) re-judges what it flags;
- ``veto2``: both must clear.

Each with ``--seeds`` draws of the judges' errors (20): the runs of seed 0, the means over the seeds, and the spread
of the hidden-relevant share (standard error of the mean, lowest, highest, draws at or below 10 %).

For each: hidden-relevant share of the negatives, their mean exact rank, queries short and empty, and judge calls
per negative handed out (per judge and in all). And what ``calibrate`` reports of each judge: its miss rate on the
held-out visible positives with the 95 % interval, against the set value (1 - sensitivity).
Writes ``benchmarks/results/judges_sim.json``.

    python benchmarks/judges_sim.py                  # dbpedia_subset and the DL19 subset from ../shared/data
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _proc import write_results  # noqa: E402
from false_negatives import BASE, N, ROOT, prepare, two_visible  # noqa: E402

from minenegs.inputs.dataset import load_beir  # noqa: E402
from minenegs.select.judges.base import NOT_RELEVANT, RELEVANT, Ask  # noqa: E402
from minenegs.select.judging import Judging, judged  # noqa: E402

STRONG, CHEAP = (0.9, 0.95), (0.8, 0.8)


class SimulatedJudge:
    """Answers from the hidden labels with set error rates. It is asked with ids, not texts: ``Ask(query_id, (),
    doc_id)``."""

    def __init__(self, name: str, hidden: set[tuple[str, str]], sensitivity: float, specificity: float,
                 seed: int = 0) -> None:
        self.name, self.hidden, self.sensitivity, self.specificity, self.seed = name, hidden, sensitivity, specificity, seed

    def fingerprint(self) -> str:
        return f"sim-{self.name}-{self.sensitivity}-{self.specificity}-{self.seed}"

    def _draw(self, ask: Ask) -> float:
        h = hashlib.blake2b(f"{self.fingerprint()}|{ask.query}|{ask.candidate}".encode(), digest_size=8).digest()
        return int.from_bytes(h, "little") / 2 ** 64

    def verdicts(self, asks: list[Ask], done) -> list[str]:
        out = []
        for i, ask in enumerate(asks):
            relevant = (ask.query, ask.candidate) in self.hidden
            right = self._draw(ask) < (self.sensitivity if relevant else self.specificity)
            out.append(RELEVANT if relevant == right else NOT_RELEVANT)
            done(i, out[-1])
        return out


def misses(engine, judge: SimulatedJudge, doc_ids: list[str]) -> dict:
    """``calibrate``'s miss rate of ``judge`` on the held-out visible positives (ids as its questions)."""
    from minenegs.select.calibrate import leak_interval

    inst = engine.holdouts()
    asks = [Ask(engine.query_ids[s], (), doc_ids[int(engine.arrays["doc_idx"][r])])
            for s, r in zip(inst.segment, inst.held_out)]
    said = judge.verdicts(asks, lambda i, v: None)
    e = leak_interval(np.asarray([v == NOT_RELEVANT for v in said]), inst.segment)
    return {"holdouts": len(asks), "set_miss": round(1 - judge.sensitivity, 4), "miss_rate": round(e.rate, 4),
            "miss_low": round(e.low, 4), "miss_high": round(e.high, 4),
            "set_inside_interval": e.low <= 1 - judge.sensitivity <= e.high}


def run(engine, judge_scores, judging: Judging, cache: Path) -> dict:
    qids = engine.query_ids
    dids = judge_scores.dids

    def adjust(got, view, params=BASE):
        return judged(got, view, BASE, judging, cache, lambda q, row: Ask(qids[int(view.inst.segment[q])], (),
                                                                           dids[int(view.doc_idx[row])]))

    sel = engine.selection(BASE, adjust)
    result = judge_scores.score(list(zip(sel.query_idx.tolist(), sel.negatives)), len(sel.query_ids), len(sel.short))
    calls = {name: s.calls for name, s in judging.stats.items()}
    negatives = max(1, result["negatives"])
    return {**result, "calls": calls, "calls_per_negative": round(sum(calls.values()) / negatives, 3),
            "calls_per_negative_by_judge": {k: round(v / negatives, 3) for k, v in calls.items()},
            "flagged": sel.removed.get("judges", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="*",
                        default=[ROOT.parent / "shared" / "data" / n for n in ("dbpedia_subset", "msmarco_dl19_subset")])
    parser.add_argument("--split", default="test")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "judges_sim.json")
    parser.add_argument("--seeds", type=int, default=20, help="draws of the simulated judges' errors (seeds 0..K-1)")
    args = parser.parse_args()
    results = {"device": "simulated judges from the hidden labels (not models)", "num_negatives": N,
               "strong": {"sensitivity": STRONG[0], "specificity": STRONG[1]},
               "cheap": {"sensitivity": CHEAP[0], "specificity": CHEAP[1]}, "sets": {}}
    for folder in args.data:
        ds, hidden = two_visible(load_beir(folder, args.split))
        engine, scores = prepare(ds, hidden, f"judges-{folder.name}")
        relevant = hidden | {(r.query_id, r.doc_id) for r in ds.qrels}  # what a judge should call relevant
        cache = ROOT / "build" / "bench" / f"judges-{folder.name}" / "verdicts"
        shutil.rmtree(cache, ignore_errors=True)  # every run asks afresh: the calls are what is measured
        runs = {"no judge": scores.score(*_plain(engine, scores))}
        for seed in range(args.seeds):
            strong = lambda: SimulatedJudge("strong", relevant, *STRONG, seed=seed)  # noqa: E731
            cheap = lambda: SimulatedJudge("cheap", relevant, *CHEAP, seed=seed)  # noqa: E731
            tag = "" if seed == 0 else f" seed {seed}"
            runs[f"veto{tag}"] = run(engine, scores, Judging([strong()]), cache / f"veto{seed}")
            runs[f"veto-unguarded{tag}"] = run(engine, scores, Judging([strong()], guard_flags=False),
                                               cache / f"veto-unguarded{seed}")
            runs[f"confirm{tag}"] = run(engine, scores, Judging([cheap(), strong()], mode="confirm"),
                                        cache / f"confirm{seed}")
            runs[f"veto2{tag}"] = run(engine, scores, Judging([cheap(), strong()]), cache / f"veto2{seed}")
        runs["over_seeds"] = {name: {k: round(float(np.mean([runs[n][k] for n in runs if n.split(" seed")[0] == name])),
                                               4) for k in ("hidden_share", "mean_rank", "queries_empty",
                                                            "calls_per_negative")}
                              for name in ("veto", "veto-unguarded", "confirm", "veto2")}
        for name, means in runs["over_seeds"].items():
            shares = np.asarray([runs[n]["hidden_share"] for n in runs if n.split(" seed")[0] == name])
            means.update(hidden_share_se=round(float(shares.std(ddof=1) / np.sqrt(len(shares))), 4) if len(shares) > 1
                         else None, hidden_share_low=float(shares.min()), hidden_share_high=float(shares.max()),
                         draws_at_most_10_percent=int((shares <= 0.1).sum()), draws=len(shares))
        runs["calibrate_misses"] = {"strong": misses(engine, SimulatedJudge("strong", relevant, *STRONG), scores.dids),
                                    "cheap": misses(engine, SimulatedJudge("cheap", relevant, *CHEAP), scores.dids)}
        results["sets"][folder.name] = runs
        print(f"{folder.name}: {len(ds.queries.ids)} queries")
        for name, r in runs.items():
            if name in ("calibrate_misses", "over_seeds") or " seed " in name:
                if " seed " not in name:
                    print(f"  {name}: {r}")
                continue
            print(f"  {name:14s} hidden share {r['hidden_share']}, mean rank {r['mean_rank']}, short "
                  f"{r['queries_short']}, empty {r['queries_empty']}, calls/negative {r.get('calls_per_negative', '-')}")
    write_results(args.output, results)


def _plain(engine, scores):
    sel = engine.selection(BASE)
    return list(zip(sel.query_idx.tolist(), sel.negatives)), len(sel.query_ids), len(sel.short)


if __name__ == "__main__":
    main()
