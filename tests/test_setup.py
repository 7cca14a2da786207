"""The set-up contract: README's two commands are real Makefile targets, CI runs the test one."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
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
        assert "venv" in dry.stdout
        # the locked versions with their hashes, nothing resolved (so no CUDA build of torch), then the project
        assert "pip install --quiet --require-hashes --no-deps -r requirements.lock" in dry.stdout
        assert dry.stdout.index("-r requirements.lock") < dry.stdout.index("--no-deps --no-build-isolation -e .")
        assert "pip check" in dry.stdout and expect[target] in dry.stdout


def _lock() -> dict[str, str]:
    """requirements.lock as name -> version, each entry checked to carry a SHA-256."""
    entries = re.split(r"\n(?=[a-z0-9])", (ROOT / "requirements.lock").read_text().split("\n", 1)[1])
    pins = {}
    for entry in entries:
        if entry.startswith("#") or not entry.strip():
            continue
        found = re.match(r"([a-z0-9._-]+)==(\S+) \\\n", entry)
        assert found, f"not pinned with ==: {entry[:80]}"
        assert "--hash=sha256:" in entry, f"{found.group(1)} has no hash"
        pins[found.group(1)] = found.group(2)
    return pins


def test_the_lock_pins_every_package_with_hashes_and_the_cpu_build_of_torch():
    pins = _lock()
    assert pins["torch"] == "2.13.0+cpu"
    assert not [name for name in pins if name.startswith("nvidia") or name == "triton"]  # nothing of a CUDA build


def _declared() -> list[str]:
    """The package's dependencies and its test and ray extras', as pyproject.toml declares them."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + [r for extra in ("test", "ray") for r in project["optional-dependencies"][extra]]


def test_the_lock_holds_every_declared_dependency_within_its_range():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {canonicalize_name(k): v for k, v in _lock().items()}
    for spec in map(Requirement, _declared()):
        name = canonicalize_name(spec.name)
        assert name in pins, f"{spec.name} is declared but not locked: run make lock"
        assert spec.specifier.contains(pins[name], prereleases=True), f"{spec} but the lock has {pins[name]}"


def test_floors_are_the_declared_lowest_versions():
    from packaging.requirements import Requirement

    out = subprocess.run([sys.executable, str(ROOT / ".ci" / "floors.py")], capture_output=True, text=True, check=True)
    floors = dict(line.split("==") for line in out.stdout.split())
    lowest = {r.name: s.version for r in map(Requirement, _declared()) for s in r.specifier if s.operator == ">="}
    assert floors == lowest and "sentence-transformers" in floors


def test_ci_runs_the_readme_test_command(clone):
    lines = [ln.strip() for ln in (clone / ".ci" / "run").read_text().splitlines()]
    assert "make test" in lines


def test_a_second_run_does_not_reinstall():
    if not (ROOT / ".venv" / ".minenegs-installed").exists():
        pytest.skip("the environment was not made by the Makefile")
    dry = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0
    assert "pip install" not in dry.stdout and "pytest" in dry.stdout
