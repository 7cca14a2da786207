"""How well the relevant share of judged negatives is estimated: from the judges' flags
(:mod:`minenegs.select.contamination`) and, beside it, ``calibrate``'s hold-out leak estimate, against the hidden
labels of dbpedia_subset and the DL19 subset.

``false_negatives.py``'s protocol (two relevant documents given per query, the rest hidden; the bundled encoder's
top-100 pool) and ``judges_sim.py``'s simulated judges (they answer from the hidden labels with set error rates,
a seeded draw per pair): sensitivity / specificity 0.9 / 0.95 and 0.8 / 0.9, ``--draws`` draws of their errors
each (20). Each draw runs the default recipe (5 negatives) judged lazily, as ``mine --judge`` does, then:

- the flags estimate: the judge's verdicts on ``MAX_PROBES`` held-out positives and as many far documents (drawn
  outside each query's pool), the share with its 95 % interval, against the hidden-relevant share of the
  negatives handed out;
- the hold-out estimate: ``calibrate``'s leak (the share of held-out positives handed out when they are
  unlabelled, with the judge) and its interval, against the hidden-label leak (the share of the hidden relevant
  documents within the pool that were handed out); it estimates another quantity, so it is scored against that;
- for each, in how many draws the interval holds its truth.

Writes ``benchmarks/results/contamination.json``.

    python benchmarks/contamination.py
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _proc import write_results  # noqa: E402
from false_negatives import BASE, ROOT, prepare, two_visible  # noqa: E402
from judges_sim import SimulatedJudge  # noqa: E402

from minenegs.inputs.dataset import load_beir  # noqa: E402
from minenegs.select.calibrate import calibrate  # noqa: E402
from minenegs.select.contamination import MAX_PROBES, Flags, Probes, estimate, far_documents  # noqa: E402
from minenegs.select.judges.base import Ask  # noqa: E402
from minenegs.select.judging import Judging, judged  # noqa: E402

JUDGES = {"0.9/0.95": (0.9, 0.95), "0.8/0.9": (0.8, 0.9)}


def one_draw(engine, scores, relevant, rates, seed: int, cache: Path) -> dict:
    qids, dids = engine.query_ids, scores.dids
    shutil.rmtree(cache, ignore_errors=True)
    judging = Judging([SimulatedJudge("sim", relevant, *rates, seed=seed)])

    def adjust(got, view, params=BASE):
        return judged(got, view, params, judging, cache, lambda q, row: Ask(qids[int(view.inst.segment[q])], (),
                                                                            dids[int(view.doc_idx[row])]))

    sel = engine.selection(BASE, adjust)
    truth = scores.score(list(zip(sel.query_idx.tolist(), sel.negatives)), len(sel.query_ids), len(sel.short))
    flags = Flags.merge(judging.tally)
    a = engine.arrays
    inst = engine.holdouts(MAX_PROBES, seed)
    known = [Ask(qids[int(s)], (), dids[int(a["doc_idx"][r])]) for s, r in zip(inst.segment, inst.held_out)]
    docs = [a["doc_idx"][st:st + sz] for st, sz in zip(engine.starts, engine.sizes)]
    segments, far = far_documents(docs, len(dids), MAX_PROBES, seed)
    far_asks = [Ask(qids[int(s)], (), dids[int(d)]) for s, d in zip(segments, far)]
    probes = Probes(judging.decide(cache, known), inst.segment, judging.decide(cache, far_asks), segments)
    est = estimate(flags, probes, seed=seed)
    (row,) = calibrate(engine, BASE, {"range_min": [BASE.range_min]}, min_queries=1,
                       judged=adjust)
    leak = row.estimate
    return {"hidden_share": truth["hidden_share"], "hidden_leak": truth["hidden_leak"],
            "mean_rank": truth["mean_rank"], "queries_empty": truth["queries_empty"],
            "flags": est, "flags_holds": bool(est["low"] <= truth["hidden_share"] <= est["high"]),
            "holdout": {"rate": round(leak.rate, 4), "low": round(leak.low, 4), "high": round(leak.high, 4)},
            "holdout_holds": bool(leak.low <= truth["hidden_leak"] <= leak.high)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="*",
                        default=[ROOT.parent / "shared" / "data" / n for n in ("dbpedia_subset", "msmarco_dl19_subset")])
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "contamination.json")
    args = parser.parse_args()
    results = {"device": "simulated judges from the hidden labels (not models)", "probes": MAX_PROBES, "sets": {}}
    for folder in args.data:
        ds, hidden = two_visible(load_beir(folder, "test"))
        engine, scores = prepare(ds, hidden, f"judges-{folder.name}")
        relevant = hidden | {(r.query_id, r.doc_id) for r in ds.qrels}
        out = results["sets"][folder.name] = {"queries": len(ds.queries.ids)}
        for name, rates in JUDGES.items():
            draws = [one_draw(engine, scores, relevant, rates, seed,
                              ROOT / "build" / "bench" / f"contamination-{folder.name}") for seed in range(args.draws)]
            mean = lambda key, sub=None: round(float(np.mean([d[key] if sub is None else d[key][sub]  # noqa: E731
                                                                for d in draws])), 4)
            out[name] = {
                "flags_holds": sum(d["flags_holds"] for d in draws), "holdout_holds": sum(d["holdout_holds"] for d in draws),
                "draws": len(draws), "hidden_share_mean": mean("hidden_share"), "flags_rate_mean": mean("flags", "rate"),
                "flags_width_mean": round(float(np.mean([d["flags"]["high"] - d["flags"]["low"] for d in draws])), 4),
                "hidden_leak_mean": mean("hidden_leak"), "holdout_rate_mean": mean("holdout", "rate"),
                "runs": draws}
            r = out[name]
            print(f"{folder.name} judge {name}: flags interval holds the hidden share in {r['flags_holds']}/"
                  f"{r['draws']} (share {r['hidden_share_mean']}, estimate {r['flags_rate_mean']}, width "
                  f"{r['flags_width_mean']}); hold-out interval holds the hidden leak in {r['holdout_holds']}/"
                  f"{r['draws']} (leak {r['hidden_leak_mean']}, estimate {r['holdout_rate_mean']})", flush=True)
    write_results(args.output, results)


if __name__ == "__main__":
    main()
