from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
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


# Each positive-aware setting's value at which a candidate of score s (its query's lowest positive p) flips
# between kept and removed: the setting is compared with these, so none may lie within float noise of it.
CRITICAL = {"max_score": lambda s, p: s, "min_score": lambda s, p: s, "absolute_margin": lambda s, p: p - s,
            "relative_margin": lambda s, p: (p - s) / np.abs(p)}
NOISE = 1e-4  # far above what two fp32 encodings of one text on two CPUs differ by (about 1e-6)


def clear_of_noise(setting: dict[str, float], scores: np.ndarray, positive_min: np.ndarray) -> dict[str, float]:
    """``setting`` with each value kept, or, where a candidate's critical value lies within :data:`NOISE` of it,
    moved to the middle of the nearest gap between critical values wider than four times that: so which side a
    candidate falls on never depends on float noise (another CPU, another library release)."""
    out = {}
    for name, value in setting.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            crit = np.sort(CRITICAL[name](scores.astype(np.float64), positive_min.astype(np.float64)).ravel())
        crit = crit[np.isfinite(crit)]
        if not len(crit) or np.abs(crit - value).min() > NOISE:
            out[name] = value
            continue
        lo, hi = crit[:-1], crit[1:]
        wide = np.flatnonzero(hi - lo > 4 * NOISE)
        mids = (lo[wide] + hi[wide]) / 2
        out[name] = float(mids[np.argmin(np.abs(mids - value))])
    return out


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
