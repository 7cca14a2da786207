"""The encode stage: folder layout, the chunk cache, resume after interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fakes import FakeEncoder
from minenegs.encode.cache import ChunkCache
from minenegs.inputs.dataset import load_beir
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings
from minenegs.errors import OutputExistsError
from minenegs.encode import batches, models
from minenegs.encode.models import fingerprint_dir, resolve_precision
from minenegs.records import Dataset, Qrel, TextTable


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def chunk_files(cache: Path) -> list[Path]:
    return sorted((cache / "chunks").glob("*/*.npy")) if (cache / "chunks").exists() else []


def test_folder_layout_and_exact_vectors(tmp_path, samples, cache_dir, fake):
    ds = load_beir(samples)
    summary = encode_dataset(ds, tmp_path / "emb", fake, cache_dir=cache_dir, query_prompt="query: ")
    emb = Embeddings(tmp_path / "emb")
    m = emb.manifest
    assert (m["kind"], m["model"], m["fingerprint"], m["dim"]) == ("embeddings", "fake-bow", "fake-bow-1-32", 32)
    assert (m["query_prompt"], m["corpus_prompt"], m["normalize"], m["scale"]) == ("query: ", None, True, 1.0)
    assert m["count"] == {"corpus": 104, "queries": 16, "qrels": 22}
    assert m["sources"]["corpus"]["sha256"] == ds.sources["corpus"]["sha256"]
    corpus = emb.vectors("corpus")
    assert isinstance(corpus, np.memmap) and corpus.shape == (104, 32)
    # row i is the normalised encoding of corpus text i; queries carry their prompt
    expected = unit(FakeEncoder().encode(ds.corpus.texts, None))
    np.testing.assert_allclose(corpus, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb.vectors("queries"), unit(FakeEncoder().encode(ds.queries.texts, "query: ")),
                               rtol=1e-5, atol=1e-6)
    assert emb.table("corpus") == ds.corpus and emb.ids("queries") == ds.queries.ids
    assert sorted(emb.qrels(), key=str) == sorted(ds.qrels, key=str)
    assert summary.texts_encoded == 104 + 16 and summary.chunks_cached == 0


def test_second_run_encodes_nothing_and_gives_the_same_bytes(tmp_path, samples, cache_dir):
    ds = load_beir(samples)
    encode_dataset(ds, tmp_path / "a", FakeEncoder(), cache_dir=cache_dir, chunk_size=16)
    again = FakeEncoder()
    summary = encode_dataset(ds, tmp_path / "b", again, cache_dir=cache_dir, chunk_size=16)
    assert again.encoded == 0 and summary.chunks_cached == summary.chunks > 1
    for name in ("corpus.npy", "queries.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_identical_texts_are_encoded_once(tmp_path, cache_dir):
    ds = Dataset(TextTable(["d1", "d2", "d3"], ["same text", "same text", "other text"]),
                 TextTable(["q1", "q2"], ["same text", "a question"]), [Qrel("q1", "d3")])
    fake = FakeEncoder()
    encode_dataset(ds, tmp_path / "emb", fake, cache_dir=cache_dir)
    assert fake.encoded == 3  # "same text", "other text", "a question"
    emb = Embeddings(tmp_path / "emb")
    c, q = emb.vectors("corpus"), emb.vectors("queries")
    assert np.array_equal(c[0], c[1]) and np.array_equal(c[0], q[0])
    prompted = FakeEncoder()
    encode_dataset(ds, tmp_path / "emb2", prompted, cache_dir=cache_dir, query_prompt="query: ")
    assert prompted.encoded == 2  # the corpus is cached; both queries change with the prompt


@pytest.mark.parametrize("change, reencoded", [
    ({"encoder": FakeEncoder(version="2")}, 120),  # another model fingerprint
    ({"encoder": FakeEncoder(scale=2.0)}, 120),  # a setting that changes the vectors
    ({"query_prompt": "q: "}, 16),  # only the queries change
    ({"corpus_prompt": "passage: "}, 104),
    ({"normalize": False}, 0),  # normalisation happens after the cache
])
def test_cache_key_covers_what_changes_vectors(tmp_path, samples, cache_dir, change, reencoded):
    ds = load_beir(samples)
    encode_dataset(ds, tmp_path / "a", FakeEncoder(), cache_dir=cache_dir)
    change = dict(change)
    encoder = change.pop("encoder", FakeEncoder())
    encoder.encoded = 0
    encode_dataset(ds, tmp_path / "b", encoder, cache_dir=cache_dir, **change)
    assert encoder.encoded == reencoded


def test_adding_a_document_reencodes_only_its_chunk(tmp_path, samples, cache_dir):
    ds = load_beir(samples)
    size = 8
    encode_dataset(ds, tmp_path / "a", FakeEncoder(), cache_dir=cache_dir, chunk_size=size)
    grown = Dataset(TextTable(ds.corpus.ids + ["new"], ds.corpus.texts + ["A brand new document about tides."]),
                    ds.queries, ds.qrels)
    fake = FakeEncoder()
    summary = encode_dataset(grown, tmp_path / "b", fake, cache_dir=cache_dir, chunk_size=size)
    assert 1 <= fake.encoded <= 2 * (2 * size)  # the chunk it lands in, and at most the next one
    assert summary.chunks - summary.chunks_cached <= 2


def test_unnormalised_output_keeps_raw_vectors(tmp_path, samples, cache_dir):
    ds = load_beir(samples)
    encode_dataset(ds, tmp_path / "raw", FakeEncoder(), cache_dir=cache_dir, normalize=False)
    raw = Embeddings(tmp_path / "raw").vectors("corpus")
    np.testing.assert_allclose(raw, FakeEncoder().encode(ds.corpus.texts, None), rtol=1e-5)


def test_corpus_without_queries(tmp_path, cache_dir):
    ds = Dataset(TextTable(["d1", "d2"], ["alpha", "beta"]), TextTable([], []), [])
    encode_dataset(ds, tmp_path / "emb", FakeEncoder(), cache_dir=cache_dir)
    emb = Embeddings(tmp_path / "emb")
    assert emb.vectors("corpus").shape == (2, 32) and emb.vectors("queries").shape == (0, 32)


def test_existing_output_is_kept_without_force_and_replaced_with_it(tmp_path, samples, cache_dir):
    ds = load_beir(samples)
    out = tmp_path / "emb"
    out.mkdir()
    (out / "old.txt").write_text("old")
    fake = FakeEncoder()
    with pytest.raises(OutputExistsError):
        encode_dataset(ds, out, fake, cache_dir=cache_dir)
    assert fake.encoded == 0 and (out / "old.txt").exists()
    encode_dataset(ds, out, fake, cache_dir=cache_dir, force=True)
    assert not (out / "old.txt").exists() and (out / "manifest.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_ctrl_c_leaves_no_output_and_no_partial_file(tmp_path, samples, cache_dir):
    ds = load_beir(samples)
    out = tmp_path / "emb"
    with pytest.raises(KeyboardInterrupt):
        encode_dataset(ds, out, FakeEncoder(fail_after=40), cache_dir=cache_dir, chunk_size=8)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    done = chunk_files(cache_dir)
    assert done and not list((cache_dir / "chunks").glob("*/*.tmp"))
    for path in done:
        assert np.load(path).shape[1] == 32  # every chunk on disk is whole
    # the rerun encodes exactly what was not finished, and equals an uninterrupted run
    cached_texts = sum(np.load(p).shape[0] for p in done)
    rerun = FakeEncoder()
    encode_dataset(ds, out, rerun, cache_dir=cache_dir, chunk_size=8)
    assert rerun.encoded == 120 - cached_texts
    encode_dataset(ds, tmp_path / "clean", FakeEncoder(), cache_dir=tmp_path / "fresh-cache", chunk_size=8)
    assert (out / "corpus.npy").read_bytes() == (tmp_path / "clean" / "corpus.npy").read_bytes()


# The child takes Ctrl-C as a terminal delivers it even where the suite runs in the background, whose commands
# inherit SIGINT ignored from a non-interactive shell.
KILL_SCRIPT = """
import signal
import sys
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {tests!r})
from fakes import FakeEncoder
from minenegs.inputs.dataset import load_beir
from minenegs.encode.embeddings import encode_dataset
encode_dataset(load_beir({samples!r}), {out!r}, FakeEncoder(stall_after=4), cache_dir={cache!r}, chunk_size=8)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_midway_then_rerun_redoes_only_unfinished_chunks(tmp_path, samples, cache_dir, sig):
    out = tmp_path / "emb"
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), samples=str(samples), out=str(out),
                                cache=str(cache_dir))
    proc = subprocess.Popen([sys.executable, "-c", script])
    while len(chunk_files(cache_dir)) < 4 and proc.poll() is None:  # it stalls after its fourth chunk
        time.sleep(0.02)
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the encode run did not stop within 120 s of {sig.name}")
    assert proc.returncode != 0
    assert not out.exists()
    assert not list((cache_dir / "chunks").glob("*/*.tmp")) or sig == signal.SIGKILL
    if sig == signal.SIGINT:  # Ctrl-C cleans up after itself
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    done = chunk_files(cache_dir)
    assert len(done) == 4  # killed part-way, where it stalled
    cached_texts = sum(np.load(p).shape[0] for p in done)
    rerun = FakeEncoder()
    summary = encode_dataset(load_beir(samples), out, rerun, cache_dir=cache_dir, chunk_size=8)
    assert summary.chunks_cached == len(done)
    assert rerun.encoded == 120 - cached_texts  # nothing finished before the kill is encoded again
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # the dead run's staging is swept
    assert not list((cache_dir / "chunks").glob("*/.*"))  # and so is a chunk it was writing when killed
    encode_dataset(load_beir(samples), tmp_path / "clean", FakeEncoder(), cache_dir=tmp_path / "c2", chunk_size=8)
    for name in ("corpus.npy", "queries.npy"):
        assert (out / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()


def test_corrupt_chunk_is_encoded_again(tmp_path, samples, cache_dir):
    ds = load_beir(samples)
    encode_dataset(ds, tmp_path / "a", FakeEncoder(), cache_dir=cache_dir, chunk_size=16)
    victim = chunk_files(cache_dir)[0]
    size = np.load(victim).shape[0]
    victim.write_bytes(b"garbage")
    fake = FakeEncoder()
    encode_dataset(ds, tmp_path / "b", fake, cache_dir=cache_dir, chunk_size=16)
    assert fake.encoded == size
    assert (tmp_path / "a" / "corpus.npy").read_bytes() == (tmp_path / "b" / "corpus.npy").read_bytes()


def test_fingerprint_follows_file_bytes_not_location(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    (a / "config.json").write_text('{"x": 1}')
    (a / "model.safetensors").write_bytes(b"\x00" * 100)
    (a / "README.md").write_text("docs do not change the vectors")
    memo = tmp_path / "memo.json"
    first = fingerprint_dir(a, memo)
    assert first in json.loads(memo.read_text()).values()
    b = tmp_path / "b"
    b.mkdir()
    for p in a.iterdir():
        (b / p.name).write_bytes(p.read_bytes())
    (b / "README.md").write_text("edited")
    assert fingerprint_dir(b, memo) == first
    (b / "model.safetensors").write_bytes(b"\x01" + b"\x00" * 99)
    assert fingerprint_dir(b, memo) != first


@pytest.mark.parametrize("native_bf16", [True, False])
def test_precision_resolution(monkeypatch, native_bf16):
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: native_bf16)  # either CPU, whatever this one is
    assert resolve_precision("fp32", None) == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cuda:0") == "bf16"
    assert resolve_precision("auto", "cpu") == ("bf16" if native_bf16 else "fp32")


def test_chunk_cache_roundtrip(tmp_path):
    cache = ChunkCache(tmp_path)
    assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, np.ones((3, 4)))
    assert cache.get("ab" * 32).dtype == np.float32 and cache.get("ab" * 32).shape == (3, 4)


