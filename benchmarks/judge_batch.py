"""Listwise LLM judging (``--judge-batch K``) against the tests' OpenAI-compatible stub on 127.0.0.1: prompt tokens
per verdict and verdicts per second for K = 1, 5 and 10, and whether a deterministic stub gives the same verdicts
for every K.

The questions are real ones: dbpedia_subset's queries with their two highest-graded relevant documents as the
positives (``false_negatives.py``'s protocol) and the first ``--candidates`` non-positive documents of the bundled
model's top 100 as the candidates, texts as the corpus has them. The stub counts a prompt's tokens as its words
(a tokenizer would count more, in about the same ratio for every K) and answers each request after ``--delay``
seconds, a verdict drawn from a hash of the candidate's text. Runs A B A B: every K in turn, ``--rounds`` times.
Writes ``benchmarks/results/judge_batch.json``.

    python benchmarks/judge_batch.py
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from _proc import write_results  # noqa: E402
from openai_stub import Stub  # noqa: E402

from minenegs.select.judges.base import Ask  # noqa: E402
from minenegs.select.judges.llm import LLMJudge  # noqa: E402

BATCHES = (1, 5, 10)


def questions(data: Path, candidates: int) -> list[Ask]:
    from false_negatives import prepare, two_visible

    from minenegs.inputs.dataset import load_beir

    ds, hidden = two_visible(load_beir(data, "test"))
    engine, _ = prepare(ds, hidden, data.name)
    text = dict(zip(ds.corpus.ids, ds.corpus.texts))
    query = dict(zip(ds.queries.ids, ds.queries.texts))
    a = engine.arrays
    doc_ids = ds.corpus.ids
    asks = []
    for s, qid in enumerate(engine.query_ids):
        rows = range(engine.starts[s], engine.starts[s] + engine.sizes[s])
        positives = tuple(text[doc_ids[int(a["doc_idx"][r])]] for r in rows if a["is_positive"][r])
        picked = [doc_ids[int(a["doc_idx"][r])] for r in rows if not a["is_positive"][r] and a["retrieved"][r]]
        asks += [Ask(query[qid], positives, text[d]) for d in picked[:candidates]]
    return asks


def hashed(prompt: str) -> str:
    candidate = prompt.split("Candidate document:\n")[1].split("\n\nIs the candidate")[0]
    return "relevant" if hashlib.sha256(candidate.encode()).digest()[0] % 3 == 0 else "not_relevant"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "dbpedia_subset")
    parser.add_argument("--candidates", type=int, default=10, help="candidates a query")
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "judge_batch.json")
    args = parser.parse_args()
    asks = questions(args.data, args.candidates)
    runs: dict[int, list[dict]] = {k: [] for k in BATCHES}
    with Stub(hashed, delay=args.delay) as stub:
        for _ in range(args.rounds):
            for k in BATCHES:
                judge = LLMJudge("stub", stub.url, concurrency=args.concurrency, batch=k)
                started = time.perf_counter()
                said = judge.verdicts(asks, lambda i, v: None)
                seconds = time.perf_counter() - started
                runs[k].append({"verdicts": said, "seconds": seconds, "requests": judge.usage.requests,
                                "prompt_tokens": judge.usage.prompt_tokens, "no_verdict": judge.usage.no_verdict})
    base = runs[1][0]
    out = {"data": args.data.name, "asks": len(asks), "queries": len({a.query for a in asks}),
           "delay_seconds": args.delay, "concurrency": args.concurrency, "rounds": args.rounds, "batches": {}}
    for k, rs in runs.items():
        per_verdict = rs[0]["prompt_tokens"] / len(asks)
        out["batches"][str(k)] = {
            "requests": rs[0]["requests"], "prompt_tokens_per_verdict": round(per_verdict, 1),
            "tokens_vs_k1": round(per_verdict / (base["prompt_tokens"] / len(asks)), 3),
            "verdicts_per_second": [round(len(asks) / r["seconds"], 1) for r in rs],
            "median_verdicts_per_second": round(statistics.median(len(asks) / r["seconds"] for r in rs), 1),
            "same_verdicts_as_k1": all(r["verdicts"] == base["verdicts"] for r in rs),
            "no_verdict": rs[0]["no_verdict"]}
        print(k, out["batches"][str(k)])
    write_results(args.output, out)


if __name__ == "__main__":
    main()
