"""``inspect``: score statistics of any minenegs artifact or output file, and a histogram of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import MANIFEST, read_parquet
from ..errors import InputError
from ..select.candidates import read_pool_arrays
from ..select.selection import score_stats


def _lists_split(col, labels=None) -> tuple[np.ndarray, np.ndarray]:
    """Positives and negatives from list-valued score columns: the first entry is the positive, or by label."""
    pos, neg = [], []
    for i, scores in enumerate(col):
        if scores is None:
            continue
        if labels is not None:
            for s, lab in zip(scores, labels[i]):
                (pos if lab else neg).append(s)
        else:
            pos.append(scores[0])
            neg.extend(scores[1:])
    return np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)


def _pool(folder: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    a = read_pool_arrays(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    pos = a["is_positive"]
    info = {"kind": "pool", "queries": int(len(np.unique(a["query_idx"]))), "rows": int(len(pos)),
            "retriever": manifest.get("retriever"), "depth": manifest.get("depth"),
            "positives_not_retrieved": int((pos & ~a["retrieved"]).sum()),
            "mean_rank_of_retrieved_positives": round(float(a["rank"][pos & a["retrieved"]].mean()), 2)
            if (pos & a["retrieved"]).any() else None}
    return info, a["score"][pos], a["score"][~pos]


def _parquet(path: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path)
    kv = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()}
    provenance = json.loads(kv["minenegs"]) if "minenegs" in kv else {}
    table = read_parquet(path)
    names = table.column_names
    info: dict[str, Any] = {"kind": provenance.get("format", "parquet"), "rows": table.num_rows, "columns": names}
    if provenance:
        info["model"] = provenance.get("model")
        info["short_queries"] = provenance.get("short_queries")
    if "score" in names:
        pos, neg = _lists_split(table.column("score").to_pylist())
    elif "scores" in names:
        labels = table.column("labels").to_pylist() if "labels" in names else None
        pos, neg = _lists_split(table.column("scores").to_pylist(), labels)
    else:
        pos = neg = np.zeros(0)
    return info, pos, neg


def _jsonl(path: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    pos: list[float] = []
    neg: list[float] = []
    rows = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                rows += 1
                pos.extend(row.get("pos_scores", []))
                neg.extend(row.get("neg_scores", []))
    return {"kind": "flag-jsonl", "rows": rows}, np.asarray(pos), np.asarray(neg)


def inspect_path(path: Path | str) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """``(summary, positive scores, negative scores)`` of a pool folder, or an output file."""
    path = Path(path)
    if path.is_dir() and (path / "candidates.parquet").exists():
        info, pos, neg = _pool(path)
    elif path.is_file() and path.suffix == ".parquet":
        info, pos, neg = _parquet(path)
    elif path.is_file() and path.suffix in (".jsonl", ".json"):
        info, pos, neg = _jsonl(path)
    else:
        raise InputError(f"{path}: not a pool folder or an output file (.parquet, .jsonl) of minenegs")
    info = {"path": str(path), **info,
            "scores": {"positives": score_stats(pos), "negatives": score_stats(neg)}}
    if not len(pos) and not len(neg):
        info["note"] = "no scores in this file; write outputs with --scores to see them"
    return info, pos, neg


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install matplotlib") from None
    return plt


def _save(fig, png: Path | str) -> None:
    from ..artifacts import output_file

    fig.tight_layout()
    with output_file(Path(png), force=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    fig.clf()
    _pyplot().close(fig)


def plot_histogram(pos: np.ndarray, neg: np.ndarray, png: Path | str, title: str = "") -> None:
    """Overlaid histograms of positive and negative scores, saved as PNG."""
    plt = _pyplot()
    if not len(pos) and not len(neg):
        raise InputError("nothing to plot: the file has no scores; write outputs with --scores")
    values = np.concatenate([pos, neg])
    bins = np.linspace(values.min(), values.max(), 41)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(neg, bins=bins, alpha=0.6, label=f"negatives (n={len(neg):,})", color="tab:red")
    ax.hist(pos, bins=bins, alpha=0.6, label=f"positives (n={len(pos):,})", color="tab:blue")
    ax.set_xlabel("score")
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend()
    _save(fig, png)


def plot_frontier(series: dict[str, list[tuple[float, float, str]]], png: Path | str, title: str = "",
                  ylabel: str = "leak rate") -> None:
    """Leak (or false-negative) rate against mean negative rank, one marker series per name; each point is
    (mean rank, rate, label). The frontier of each series (no other point both harder and cleaner) is joined."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, points in series.items():
        points = [p for p in points if np.isfinite(p[0])]
        if not points:
            continue
        xs, ys = np.array([p[0] for p in points]), np.array([p[1] for p in points])
        (marker,) = ax.plot(xs, ys, "o", alpha=0.45, label=name)
        front = sorted((x, y) for x, y in zip(xs, ys) if not ((xs <= x) & (ys < y)).any() and not ((xs < x) & (ys <= y)).any())
        ax.plot([x for x, _ in front], [y for _, y in front], "-", color=marker.get_color())
        for x, y, label in points:
            if (x, y) in front and label:
                ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("mean original rank of the negatives (lower: harder)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    _save(fig, png)
