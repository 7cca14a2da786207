"""Run a command as a child process and measure its wall time and peak memory (from wait4)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measured:
    seconds: float
    peak_mb: float
    stdout: str
    returncode: int


def measure(args: list[str], env: dict | None = None, cwd: Path | str | None = None) -> Measured:
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **(env or {})}, cwd=cwd)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed with status {proc.returncode}")
    return Measured(round(seconds, 2), round(usage.ru_maxrss / 1024, 1), out, proc.returncode)


def write_results(path, results: dict) -> None:
    """Write a benchmark's figures as JSON and say where."""
    import json
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {path}")


def data_parser(doc: str, results: str) -> argparse.ArgumentParser:
    """A real-data benchmark's common options: ``--data`` (a BEIR folder, SciFact by default), ``--split`` and
    ``--output`` (``benchmarks/results/<results>``); the benchmark adds its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--split", default="train")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / results)
    return parser


NO_AMX = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}  # oneDNN's bf16 kernels as a CPU without AMX runs them


def add_no_amx(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-amx", action="store_true", help="oneDNN's bf16 kernels without AMX (AVX512-BF16 "
                        "only, as on a CPU that has no AMX): sets ONEDNN_MAX_CPU_ISA before torch loads")


def apply_no_amx(args: argparse.Namespace) -> str | None:
    """Cap oneDNN's instruction set where ``--no-amx`` asks (call before importing torch); the cap in force."""
    if args.no_amx:
        os.environ.update(NO_AMX)
    return os.environ.get("ONEDNN_MAX_CPU_ISA")