class _Streamed:
    """An encoder with two streams that notes, per call, its thread and torch's thread count; fails on ``fail``."""

    batch_size, streams = 2, 2

    def __init__(self, fail: str | None = None) -> None:
        self.fail, self.seen = fail, {}

    def encode(self, texts: list[str], prompt: str | None) -> np.ndarray:
        import threading

        import torch

        if texts[0] == self.fail:
            raise ValueError("bad batch")
        time.sleep(0.02)
        self.seen[texts[0]] = (threading.current_thread().name, torch.get_num_threads())
        return np.array([[float(t), 1.0] for t in texts])


def test_streams_run_batches_at_once_in_order_on_shared_threads_and_stop_at_a_failure():
    import threading

    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        enc, ticks = _Streamed(), []
        out = batches.encode_chunk(enc, [str(i) for i in range(20)], None, ticks.append)
        assert out[:, 0].tolist() == list(range(20)) and ticks == [2] * 10  # in order, ticked in order
        first, *rest = (enc.seen[str(i)] for i in range(0, 20, 2))
        assert first == (threading.current_thread().name, 2)  # the first batch alone, on all the threads
        assert {name.startswith("minenegs-encode") for name, _ in rest} == {True}
        assert len({name for name, _ in rest}) == 2 and {n for _, n in rest} == {1}  # two streams, a thread each
        assert torch.get_num_threads() == 2  # given back
        failing = _Streamed(fail="6")
        with pytest.raises(ValueError, match="bad batch"):
            batches.encode_chunk(failing, [str(i) for i in range(40)], None)
        assert len(failing.seen) < 19 and torch.get_num_threads() == 2  # the batches queued after it never ran
    finally:
        torch.set_num_threads(before)
