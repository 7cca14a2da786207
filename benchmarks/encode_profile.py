"""Where a cold encode's time goes, against the CPU's GEMM rate: the model arithmetic's FLOP/s of minenegs' own
encode path (the bundled model, ``--precision auto``) as a share of torch's matmul rate at the model's shapes,
measured in the same process; the same for the compiled network (``--compile on``, built first, not timed); and
a torch-profiler breakdown of the uncompiled encode by kind of work.

The encodes run as ``minenegs encode`` runs a chunk (:func:`minenegs.encode.batches.encode_chunk`: two forward
passes at once in bf16 on a CPU); the profile runs one at a time, to time the operators themselves.

Model arithmetic per text: 2·L·t·(4h² + 2hf) for the linear layers plus 4·L·t²·h for attention (L layers,
hidden h, feed-forward f, t = the text's tokens after truncation). GEMM rate: (8192 x h) @ (h x f) in the encode's
dtype, measured before and after the encode (their mean). Writes ``benchmarks/results/encode_profile.json``.
With ``--no-amx``, oneDNN's bf16 kernels (the GEMM, the linear layers, attention) run as on a CPU with AVX512-BF16
and no AMX, the kind of CPU the 0.85x target was set on.

    python benchmarks/encode_profile.py --data ../shared/data/scifact --texts 1024
    python benchmarks/encode_profile.py --data ../shared/data/scifact --texts 1024 --no-amx \
        --output benchmarks/results/encode_profile_no_amx.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from _proc import add_no_amx, apply_no_amx, write_results  # noqa: E402

KINDS = {  # profiler op name -> kind of work
    "linear layers": ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear",
                      "mkldnn::_linear_pointwise"),  # the fused ones (bias and GELU inside)
    "attention": ("scaled_dot_product", "aten::softmax", "aten::_softmax", "aten::baddbmm"),
    "casts and copies": ("aten::copy_", "aten::_to_copy", "aten::to", "aten::contiguous", "aten::clone"),
    "GELU": ("aten::gelu",),
    "layer norm": ("aten::native_layer_norm", "aten::layer_norm"),
    "adds and masks": ("aten::add", "aten::mul", "aten::where", "aten::sub", "aten::div", "aten::bitwise_and"),
    "embedding lookup": ("aten::index_select", "aten::embedding"),
}


def gemm_rate(dtype, h: int, f: int, reps: int = 20) -> float:
    import torch

    a, b = torch.randn(8192, h, dtype=dtype), torch.randn(h, f, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * 8192 * h * f * reps / (time.perf_counter() - start) / 1e9


def kind_of(name: str) -> str:
    for kind, names in KINDS.items():
        if any(n in name for n in names):
            return kind
    return "other ops"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--profile-texts", type=int, default=256)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "encode_profile.json")
    add_no_amx(parser)
    args = parser.parse_args()
    isa = apply_no_amx(args)
    import torch

    from minenegs.encode.batches import encode_chunk
    from minenegs.encode.models import SentenceTransformerEncoder, _encode_with
    from minenegs.inputs.tables import read_corpus

    texts = read_corpus(args.data / "corpus.jsonl")[0].texts[:args.texts]
    encoder = SentenceTransformerEncoder(precision="auto")
    model = encoder.load()
    config = model[0].auto_model.config
    L, h, f = config.num_hidden_layers, config.hidden_size, config.intermediate_size
    started = time.perf_counter()
    tokens = [len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]]
    tokenize_seconds = time.perf_counter() - started
    flops = sum(2 * L * t * (4 * h * h + 2 * h * f) + 4 * L * t * t * h for t in tokens)
    dtype = torch.bfloat16 if encoder.precision == "bf16" else torch.float32

    before = gemm_rate(dtype, h, f)
    encode_chunk(encoder, texts[:64], None)  # warm-up
    started = time.perf_counter()
    encode_chunk(encoder, texts, None)  # as `minenegs encode` runs a chunk: in streams where the encoder has them
    seconds = time.perf_counter() - started
    after = gemm_rate(dtype, h, f)
    gemm = (before + after) / 2
    model_rate = flops / seconds / 1e9

    # the same texts through the compiled network (--compile on: built here in a fresh cache, then timed)
    with tempfile.TemporaryDirectory(prefix="minenegs-compiled-") as root:
        compiled = SentenceTransformerEncoder(precision="auto", compile="on")
        compiled.plan(len(texts), Path(root))
        compiled.encode(texts[:32], None)  # builds (not timed)
        started = time.perf_counter()
        encode_chunk(compiled, texts, None)
        compiled_seconds = time.perf_counter() - started
    compiled_rate = flops / compiled_seconds / 1e9
    after_compiled = gemm_rate(dtype, h, f)

    part = texts[:args.profile_texts]  # one forward pass at a time: the profile is of the operators themselves
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        _encode_with(model, part, None, encoder.precision, encoder.batch_size)
        profiled = time.perf_counter() - started
    by_kind: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key.startswith(("aten::", "mkldnn::")):
            by_kind[kind_of(event.key)] = by_kind.get(kind_of(event.key), 0.0) + event.self_cpu_time_total / 1e6
    ops = sum(by_kind.values())
    breakdown = {k: {"seconds": round(v, 3), "share": round(v / profiled, 4)}
                 for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])}
    breakdown["outside torch ops (tokenising, Python, output)"] = {
        "seconds": round(profiled - ops, 3), "share": round((profiled - ops) / profiled, 4)}

    results = {"data": str(args.data), "texts": len(texts), "precision": encoder.precision, "onednn_max_cpu_isa": isa,
               "fused_layers": sum(type(m).__name__ == "FusedLinear" for m in model.modules()),
               "batch_size": encoder.batch_size, "streams": encoder.streams, "max_seq_length": model.max_seq_length,
               "mean_tokens": round(sum(tokens) / len(tokens), 1), "model_gflop": round(flops / 1e9, 1),
               "encode_seconds": round(seconds, 3), "texts_per_second": round(len(texts) / seconds, 1),
               "model_gflops_per_second": round(model_rate, 1),
               "gemm_gflops_per_second": {"before": round(before, 1), "after": round(after, 1)},
               "model_share_of_gemm_rate": round(model_rate / gemm, 3),
               "compiled": {"used": compiled.compiled, "error": compiled.compile_error,
                            "encode_seconds": round(compiled_seconds, 3),
                            "texts_per_second": round(len(texts) / compiled_seconds, 1),
                            "model_gflops_per_second": round(compiled_rate, 1),
                            "gemm_gflops_per_second_after": round(after_compiled, 1),
                            "model_share_of_gemm_rate": round(compiled_rate / ((gemm + after_compiled) / 2), 3),
                            "vs_uncompiled": round(seconds / compiled_seconds, 3)},
               "tokenize_seconds_all_texts": round(tokenize_seconds, 3),
               "profile": {"texts": len(part), "seconds": round(profiled, 3), "by_kind": breakdown},
               "cpu_flags": sorted(set(open("/proc/cpuinfo").read().split()) & {"avx2", "avx512f", "avx512_bf16",
                                                                                   "amx_bf16", "amx_tile"})}
    print(f"{len(texts)} texts, {results['mean_tokens']} tokens on average, {encoder.precision}: "
          f"{results['texts_per_second']} texts/s, {results['model_gflops_per_second']} GFLOP/s of model arithmetic, "
          f"{results['model_share_of_gemm_rate']:.0%} of the GEMM rate ({before:.0f} / {after:.0f} GFLOP/s)")
    c = results["compiled"]
    print(f"compiled (--compile on, used: {c['used']}): {c['texts_per_second']} texts/s, "
          f"{c['model_share_of_gemm_rate']:.0%} of the GEMM rate, {c['vs_uncompiled']}x the uncompiled encode")
    for kind, row in breakdown.items():
        print(f"  {kind:<48}{row['seconds']:>8.2f} s {row['share']:>7.1%}")
    write_results(args.output, results)


if __name__ == "__main__":
    main()
