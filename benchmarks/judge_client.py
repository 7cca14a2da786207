"""The LLM judge's client against an OpenAI-compatible server on 127.0.0.1 that answers each request after a set
delay (the tests' stub, ``tests/openai_stub.py``): verdicts per second at a given concurrency, against what the
delay allows (concurrency / delay), so the client's own overhead shows. Writes
``benchmarks/results/judge_client.json``.

    python benchmarks/judge_client.py --delay 0.05 --concurrency 8 --asks 800
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests"))
from _proc import write_results  # noqa: E402
from openai_stub import Stub  # noqa: E402

from minenegs.select.judges.base import Ask  # noqa: E402
from minenegs.select.judges.llm import LLMJudge  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--asks", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "judge_client.json")
    args = parser.parse_args()
    asks = [Ask(f"query {i}", ("a positive",), f"candidate {i}") for i in range(args.asks)]
    rates = []
    with Stub(lambda prompt: "not_relevant", delay=args.delay) as stub:
        for _ in range(args.rounds):
            judge = LLMJudge("stub", stub.url, concurrency=args.concurrency)
            started = time.perf_counter()
            answers = judge.ask_all(asks)
            seconds = time.perf_counter() - started
            assert all(a.verdict == "not_relevant" for a in answers)
            rates.append(round(len(asks) / seconds, 1))
        most = stub.most_in_flight
    ceiling = args.concurrency / args.delay
    results = {"delay_seconds": args.delay, "concurrency": args.concurrency, "asks": args.asks,
               "verdicts_per_second": rates, "median": sorted(rates)[len(rates) // 2],
               "ceiling_concurrency_over_delay": ceiling, "most_in_flight_at_server": most,
               "target_at_least_100": sorted(rates)[len(rates) // 2] >= 100}
    print(f"{args.asks} verdicts, {args.delay * 1000:.0f} ms each, {args.concurrency} at once: {rates} verdicts/s "
          f"(ceiling {ceiling:.0f}/s; at most {most} in flight at the server)")
    write_results(args.output, results)


if __name__ == "__main__":
    main()
