"""The bf16 encode path, side by side in one process on SciFact (corpus and the split's queries, in length order as
minenegs' chunks take them): fp32 weights under bf16 autocast at batch 32 (minenegs' first bf16 path), bf16
weights with two forward passes at once and eager linear layers (the path before fusing), and the same with the
linear layers fused with their bias and GELU (``minenegs.encode.fusing``: the path now), A B C A B C; each run's
vectors against fp32 ones: cosine (mean, minimum) and the overlap of every query's top-100 documents. With
``--no-amx``, oneDNN's bf16 kernels run as on a CPU with AVX512-BF16 and no AMX. Writes
``benchmarks/results/encode_bf16.json``. On a CPU without native bf16 it says so and measures nothing.

    python benchmarks/encode_bf16.py --data ../shared/data/scifact --split train
    python benchmarks/encode_bf16.py --data ../shared/data/scifact --split train --no-amx \
        --output benchmarks/results/encode_bf16_no_amx.json
"""

from __future__ import annotations

import copy
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _proc import add_no_amx, apply_no_amx, data_parser, write_results  # noqa: E402

CHUNK = 1024


def top(queries: np.ndarray, docs: np.ndarray, k: int = 100) -> np.ndarray:
    scores = queries @ docs.T
    return np.argpartition(-scores, k, axis=1)[:, :k]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def main() -> None:
    parser = data_parser(__doc__, "encode_bf16.json")
    parser.add_argument("--rounds", type=int, default=2)
    add_no_amx(parser)
    args = parser.parse_args()
    isa = apply_no_amx(args)
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    from minenegs.encode.batches import encode_chunk
    from minenegs.encode.models import SentenceTransformerEncoder, _encode_with, cpu_supports_bf16
    from minenegs.inputs.dataset import load_beir

    if not cpu_supports_bf16():
        write_results(args.output, {"skipped": "this CPU has no native bf16: minenegs encodes in fp32 here"})
        return
    ds = load_beir(args.data, args.split)
    texts = sorted(ds.corpus.texts, key=len) + sorted(ds.queries.texts, key=len)
    where = {t: i for i, t in enumerate(texts)}
    corpus_rows = np.array([where[t] for t in ds.corpus.texts])
    query_rows = np.array([where[t] for t in ds.queries.texts])

    fp32 = SentenceTransformerEncoder(precision="fp32", compile="off")
    now = SentenceTransformerEncoder(precision="bf16", compile="off")  # bf16 weights fused, batch 16, two streams
    before = fp32.load()  # fp32 weights: _encode_with runs them under bf16 autocast
    eager = copy.deepcopy(before).to(torch.bfloat16)  # bf16 weights, linear layers as torch runs them
    unfused = SimpleNamespace(batch_size=now.batch_size, streams=now.streams,
                              encode=lambda t, prompt: _encode_with(eager, t, prompt, "bf16", now.batch_size))

    def run(encode) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        out = np.concatenate([encode(texts[i:i + CHUNK]) for i in range(0, len(texts), CHUNK)])
        return unit(out), time.perf_counter() - started

    runs = {"before_autocast_batch32": lambda t: _encode_with(before, t, None, "bf16", 32),
            "bf16_weights_streams_unfused": lambda t: encode_chunk(unfused, t, None),
            "now_bf16_streams_fused": lambda t: encode_chunk(now, t, None)}
    figures: dict[str, dict] = {name: {"texts_per_second": []} for name in runs}
    vectors = {}
    for _ in range(args.rounds):  # A B C A B C
        for name, encode in runs.items():
            vectors[name], seconds = run(encode)
            figures[name]["texts_per_second"].append(round(len(texts) / seconds, 1))
            print(f"{name}: {figures[name]['texts_per_second'][-1]} texts/s", flush=True)
    reference, _ = run(lambda t: _encode_with(before, t, None, "fp32", 32))
    truth = top(reference[query_rows], reference[corpus_rows])
    for name, v in vectors.items():
        cos = (v * reference).sum(1)
        found = top(v[query_rows], v[corpus_rows])
        figures[name].update(cosine_to_fp32_mean=round(float(cos.mean()), 6), cosine_to_fp32_min=round(float(cos.min()), 6),
                             top100_overlap_with_fp32=round(float(np.mean([len(set(a) & set(b)) / 100
                                                                          for a, b in zip(found, truth)])), 4))
    speed = {name: f["texts_per_second"] for name, f in figures.items()}
    results = {"data": str(args.data), "split": args.split, "texts": len(texts), "queries": len(query_rows),
               "onednn_max_cpu_isa": isa, "batch_size_now": now.batch_size, "streams_now": now.streams,
               "fused_layers_now": sum(type(m).__name__ == "FusedLinear" for m in now.load().modules()), **figures,
               "ratio_now_vs_autocast_per_round": [round(a / b, 3) for a, b in zip(speed["now_bf16_streams_fused"],
                                                                                  speed["before_autocast_batch32"])],
               "ratio_fused_vs_unfused_per_round": [round(a / b, 3) for a, b in zip(
                   speed["now_bf16_streams_fused"], speed["bf16_weights_streams_unfused"])]}
    print(results)
    write_results(args.output, results)


if __name__ == "__main__":
    main()
