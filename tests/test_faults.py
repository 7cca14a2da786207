"""Failure loses nothing: kills, full disks and read-only outputs leave the previous output intact and no
partial file, and a rerun gives the same bytes as an uninterrupted run."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import RandomEncoder
from typer.testing import CliRunner

from minenegs.cli import app
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings
from minenegs.errors import MinenegsError
from minenegs.select.params import MineParams
from minenegs.retrieve.pool import PoolParams, build_pool
from minenegs.records import Dataset, Qrel, TextTable
from minenegs.api import negatives_from_pool

MINENEGS = [sys.executable, "-m", "minenegs"]


@pytest.fixture(scope="module")
def emb(tmp_path_factory) -> Path:
    """A corpus big enough that mining takes a second or two (so kills land part-way)."""
    root = tmp_path_factory.mktemp("faults")
    rng = np.random.default_rng(0)
    n_docs, n_q = 30000, 3000
    docs = TextTable([f"d{i}" for i in range(n_docs)], [f"document {i} about {rng.integers(1e9)}" for i in range(n_docs)])
    queries = TextTable([f"q{i}" for i in range(n_q)], [f"query {i}" for i in range(n_q)])
    qrels = [Qrel(f"q{i}", f"d{(i * 7) % n_docs}") for i in range(n_q)]
    encode_dataset(Dataset(docs, queries, qrels), root / "emb", RandomEncoder(), cache_dir=root / "cache",
                   chunk_size=50000)
    return root / "emb"


def fresh_copy(emb: Path, dest: Path) -> Path:
    shutil.copytree(emb, dest, ignore=shutil.ignore_patterns("pools", "indexes"))
    return dest


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5])
def test_mine_killed_at_any_point_then_rerun_gives_the_same_bytes(tmp_path, emb, delay):
    ref = fresh_copy(emb, tmp_path / "ref")
    args = ["--strategy", "simans", "--num-negatives", "4", "--seed", "3", "-q"]
    assert subprocess.run(MINENEGS + ["mine", str(ref), "-o", str(tmp_path / "ref.parquet")] + args).returncode == 0
    work = fresh_copy(emb, tmp_path / "work")
    out = tmp_path / "out.parquet"
    proc = subprocess.Popen(MINENEGS + ["mine", str(work), "-o", str(out)] + args)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if proc.returncode == -signal.SIGKILL:  # killed part-way: nothing half-written is visible (a kill that
        # lands after the output was renamed into place, as the process exits, leaves it whole)
        assert not out.exists() or out.read_bytes() == (tmp_path / "ref.parquet").read_bytes()
    again = subprocess.run(MINENEGS + ["mine", str(work), "-o", str(out), "--force"] + args)
    assert again.returncode == 0
    assert out.read_bytes() == (tmp_path / "ref.parquet").read_bytes()
    assert leftovers(tmp_path) == [] and leftovers(work / "pools") == []


@pytest.mark.parametrize("delay", [0.3, 0.8])
def test_filter_killed_keeps_the_previous_output(tmp_path, emb, delay):
    pool = build_pool(Embeddings(emb), PoolParams(depth=50))
    out = tmp_path / "neg.parquet"
    negatives_from_pool(pool, out, MineParams("top", 3))
    previous = out.read_bytes()
    expect = tmp_path / "expect.parquet"
    assert subprocess.run(MINENEGS + ["filter", str(pool), "-o", str(expect), "--relative-margin", "0.1", "-q"]).returncode == 0
    proc = subprocess.Popen(MINENEGS + ["filter", str(pool), "-o", str(out), "--force", "--relative-margin", "0.1",
                                        "-q"])
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if proc.returncode == -signal.SIGKILL:
        # the previous output, byte for byte, unless the kill came after the new output was renamed into place
        killed = out.read_bytes()
        assert killed == previous or killed == expect.read_bytes()
    rerun = subprocess.run(MINENEGS + ["filter", str(pool), "-o", str(out), "--force", "--relative-margin", "0.1", "-q"])
    assert rerun.returncode == 0
    assert out.read_bytes() == expect.read_bytes()


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_writing_negatives(tmp_path, emb, monkeypatch):
    import pyarrow.parquet as pq

    pool = build_pool(Embeddings(emb), PoolParams(depth=20))
    out = tmp_path / "neg.parquet"
    out.write_text("previous")
    monkeypatch.setattr(pq.ParquetWriter, "write_table", disk_full)
    with pytest.raises(MinenegsError, match=r"cannot write .*neg.parquet \(No space left on device\); nothing was written"):
        negatives_from_pool(pool, out, MineParams("top", 3), force=True)
    assert out.read_text() == "previous" and leftovers(tmp_path) == []
    result = CliRunner().invoke(app, ["filter", str(pool), "-o", str(out), "--force"])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert out.read_text() == "previous"


def test_disk_full_while_encoding(tmp_path, monkeypatch):
    ds = Dataset(TextTable(["a", "b"], ["alpha", "beta"]), TextTable(["q"], ["query"]), [Qrel("q", "a")])
    monkeypatch.setattr(np.lib.format, "open_memmap", disk_full)
    with pytest.raises(MinenegsError, match="No space left on device"):
        encode_dataset(ds, tmp_path / "emb", RandomEncoder(), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "emb").exists() and leftovers(tmp_path) == []


def test_read_only_output_folder_fails_before_any_work(tmp_path, emb, monkeypatch):
    import tempfile

    pool = build_pool(Embeddings(emb), PoolParams(depth=20))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    result = CliRunner().invoke(app, ["filter", str(pool), "-o", str(tmp_path / "neg.parquet")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"minenegs: error: cannot write to {tmp_path} (Read-only file system); choose another output"
    assert not (tmp_path / "neg.parquet").exists()


def test_unwritable_system_folder(tmp_path, emb):
    result = subprocess.run(MINENEGS + ["mine", str(emb), "-o", "/proc/minenegs.parquet"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("minenegs: error: cannot write to /proc")


@pytest.fixture
def dead_pid() -> int:
    """The process id of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_a_killed_writer_are_cleared_by_the_next_write(tmp_path, dead_pid):
    from minenegs.artifacts import output_dir, output_file, write_text_atomic

    out, folder, text = tmp_path / "neg [1].parquet", tmp_path / "pool", tmp_path / "short.txt"
    (tmp_path / f".{out.name}.{dead_pid}.abc.tmp").write_text("half")
    (tmp_path / f".{folder.name}.{dead_pid}.abc.tmp").mkdir()
    (tmp_path / f".{text.name}.{dead_pid}.abc.tmp").write_text("half")
    live = tmp_path / f".{out.name}.{os.getpid()}.xyz.tmp"  # a running writer's file is left alone
    live.write_text("busy")
    with output_file(out) as tmp:
        tmp.write_text("new")
    with output_dir(folder) as staging:
        (staging / "x").write_text("new")
    write_text_atomic(text, "new")
    assert out.read_text() == "new" and (folder / "x").read_text() == "new" and text.read_text() == "new"
    assert leftovers(tmp_path) == [live.name]


