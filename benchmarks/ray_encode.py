"""Encoding on a local Ray cluster against a local run: whole-process throughput with 1 and 2 workers.

Each run is its own process with an empty chunk cache, the bundled model and default settings:

- local:   ``minenegs encode DATA``
- ray-1:   ``minenegs encode DATA --ray local --ray-workers 1 --ray-cpus 2`` (one model actor, both cores)
- ray-2:   ``minenegs encode DATA --ray local --ray-workers 2 --ray-cpus 1`` (two model actors, a core each)

run in rounds (local, ray-1, ray-2, local, ray-1, ray-2, ...) so the machine's drift hits each alike. Wall time
covers the whole process: reading, starting Ray and its actors, loading the model in each, encoding, writing.
The vectors of each Ray run are compared with the local run's. Prints the table and writes
``benchmarks/results/ray_encode.json``.

    python benchmarks/ray_encode.py --data ../shared/data/scifact --rounds 2
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _proc import data_parser, measure, write_results  # noqa: E402

RUNS = {
    "local": [],
    "ray-1": ["--ray", "local", "--ray-workers", "1", "--ray-cpus", "2"],
    "ray-2": ["--ray", "local", "--ray-workers", "2", "--ray-cpus", "1"],
}


def main() -> None:
    parser = data_parser(__doc__, "ray_encode.json")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="minenegs-ray-"))
    py = sys.executable
    seconds: dict[str, list[float]] = {name: [] for name in RUNS}
    texts = 0
    agreement = {}
    for r in range(args.rounds):
        for name, extra in RUNS.items():
            out, cache = work / f"{name}-{r}", work / f"cache-{name}-{r}"
            run = measure([py, "-m", "minenegs", "encode", str(args.data), "--split", args.split, "-o", str(out),
                           "--cache-dir", str(cache), "--json", *extra])
            summary = json.loads(run.stdout)
            texts = summary["texts_encoded"]
            seconds[name].append(run.seconds)
            print(f"round {r + 1} {name:<6} {run.seconds:8.2f} s  {texts / run.seconds:7.1f} texts/s", flush=True)
            shutil.rmtree(cache)
        local = np.load(work / f"local-{r}" / "corpus.npy")
        for name in RUNS:
            if name != "local":
                other = np.load(work / f"{name}-{r}" / "corpus.npy")
                agreement[f"{name} round {r + 1}"] = {
                    "identical": bool(np.array_equal(local, other)),
                    "max_abs_diff": float(np.max(np.abs(local - other))),
                    "min_cosine": float(np.min(np.sum(local * other, axis=1))),
                }
        for name in RUNS:
            shutil.rmtree(work / f"{name}-{r}")
    med = {name: statistics.median(s) for name, s in seconds.items()}
    results = {
        "data": str(args.data), "split": args.split, "texts_encoded": texts, "rounds": args.rounds,
        "runs": {name: {"args": " ".join(extra) or "(none)", "wall_seconds": s, "median_seconds": round(med[name], 2),
                        "texts_per_second": round(texts / med[name], 1)} for name, (extra, s) in
                 ((n, (RUNS[n], seconds[n])) for n in RUNS)},
        "ratio_ray1_to_local": round(med["ray-1"] / med["local"], 3),
        "ratio_ray2_to_local": round(med["ray-2"] / med["local"], 3),
        "ratio_ray2_to_ray1": round(med["ray-2"] / med["ray-1"], 3),
        "vectors_vs_local": agreement,
    }
    print(f"{args.data.name} {args.split}: {texts} texts, median of {args.rounds} rounds (whole process)")
    for name in RUNS:
        r = results["runs"][name]
        print(f"  {name:<6} {r['median_seconds']:8.2f} s  {r['texts_per_second']:7.1f} texts/s  {r['args']}")
    print(f"wall ratio to local: ray-1 {results['ratio_ray1_to_local']}, ray-2 {results['ratio_ray2_to_local']}; "
          f"ray-2 / ray-1 {results['ratio_ray2_to_ray1']}")
    for key, a in agreement.items():
        print(f"  vectors {key}: identical {a['identical']}, max |diff| {a['max_abs_diff']:.2e}, "
              f"min cosine {a['min_cosine']:.6f}")
    write_results(args.output, results)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
