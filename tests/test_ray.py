"""Encode and mine on a Ray cluster: a 2-CPU cluster started here with `ray start`, joined by address."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import fakes
from conftest import SAMPLES
from minenegs.cli import app
from minenegs.distributed.runner import KILL_ENV, RaySettings
from minenegs.inputs.dataset import load_beir
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings
from minenegs.errors import InputError, MinenegsError
from minenegs.retrieve.pool import PoolParams, build_pool
from minenegs.distributed.head import LOOPBACK, MAX_TEMP_DIR, SINGLE_MACHINE_ENV, Head, short_temp_dir, start_head

CLIENT = """
import json, logging, ray
ray.init(address={address!r}, logging_level=logging.ERROR, log_to_driver=False)
print(json.dumps(ray.cluster_resources()))
"""


def _resources(head: Head, timeout: float = 60) -> dict:
    """The cluster's resources as Ray's own client sees them from another process."""
    done = subprocess.run([sys.executable, "-c", CLIENT.format(address=head.address)], env=head.env(),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"Ray's client cannot join {head.address}:\n{done.stderr}\n{head.output()}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``(address, kill_file)``: a head node with 2 CPUs on the loopback, on free ports, in a temp folder of its
    own; creating ``kill_file`` makes the next task's worker kill itself (see minenegs.distributed.runner)."""
    root = tmp_path_factory.mktemp("ray")
    kill = root / "kill"
    mp = pytest.MonkeyPatch()
    tests = str(Path(fakes.__file__).parent)  # the workers import the tests' fake encoder from here
    env = {**os.environ, KILL_ENV: str(kill), "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))}
    with short_temp_dir("mn-test-ray-") as temp:  # pytest's own folders can be too deep for Ray's socket paths
        head = start_head(temp, cpus=2, env=env)
        try:
            for name, value in head.env().items():  # this process joins as the head's drivers do (its token)
                if os.environ.get(name) != value:
                    mp.setenv(name, value)
            resources = _resources(head)
            assert resources.get("CPU") == 2 and f"node:{LOOPBACK}" in resources, resources
            yield head.address, kill
        finally:
            head.stop()  # the head and every process it started: a test cluster keeps nothing
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



def test_a_sharded_ray_encode_reads_its_rows_on_the_workers_and_writes_the_local_shards(cluster, tmp_path, monkeypatch):
    """A staged corpus (encode --shards): the workers read their chunks' texts from the staged file, the driver
    sends row numbers only; the shard folders are the local run's, byte for byte."""
    from minenegs.encode import on_ray
    from minenegs.inputs import staged

    address, _ = cluster
    monkeypatch.setattr(staged, "ROWS", 16)
    sent, encode_chunks = [], on_ray.encode_chunks
    monkeypatch.setattr(on_ray, "encode_chunks", lambda ray, enc, jobs, *a: sent.extend(jobs) or encode_chunks(ray, enc, jobs, *a))
    for name, ray in (("local3", None), ("ray3", RaySettings(address))):
        (tmp_path / f"stage-{name}").mkdir()
        ds = load_beir(SAMPLES, stage=tmp_path / f"stage-{name}")
        encode_dataset(ds, tmp_path / name, fakes.FakeEncoder(dim=32), cache_dir=tmp_path / f"cache-{name}",
                       chunk_size=8, ray=ray, shards=3)
    shards = sorted(p.relative_to(tmp_path / "local3") for p in (tmp_path / "local3").rglob("*") if p.is_file())
    assert len(shards) == 3 * 3 + 4
    _same_files(tmp_path / "local3", tmp_path / "ray3", [str(p) for p in shards])
    corpus = [job for job in sent if job["source"]]
    assert corpus and all(job["texts"] == [] and job["rows"] for job in corpus)  # rows, not texts
    assert sum(len(job["rows"]) for job in corpus) == 104  # the sample corpus' documents, each once


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


def test_a_sharded_pool_on_ray_is_the_local_pool_byte_for_byte(cluster, emb, tmp_path):
    """Three shards searched by the cluster's workers, each holding one shard, merged by the driver: the pool of
    one flat index searched here."""
    from dataclasses import replace

    from minenegs.retrieve.index import IndexParams

    address, _ = cluster
    local = build_pool(emb, PoolParams(depth=20, index=IndexParams("flat")), out=tmp_path / "local", query_batch=3)
    remote = build_pool(emb, PoolParams(depth=20, index=IndexParams("flat"), shards=3), out=tmp_path / "ray",
                        query_batch=3, ray=RaySettings(address, workers=2))
    _same_files(local, remote, POOL_FILES)
    assert _manifest(remote)["index_used"]["kind"] == "flat" and _manifest(remote)["index_path"] is None
    assert not (remote / "shards").exists() and not (remote / "parts").exists()
    ivf = IndexParams("ivf", nlist=4, nprobe=2)  # IVF shards sharing the driver's trained cells
    local = build_pool(emb, PoolParams(depth=20, index=ivf), out=tmp_path / "ivf-local", query_batch=3)
    remote = build_pool(emb, PoolParams(depth=20, index=ivf, shards=3), out=tmp_path / "ivf-ray", query_batch=3,
                        ray=RaySettings(address, workers=2))
    _same_files(local, remote, POOL_FILES)
    hybrid = PoolParams(retriever="hybrid", depth=20, index=IndexParams("flat"), shards=3)  # BM25 in the driver
    local = build_pool(emb, replace(hybrid, shards=1), out=tmp_path / "hybrid-local", query_batch=3)
    remote = build_pool(emb, hybrid, out=tmp_path / "hybrid-ray", query_batch=3, ray=RaySettings(address, workers=2))
    _same_files(local, remote, POOL_FILES)
    with pytest.raises(InputError, match="--shards 3 with --ray and an IVF index: give --nprobe"):
        build_pool(emb, PoolParams(depth=20, index=IndexParams("ivf", nlist=4), shards=3), out=tmp_path / "ivf",
                   ray=RaySettings(address, workers=2))


def test_ivf_pq_shards_on_ray_give_the_local_sharded_pool_from_shard_folders(cluster, tmp_path, monkeypatch):
    """IVF-PQ shards (cells and codebooks trained once by the driver) on the cluster's workers, over a corpus
    stored as shard folders: the pool of the same sharded search run here."""
    from minenegs.records import Dataset, Qrel, TextTable
    from minenegs.retrieve.index import IndexParams

    address, _ = cluster
    ds = Dataset(TextTable([f"d{i}" for i in range(2000)], [f"doc {i}" for i in range(2000)]),
                 TextTable([f"q{i}" for i in range(40)], [f"query {i}" for i in range(40)]),
                 [Qrel(f"q{i}", f"d{i * 7}") for i in range(40)])
    encode_dataset(ds, tmp_path / "emb", fakes.RandomEncoder(dim=32), cache_dir=tmp_path / "cache", shards=3)
    emb = Embeddings(tmp_path / "emb")
    params = PoolParams(depth=20, index=IndexParams("ivf", nlist=8, nprobe=2, pq_m=4), shards=3)
    local = build_pool(emb, params, out=tmp_path / "local", query_batch=16)
    remote = build_pool(emb, params, out=tmp_path / "ray", query_batch=16, ray=RaySettings(address, workers=2))
    _same_files(local, remote, POOL_FILES)
    assert _manifest(remote)["index_used"]["pq_m"] == 4
    from minenegs.retrieve import on_ray  # without --shards, a stored corpus's shards are the search's

    searched = []
    original = on_ray.search_shards
    monkeypatch.setattr(on_ray, "search_shards", lambda *a, **kw: searched.append(a[2]) or original(*a, **kw))
    flat = build_pool(emb, PoolParams(depth=20, index=IndexParams("flat")), out=tmp_path / "auto", query_batch=16,
                      ray=RaySettings(address, workers=2))
    assert searched == [3]
    here = build_pool(emb, PoolParams(depth=20, index=IndexParams("flat")), out=tmp_path / "here",
                      query_batch=16)
    _same_files(here, flat, POOL_FILES)


def test_a_killed_shard_worker_is_redone_and_the_pool_is_unchanged(cluster, emb, tmp_path):
    from minenegs.retrieve.index import IndexParams

    address, kill = cluster
    params = PoolParams(depth=20, index=IndexParams("flat"), shards=3)
    local = build_pool(emb, params, out=tmp_path / "local", query_batch=2)
    kill.touch()
    remote = build_pool(emb, params, out=tmp_path / "ray", query_batch=2, ray=RaySettings(address))
    assert not kill.exists() and list(kill.parent.glob("kill.*")), "no worker was killed"
    _same_files(local, remote, POOL_FILES)
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
    # the same rows and provenance; the score statistics agree to float noise (a score summed in another order by
    # another thread count may round the other way at the 4th decimal)
    import json

    import pyarrow.parquet as pq

    local, ray = (pq.read_table(tmp_path / f"{n}.parquet") for n in ("local", "ray"))
    assert local.to_pydict() == ray.to_pydict() and local.num_rows > 0
    meta = [json.loads(pq.ParquetFile(tmp_path / f"{n}.parquet").metadata.metadata[b"minenegs"]) for n in ("local", "ray")]
    stats = [m["counts"].pop("scores") for m in meta]
    assert meta[0] == meta[1]
    for side in stats[0]:
        for key, value in stats[0][side].items():
            assert stats[1][side][key] == pytest.approx(value, abs=2e-4), (side, key)


@pytest.mark.parametrize("address", ["127.0.0.1:1", "no-such-host.invalid:6379", "nonsense", "ray://"])
def test_a_bad_cluster_address_is_one_line_and_exit_2(tmp_path, address, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # refused before Ray (and its long retries) is reached at all
    result = runner.invoke(app, ["encode", str(SAMPLES), "-o", str(tmp_path / "out"), "--ray", address])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minenegs: error: --ray ") and address in lines[0]
    assert "pip install" not in lines[0]
    assert not (tmp_path / "out").exists()


def test_ray_options_without_ray_are_refused():
    result = runner.invoke(app, ["mine", str(SAMPLES), "-o", "x.parquet", "--ray-workers", "2"])
    assert result.exit_code == 2 and "need --ray" in result.stderr
    with pytest.raises(InputError, match="--ray-cpus"):
        RaySettings("local", cpus=0)


def test_without_ray_nothing_of_ray_is_imported(tmp_path):
    code = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from fakes import FakeEncoder\n"
        "from minenegs.inputs.dataset import load_beir\n"
        "from minenegs.encode.embeddings import encode_dataset\nfrom minenegs.encode.folder import Embeddings\n"
        "from minenegs.retrieve.pool import build_pool\n"
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


def test_a_head_folder_too_deep_for_rays_sockets_is_refused_before_anything_starts(tmp_path, monkeypatch):
    deep = tmp_path.resolve() / ("d" * MAX_TEMP_DIR)
    with pytest.raises(MinenegsError) as raised:
        start_head(deep)
    assert str(raised.value) == (f"Ray's temp folder {deep} is {len(str(deep))} bytes long: "
                                 f"Ray's socket paths under it would pass 107 bytes; use one of at most {MAX_TEMP_DIR}")
    assert not deep.exists()  # refused before a folder or a process was made
    monkeypatch.setenv("TMPDIR", str(deep))  # a deep $TMPDIR: the head's own folder goes to /tmp instead
    monkeypatch.setattr("tempfile.tempdir", None)
    deep.mkdir()
    with short_temp_dir("mn-test-") as folder:
        assert folder.parent == Path("/tmp") and folder.is_dir() and len(str(folder)) <= MAX_TEMP_DIR
    assert not folder.exists()


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


def _live_processes_of_local_heads() -> list[str]:
    """Live processes (zombies aside) started by a `--ray local` head (their environment carries its mark)."""
    from minenegs.distributed.head import HEAD_ENV

    left = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            marked = f"{HEAD_ENV}=".encode() in (entry / "environ").read_bytes() and b"minenegs-ray-" in \
                (entry / "environ").read_bytes()
        except OSError:
            continue
        if marked and stat[stat.rindex(")") + 2] not in "ZX":
            left.append(stat[:stat.rindex(")") + 1])
    return left


MINE_ON_LOCAL_RAY = [sys.executable, "-m", "minenegs", "mine", "-q", "--depth", "20", "--ray", "local",
                     "--ray-workers", "1"]


def test_two_local_runs_at_once_both_finish_with_the_local_output(emb, tmp_path):
    """Each `--ray local` run starts a head of its own (loopback, free ports, own temp folder); neither joins
    the other's, nor a dead cluster that RAY_ADDRESS and a stale session file under Ray's temp folder name."""
    stale = tmp_path / "raytmp" / "ray"
    (stale / "session_2020-01-01_00-00-00_000000_1").mkdir(parents=True)
    (stale / "session_latest").symlink_to(stale / "session_2020-01-01_00-00-00_000000_1")
    (stale / "ray_current_cluster").write_text("127.0.0.1:1")
    before = sorted(p.relative_to(stale) for p in stale.rglob("*"))
    env = {**os.environ, "RAY_TMPDIR": str(tmp_path / "raytmp"), "RAY_ADDRESS": "127.0.0.1:1"}
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", SINGLE_MACHINE_ENV):  # as a user's shell: nothing of the
        env.pop(name, None)  # module's test cluster
    copies = [tmp_path / name for name in ("a", "b")]
    for copy in copies:
        shutil.copytree(emb.folder, copy, ignore=shutil.ignore_patterns("pools", "indexes"))
    local = tmp_path / "local.parquet"
    assert runner.invoke(app, ["mine", str(emb.folder), "-o", str(local), "-q", "--depth", "20"]).exit_code == 0
    runs = [subprocess.Popen(MINE_ON_LOCAL_RAY + [str(c), "-o", str(c) + ".parquet"], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in copies]
    for run in runs:
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
        assert err == ""  # -q: nothing, and none of Ray's own log lines ("... core_worker.cc:...: Actor ...")
    assert _live_processes_of_local_heads() == []  # each run waited for what it started
    for copy in copies:
        assert Path(str(copy) + ".parquet").read_bytes() == local.read_bytes()
    assert sorted(p.relative_to(stale) for p in stale.rglob("*")) == before  # nothing read there was changed
    assert (stale / "ray_current_cluster").read_text() == "127.0.0.1:1"


def test_rays_own_log_lines_are_kept_off_standard_error_and_nothing_else(capfd):
    from minenegs.distributed.runner import without_ray_log_lines

    ray_line = (b"[2026-12-06 11:08:53,915 E 15809 15809] core_worker.cc:2465: Actor with class name: "
                b"'MapWorker(MapBatches(_EncodeWorker))' has constructor arguments in the object store\n")
    with without_ray_log_lines():
        os.write(2, b"before\n" + ray_line + b"after\n")
        os.write(2, b"[not a Ray line] kept\n")
        os.write(2, b"\rencoding 10/20")  # a progress bar's partial line passes as it is
    os.write(2, ray_line)  # outside the context: untouched
    assert capfd.readouterr().err.encode() == b"before\nafter\n[not a Ray line] kept\n\rencoding 10/20" + ray_line
