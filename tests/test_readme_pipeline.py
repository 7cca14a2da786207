"""The README's "Use in CI" script, run as a real shell script."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]


def ci_script() -> str:
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Use in CI\n(.*?)^## ", readme, re.S | re.M).group(1)
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_readme_pipeline_runs_and_makes_its_files(tmp_path):
    shutil.copytree(ROOT / "data_samples", tmp_path / "data_samples")
    (tmp_path / "pipeline.sh").write_text(ci_script())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MINENEGS_CACHE", None)
    result = subprocess.run(["bash", "pipeline.sh"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    runs = tmp_path / "runs"
    assert json.loads((runs / "emb" / "manifest.json").read_text())["count"]["queries"] == 16
    assert (runs / "pool" / "candidates.parquet").exists()
    assert pq.read_metadata(runs / "simans.parquet").num_rows == 22
    rows = [json.loads(line) for line in (runs / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and all(len(r["neg"]) == 3 and not set(r["neg"]) & set(r["pos"]) for r in rows)
    summary = json.loads((runs / "filter.json").read_text())
    assert summary["queries"] == 16 and summary["queries_short"] == 0
    assert json.loads((runs / "inspect.json").read_text())["rows"] == 22
    assert (tmp_path / ".minenegs-cache" / "chunks").is_dir()  # the script's own cache, as it says
    # run again: the outputs exist, so the first stage refuses with status 2 and changes nothing
    before = (runs / "train.jsonl").read_bytes()
    again = subprocess.run(["bash", "pipeline.sh"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "already exists; pass --force" in again.stderr
    assert (runs / "train.jsonl").read_bytes() == before


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path):
    """The first block of the README's "Python" section, run as written (the bundled model, the sample data)."""
    section = re.search(r"^## Python\n(.*?)^### ", (ROOT / "README.md").read_text(), re.S | re.M).group(1)
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shutil.copytree(ROOT / "data_samples", tmp_path / "data_samples")
    env = {**os.environ, "MINENEGS_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert pq.read_metadata(tmp_path / "runs" / "negatives.parquet").num_rows > 0
    assert len(result.stdout.strip().splitlines()) == 6  # one line per setting of the 3 x 2 grid