def test_a_previous_output_moved_aside_by_a_killed_writer_is_put_back(tmp_path, dead_pid):
    from minenegs.artifacts import check_output, output_dir

    folder = tmp_path / "pool"
    aside = tmp_path / f".{folder.name}.{dead_pid}.abc.old" / "previous"
    aside.mkdir(parents=True)
    (aside / "x").write_text("previous")
    with pytest.raises(MinenegsError, match="already exists"):  # put back, so it needs --force again
        check_output(folder, force=False)
    assert (folder / "x").read_text() == "previous" and leftovers(tmp_path) == []
    with pytest.raises(RuntimeError), output_dir(folder, force=True):  # a failing run keeps it
        raise RuntimeError
    assert (folder / "x").read_text() == "previous" and leftovers(tmp_path) == []


def test_cache_chunk_left_half_written_is_cleared(tmp_path, dead_pid):
    from minenegs.encode.cache import ChunkCache

    cache = ChunkCache(tmp_path)
    path = cache.path("ab" * 32)
    path.parent.mkdir(parents=True)
    (path.parent / f".{path.name}.{dead_pid}.abc.tmp").write_bytes(b"half")
    cache.put("ab" * 32, np.ones((2, 3)))
    assert cache.get("ab" * 32).shape == (2, 3) and leftovers(path.parent) == []
