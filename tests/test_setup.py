"""The set-up contract: README's two commands are real Makefile targets, CI runs the test one."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands(readme: str) -> list[str]:
    section = re.search(r"^## Quick start\n(.*?)^## ", readme, re.S | re.M)
    assert section, "README has no '## Quick start' section"
    block = re.search(r"```(?:sh|bash|console)?\n(.*?)```", section.group(1), re.S)
    assert block, "the Quick start section has no code block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.split("#")[0].strip()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    target = tmp_path_factory.mktemp("clone") / "minenegs"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True)
    return target


def test_readme_commands_are_the_makefile_targets(clone):
    commands = quick_start_commands((clone / "README.md").read_text())
    assert commands == ["make demo", "make test"]
    expect = {"demo": "minenegs encode data_samples", "test": "-m pytest"}
    for command in commands:
        target = command.split()[1]
        dry = subprocess.run(["make", "-n", target], cwd=clone, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr
        assert "venv" in dry.stdout and "pip install --quiet torch==2.13.0" in dry.stdout
        assert dry.stdout.index("torch==2.13.0") < dry.stdout.index("-e '.[test,ray]'")  # torch before the project, with Ray
        assert expect[target] in dry.stdout


def test_ci_runs_the_readme_test_command(clone):
    lines = [ln.strip() for ln in (clone / ".ci" / "run").read_text().splitlines()]
    assert "make test" in lines


def test_a_second_run_does_not_reinstall():
    if not (ROOT / ".venv" / ".minenegs-installed").exists():
        pytest.skip("the environment was not made by the Makefile")
    dry = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0
    assert "pip install" not in dry.stdout and "pytest" in dry.stdout
