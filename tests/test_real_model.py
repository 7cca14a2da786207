"""The bundled all-MiniLM-L6-v2, loaded offline: precision, the CLI end to end, and lazy imports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np

from minenegs.inputs.dataset import load_beir
from minenegs.encode.folder import Embeddings
from minenegs.encode.models import SentenceTransformerEncoder, bundled_model_path, fingerprint_dir

MINENEGS = [sys.executable, "-m", "minenegs"]


def run(args: list[str], env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})}, **kw)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def test_bf16_matches_fp32_on_real_text(samples):  # native bf16 or emulated (slower), the same vectors
    """bf16: the weights themselves are bf16 (named in the cache key), at batch 16 on a CPU, its linear layers fused
    where the CPU has the kernel; a model the caller holds keeps its fp32 weights and layers and runs under autocast;
    both within cosine 0.999 of fp32."""
    import torch

    from minenegs.encode.fusing import fused_kernel_works
    from minenegs.encode.models import LoadedEncoder

    def fused(encoder) -> int:
        return sum(type(m).__name__ == "FusedLinear" for m in encoder.load().modules())

    texts = load_beir(samples).corpus.texts
    one, two = SentenceTransformerEncoder(precision="fp32"), SentenceTransformerEncoder(precision="bf16", device="cpu")
    fp32, bf16 = one.encode(texts, None), two.encode(texts, None)
    assert fp32.shape == bf16.shape == (104, 384)
    assert cosines(fp32, bf16).min() >= 0.999
    assert {p.dtype for p in two.load().parameters()} == {torch.bfloat16} and two.settings()["weights"] == "bf16"
    given = SentenceTransformerEncoder(precision="bf16", batch_size=8)
    assert (two.batch_size, one.batch_size, given.batch_size) == (16, 32, 8)
    assert "weights" not in one.settings() and next(one.load().parameters()).dtype == torch.float32
    held = LoadedEncoder(one.load(), precision="bf16")
    assert cosines(fp32, held.encode(texts, None)).min() >= 0.999
    assert {p.dtype for p in one.load().parameters()} == {torch.float32}  # the caller's model is left as it was
    assert (fused(two), fused(one)) == ((37 if fused_kernel_works() else 0), 0)  # 6 layers of 6, and the pooler


def test_default_model_is_the_bundled_one():
    enc = SentenceTransformerEncoder()
    assert enc.name == "all-MiniLM-L6-v2 (bundled)"
    assert enc.max_seq_length == 256
    assert enc.fingerprint() == fingerprint_dir(bundled_model_path())


def test_unknown_model_name_fails_in_one_line(tmp_path, samples):
    result = run(MINENEGS + ["encode", str(samples), "-o", str(tmp_path / "o"), "--model", "no-such-org/no-such-model"],
                 env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("minenegs: error: cannot load model 'no-such-org/no-such-model'")
    assert not (tmp_path / "o").exists()


def test_cli_encodes_with_the_bundled_model_then_reuses_the_cache_without_torch(tmp_path, samples):
    env = {"MINENEGS_CACHE": str(tmp_path / "cache")}
    first = run(MINENEGS + ["encode", str(samples), "-o", str(tmp_path / "emb"), "--json"], env=env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["texts_encoded"] == 120 and summary["dim"] == 384
    emb = Embeddings(tmp_path / "emb")
    assert emb.manifest["model"] == "all-MiniLM-L6-v2 (bundled)" and emb.manifest["max_seq_length"] == 256
    # relevance shows through: a query's positive scores above the average document
    q = emb.ids("queries").index("q-tcp")
    scores = emb.vectors("corpus") @ emb.vectors("queries")[q]
    assert scores[emb.ids("corpus").index("tcp-p1")] == scores.max()
    # a second run in a fresh process: everything cached, torch never imported
    probe = ("import sys, runpy; sys.argv = ['minenegs'] + sys.argv[1:]\n"
             "try:\n    runpy.run_module('minenegs', run_name='__main__')\n"
             "except SystemExit as e:\n    assert not e.code, e.code\n"
             "print(json.dumps(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules)))")
    second = run([sys.executable, "-c", "import json\n" + probe, "encode", str(samples), "-o", str(tmp_path / "emb2"),
                  "--json"], env=env)
    assert second.returncode == 0, second.stderr
    out_lines = second.stdout.strip().splitlines()
    assert json.loads(out_lines[0])["texts_encoded"] == 0
    assert json.loads(out_lines[-1]) == []
    assert (tmp_path / "emb" / "corpus.npy").read_bytes() == (tmp_path / "emb2" / "corpus.npy").read_bytes()


def test_model_folder_copy_hits_the_same_cache(tmp_path, samples):
    copy = tmp_path / "my-model"
    shutil.copytree(bundled_model_path(), copy)
    assert SentenceTransformerEncoder(str(copy)).fingerprint() == SentenceTransformerEncoder().fingerprint()


def test_help_does_not_import_torch():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom minenegs.cli import app\n"
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0\n"
            "r = CliRunner().invoke(app, ['encode', '--help']); assert r.exit_code == 0\n"
            "print(sorted(m for m in ('torch', 'sentence_transformers', 'faiss') if m in sys.modules))")
    result = run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_compile_is_chosen_for_large_bf16_encodes_run_a_pass_at_a_time_or_a_kept_network(monkeypatch, tmp_path):
    import torch

    from minenegs.encode import models

    monkeypatch.setattr(models.compiling, "compiler_found", lambda: True)
    big, small = models.COMPILE_MIN_TEXTS, models.COMPILE_MIN_TEXTS - 1
    before, chosen = torch.get_num_threads(), {}
    try:
        torch.set_num_threads(1)  # one pass at a time: a large bf16 encode builds a network
        for compile_, precision, n in [("auto", "bf16", big), ("auto", "bf16", small), ("auto", "fp32", big),
                                       ("off", "bf16", big), ("on", "fp32", 1)]:
            enc = SentenceTransformerEncoder(precision=precision, compile=compile_, device="cpu")
            enc.plan(n, tmp_path)
            chosen[(compile_, precision, n)] = enc.compiled
        assert chosen == {("auto", "bf16", big): True, ("auto", "bf16", small): False, ("auto", "fp32", big): False,
                          ("off", "bf16", big): False, ("on", "fp32", 1): True}
        torch.set_num_threads(2)  # two passes at once instead: no build, unless asked for
        two, on = (SentenceTransformerEncoder(precision="bf16", compile=c, device="cpu") for c in ("auto", "on"))
        two.plan(big, tmp_path)
        on.plan(big, tmp_path)
        assert (two.compiled, two.streams, on.compiled, on.streams) == (False, 2, True, 1)
        monkeypatch.setattr(models.compiling, "compiler_found", lambda: False)
        torch.set_num_threads(1)
        enc = SentenceTransformerEncoder(precision="bf16", device="cpu")
        enc.plan(big, tmp_path)
        assert not enc.compiled  # no C++ compiler to build the network with ...
        enc._package.parent.mkdir(parents=True)
        enc._package.touch()
        torch.set_num_threads(2)
        enc.plan(1, tmp_path)
        assert enc.compiled  # ... but one built before is kept: loading it needs none, whatever the size or threads
    finally:
        torch.set_num_threads(before)


def test_a_compiled_network_is_built_once_kept_and_gives_the_uncompiled_vectors(samples, tmp_path):
    from minenegs.encode.compiling import compiler_found

    if not compiler_found():  # the fallback below still runs everywhere
        import pytest

        pytest.skip("no C++ compiler on PATH")
    texts = load_beir(samples).corpus.texts[:40]
    plain = SentenceTransformerEncoder(precision="fp32", compile="off")
    plain.plan(len(texts), tmp_path)
    compiled = SentenceTransformerEncoder(precision="fp32", compile="on")
    compiled.plan(len(texts), tmp_path)
    a, b = plain.encode(texts, None), compiled.encode(texts[:1], None)  # one text: a batch of one runs too
    b = np.concatenate([b, compiled.encode(texts[1:], None)])
    assert compiled.compiled and compiled.compile_error is None and hasattr(compiled.load()[0].model, "_orig_mod")
    assert cosines(a, b).min() >= 0.9999
    kept = compiled._package
    assert kept.exists() and kept.with_suffix(".json").exists() and not list(kept.parent.glob(".*tmp*"))
    built = kept.stat().st_mtime_ns
    again = SentenceTransformerEncoder(precision="fp32", compile="on")
    again.plan(len(texts), tmp_path)
    assert np.allclose(again.encode(texts, None), b, atol=1e-5) and kept.stat().st_mtime_ns == built  # loaded


def test_a_compiler_that_fails_leaves_the_uncompiled_model(samples, monkeypatch, tmp_path):
    import torch

    def broken(*args, **kwargs):
        raise RuntimeError("inductor: no working C++ compiler\nmore lines")

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", broken)
    texts = load_beir(samples).corpus.texts[:8]
    enc = SentenceTransformerEncoder(precision="fp32", compile="on")
    enc.plan(len(texts), tmp_path)
    got = enc.encode(texts, None)
    want = SentenceTransformerEncoder(precision="fp32", compile="off").encode(texts, None)
    assert not enc.compiled and enc.compile_error == "RuntimeError: inductor: no working C++ compiler"
    assert np.array_equal(got, want) and not hasattr(enc.load()[0].model, "_orig_mod")
    assert not enc._package.exists() and not list(enc._package.parent.glob("*"))  # nothing half-built is kept


def test_bf16_streams_give_the_vectors_of_one_pass_at_a_time(samples):
    """bf16 on a CPU with two threads: two forward passes at once, within cosine 0.9999 of one at a time; fp32, a
    single thread and a compiled network: one."""
    import torch

    from minenegs.encode.batches import encode_chunk

    texts = load_beir(samples).corpus.texts
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two, fp32 = SentenceTransformerEncoder(precision="bf16", device="cpu", compile="off"), SentenceTransformerEncoder(precision="fp32")
        assert (two.streams, fp32.streams) == (2, 1)
        alone = np.concatenate([two.encode(texts[i:i + 16], None) for i in range(0, len(texts), 16)])
        assert cosines(alone, encode_chunk(two, texts, None)).min() >= 0.9999 and torch.get_num_threads() == 2
        two.compiled = True
        assert two.streams == 1
        torch.set_num_threads(1)
        two.compiled = False
        assert two.streams == 1
    finally:
        torch.set_num_threads(before)
