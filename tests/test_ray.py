"""Encode and mine on a Ray cluster: a 2-CPU cluster started here with `ray start`, joined by address."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import fakes
from conftest import SAMPLES
from minenegs.cli import app
from minenegs.cluster import KILL_ENV, RaySettings
from minenegs.dataset import load_beir
from minenegs.embeddings import Embeddings, encode_dataset
from minenegs.errors import InputError
from minenegs.pool import PoolParams, build_pool

RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``(address, kill_file)``: a head node with 2 CPUs; creating ``kill_file`` makes the next task's worker
    kill itself (see minenegs.cluster)."""
    root = tmp_path_factory.mktemp("ray")
    kill = root / "kill"
    port = _free_port()
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "token")  # Ray's default: a token in ~/.ray/auth_token, made by `ray start`
    tests = str(Path(fakes.__file__).parent)  # the workers import the tests' fake encoder from here
    env = {**os.environ, KILL_ENV: str(kill), "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))}
    head = subprocess.Popen([str(RAY), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if head.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the Ray head node did not start")
                time.sleep(0.5)
        yield address, kill
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # the head and every process it started: a test cluster keeps nothing
        head.wait()
        mp.undo()


def _same_files(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _manifest(folder: Path, drop=("seconds",)) -> dict:
    m = json.loads((folder / "manifest.json").read_text())
    return {k: v for k, v in m.items() if k not in drop}


def _encode(out: Path, cache: Path, ray=None, **kw):
    return encode_dataset(load_beir(SAMPLES), out, fakes.FakeEncoder(dim=32), cache_dir=cache, chunk_size=8,
                          ray=ray, **kw)


EMB_FILES = ["corpus.npy", "queries.npy", "corpus.parquet", "queries.parquet", "qrels.parquet", "manifest.json"]


def test_encode_on_ray_writes_the_local_folder_and_cache(cluster, tmp_path):
    address, _ = cluster
    local = _encode(tmp_path / "local", tmp_path / "cache-local")
    remote = _encode(tmp_path / "ray", tmp_path / "cache-ray", RaySettings(address))
    _same_files(tmp_path / "local", tmp_path / "ray", EMB_FILES)
    assert remote.texts_encoded == local.texts_encoded == local.unique_texts
    assert remote.chunks == local.chunks > 4
    local_chunks = sorted(p.name for p in (tmp_path / "cache-local").rglob("*.npy"))
    assert sorted(p.name for p in (tmp_path / "cache-ray").rglob("*.npy")) == local_chunks
    again = _encode(tmp_path / "again", tmp_path / "cache-ray")  # a local run after the cluster's: all cached
    assert (again.texts_encoded, again.chunks_cached) == (0, again.chunks)
    _same_files(tmp_path / "local", tmp_path / "again", EMB_FILES[:2])


def test_a_ray_encode_resumes_from_the_chunks_a_killed_job_left(cluster, tmp_path):
    address, _ = cluster
    full = _encode(tmp_path / "local", tmp_path / "cache")
    chunks = sorted((tmp_path / "cache").rglob("*.npy"))
    lost = chunks[::2]  # the job was killed before writing these
    lost_texts = sum(len(np.load(p)) for p in lost)
    for p in lost:
        p.unlink()
    resumed = _encode(tmp_path / "ray", tmp_path / "cache", RaySettings(address))
    assert resumed.chunks_cached == full.chunks - len(lost)
    assert resumed.texts_encoded == lost_texts
    _same_files(tmp_path / "local", tmp_path / "ray", EMB_FILES)


def test_a_killed_encode_worker_is_retried_without_losing_a_chunk(cluster, tmp_path):
    address, kill = cluster
    _encode(tmp_path / "local", tmp_path / "cache-local")
    kill.touch()
    _encode(tmp_path / "ray", tmp_path / "cache-ray", RaySettings(address))
    assert not kill.exists() and list(kill.parent.glob("kill.*")), "no worker was killed"
    _same_files(tmp_path / "local", tmp_path / "ray", EMB_FILES)
    for p in kill.parent.glob("kill.*"):
        p.unlink()


@pytest.fixture(scope="module")
def emb(tmp_path_factory) -> Embeddings:
    root = tmp_path_factory.mktemp("ray-emb")
    _encode(root / "emb", root / "cache")
    return Embeddings(root / "emb")


POOL_FILES = ["candidates.parquet", "queries.parquet"]


@pytest.mark.parametrize("retriever", ["dense", "hybrid"])
def test_pool_on_ray_is_the_local_pool_byte_for_byte(cluster, emb, tmp_path, retriever):
    address, _ = cluster
    params = PoolParams(depth=20, retriever=retriever)
    local = build_pool(emb, params, out=tmp_path / "local", query_batch=3)
    remote = build_pool(emb, params, out=tmp_path / "ray", query_batch=3, ray=RaySettings(address, workers=2))
    _same_files(local, remote, POOL_FILES)
    assert _manifest(local, ("seconds", "index_used")) == _manifest(remote, ("seconds", "index_used"))
    assert not (remote / "parts").exists()


def test_a_killed_retrieval_worker_is_retried_without_a_duplicate_or_missing_row(cluster, emb, tmp_path):
    import pyarrow.parquet as pq

    address, kill = cluster
    params = PoolParams(depth=20)
    local = build_pool(emb, params, out=tmp_path / "local", query_batch=2)
    kill.touch()
    remote = build_pool(emb, params, out=tmp_path / "ray", query_batch=2, ray=RaySettings(address))
    assert not kill.exists() and list(kill.parent.glob("kill.*")), "no worker was killed"
    _same_files(local, remote, POOL_FILES)
    rows = pq.read_table(remote / "candidates.parquet", columns=["query_idx", "doc_idx"]).to_pydict()
    pairs = list(zip(rows["query_idx"], rows["doc_idx"]))
    assert len(pairs) == len(set(pairs)) == _manifest(local)["rows"]
    for p in kill.parent.glob("kill.*"):
        p.unlink()


runner = CliRunner()


@pytest.mark.slow
def test_cli_encode_and_mine_on_ray_match_a_local_run_with_the_bundled_model(cluster, tmp_path):
    address, _ = cluster
    outs = {}
    for name, extra in (("local", []), ("ray", ["--ray", address, "--ray-workers", "2"])):
        enc = runner.invoke(app, ["encode", str(SAMPLES), "-o", str(tmp_path / name), "--cache-dir",
                                  str(tmp_path / f"cache-{name}"), "-q", *extra])
        assert enc.exit_code == 0, enc.output
        mined = runner.invoke(app, ["mine", str(tmp_path / name), "-o", str(tmp_path / f"{name}.parquet"), "-q",
                                    *extra])
        assert mined.exit_code == 0, mined.output
        outs[name] = tmp_path / name
    a, b = (np.load(outs[n] / "corpus.npy") for n in ("local", "ray"))
    assert float(np.min(np.sum(a * b, axis=1))) > 0.9999  # the same model, maybe other thread counts
    assert (tmp_path / "local.parquet").read_bytes() == (tmp_path / "ray.parquet").read_bytes()


@pytest.mark.parametrize("address", ["127.0.0.1:1", "no-such-host.invalid:6379", "nonsense", "ray://"])
def test_a_bad_cluster_address_is_one_line_and_exit_2(tmp_path, address):
    started = time.monotonic()
    result = runner.invoke(app, ["encode", str(SAMPLES), "-o", str(tmp_path / "out"), "--ray", address])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minenegs: error: --ray ") and address in lines[0]
    assert not (tmp_path / "out").exists()
    assert time.monotonic() - started < 30


def test_ray_options_without_ray_are_refused():
    result = runner.invoke(app, ["mine", str(SAMPLES), "-o", "x.parquet", "--ray-workers", "2"])
    assert result.exit_code == 2 and "need --ray" in result.stderr
    with pytest.raises(InputError, match="--ray-cpus"):
        RaySettings("local", cpus=0)


def test_without_ray_nothing_of_ray_is_imported(tmp_path):
    code = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from fakes import FakeEncoder\n"
        "from minenegs.dataset import load_beir\n"
        "from minenegs.embeddings import Embeddings, encode_dataset\n"
        "from minenegs.pool import build_pool\n"
        f"encode_dataset(load_beir('data_samples'), {str(tmp_path / 'e')!r}, FakeEncoder(), cache_dir={str(tmp_path / 'c')!r})\n"
        f"build_pool(Embeddings({str(tmp_path / 'e')!r}))\n"
        "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=SAMPLES.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_auto_names_the_dead_cluster_it_would_join(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    result = runner.invoke(app, ["encode", str(SAMPLES), "-o", str(tmp_path / "out"), "--ray", "auto"])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("minenegs: error: --ray auto: no Ray cluster answers at 127.0.0.1:1 (Connection "
                                     "refused); start one with `ray start --head`, or pass --ray local to run on "
                                     "this machine")


def test_local_starts_its_own_instance_whatever_cluster_is_known(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # a dead cluster `auto` would try
    monkeypatch.setenv("PYTHONPATH", str(Path(fakes.__file__).parent))
    _encode(tmp_path / "local", tmp_path / "cache-local")
    summary = _encode(tmp_path / "ray", tmp_path / "cache-ray", RaySettings("local", workers=1))
    assert summary.texts_encoded == summary.unique_texts
    _same_files(tmp_path / "local", tmp_path / "ray", EMB_FILES)


def test_a_workers_own_error_reaches_the_caller_as_itself(cluster, tmp_path):
    from minenegs.errors import ModelError

    address, _ = cluster
    with pytest.raises(ModelError) as raised:
        encode_dataset(load_beir(SAMPLES), tmp_path / "out", fakes.BrokenEncoder(), cache_dir=tmp_path / "c",
                       ray=RaySettings(address))
    assert str(raised.value) == "cannot load model 'fake-bow': no such folder on this node"
    assert not (tmp_path / "out").exists()
