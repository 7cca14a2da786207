from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).parent))

from fakes import FakeEncoder  # noqa: E402


def select_negatives(pool: Path, params, corpus=None, ce_logits=None, arrays=None):
    """Each query's negatives from the pool folder ``pool`` under ``params``, all of it at once."""
    from minenegs.select.candidates import read_pool_arrays
    from minenegs.select.engine import Selector

    return Selector(arrays if arrays is not None else read_pool_arrays(pool), corpus, ce_logits).selection(params)


@pytest.fixture
def samples() -> Path:
    return SAMPLES


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def fake() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture(scope="session")
def tiny_ce(tmp_path_factory) -> Path:
    """A tiny CrossEncoder with seeded random weights (:func:`fakes.tiny_cross_encoder`), built once."""
    from fakes import tiny_cross_encoder

    return tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """No test writes to the user's cache or depends on their default model."""
    monkeypatch.setenv("MINENEGS_CACHE", str(tmp_path_factory.mktemp("default-cache")))
    monkeypatch.delenv("MINENEGS_MODEL", raising=False)
    monkeypatch.delenv("MINENEGS_DEBUG", raising=False)
