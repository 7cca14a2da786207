"""One library call per command: each checks everything it was given before any work starts, does the work and
returns the summary the command renders. Python users call the same functions.

``progress``, where taken, is a factory: ``progress(description)`` gives a context manager yielding a
``callback(done, total)`` or None (``minenegs.report.console.progress_bar`` with ``quiet`` bound is one).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import recipe
from .artifacts import check_output, read_parquet, scratch_dir, write_text_atomic
from .errors import AcceptanceError, InputError
from .select.filters import needs_judge
from .select.calibrate import check_bounds
from .select.from_pool import OpenedPool, check_judge
from .select.judging import parts, running
from .select.params import MineParams
from .write.batching import check_order
from .write.outputs import FORMATS, write_output

if TYPE_CHECKING:
    import numpy as np

    from .distributed.runner import RaySettings
    from .encode.folder import Embeddings
    from .encode.models import Encoder
    from .records import Dataset
    from .select.selection import Selection
    from .inputs.tables import Columns
    from .retrieve.pool import PoolParams
    from .select.judging import Judging


def _bar(progress: Any, description: str):
    return progress(description) if progress is not None else contextlib.nullcontext()


def _probe(ray: RaySettings | None) -> None:
    """Fail in seconds when nothing answers at the cluster's address, before any input is read."""
    if ray is not None:
        from .distributed.runner import probe

        probe(ray.address)


def encode(data: Path | str | None, output: Path | str, *, split: str = "train", corpus: Path | str | None = None,
           queries: Path | str | None = None, qrels: Path | str | None = None, columns: Columns | None = None,
           model: str | None = None, precision: str = "auto", batch_size: int | None = None,
           max_seq_length: int | None = None, device: str | None = None, compile: str = "auto",
           cache_dir: Path | str | None = None, ray: RaySettings | None = None, progress: Any = None,
           **options: Any) -> dict[str, Any]:
    """``minenegs encode``: the dataset (a BEIR folder or pair file ``data``, or separate files; see
    :func:`~minenegs.inputs.dataset.load_dataset`) encoded by the sentence-transformers ``model`` (default: the
    bundled one) into the embeddings folder ``output``; ``options`` (prompts, ``normalize``, ``chunk_size``,
    ``dtype``, ``force``) go to :func:`~minenegs.encode.embeddings.encode_dataset`."""
    from .encode.cache import default_cache_dir
    from .encode.embeddings import encode_dataset
    from .encode.models import SentenceTransformerEncoder
    from .inputs.dataset import load_dataset
    from .inputs.tables import Columns

    _probe(ray)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    # sharded: a corpus file is read a block at a time into a folder beside the output (in the cache folder, which
    # Ray workers share, with --ray), each shard's rows read back from there
    staging = Path(output) if ray is None else cache / "staged" / Path(output).name
    with scratch_dir(staging, ray is not None or options.get("force", False)) if options.get("shards", 1) > 1 \
            else contextlib.nullcontext() as stage:
        dataset = load_dataset(data, split=split, corpus=corpus, queries=queries, qrels=qrels,
                               columns=columns or Columns(), stage=stage)
        if device is None and ray is not None and ray.gpus:  # GPU actors: the model goes on their GPU (auto: bf16)
            device = "cuda"
        encoder = SentenceTransformerEncoder(model, device=device, precision=precision, max_seq_length=max_seq_length,
                                             batch_size=batch_size, compile=compile,
                                             fingerprint_memo=cache / "fingerprints.json")
        with _bar(progress, "encoding") as tick:
            return encode_dataset(dataset, output, encoder, cache_dir=cache, progress=tick, ray=ray,
                                  **options).to_dict()


def _check_selection(output: Path | str, fmt: str, force: bool, min_coverage: float | None,
                     adapt: str = "adaptive") -> None:
    from .select.adaptive import RECIPES

    if fmt not in FORMATS:
        raise InputError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if adapt not in RECIPES:
        raise InputError(f"--recipe {adapt}: choose one of {', '.join(RECIPES)}")
    if min_coverage is not None and not 0 <= min_coverage <= 1:
        raise InputError(f"--min-coverage {min_coverage:g}: give a share between 0 and 1")
    check_output(Path(output), force)


def mine(embeddings: Path | str, output: Path | str, params: MineParams, pool_params: PoolParams | None = None, *,
         pool: Path | str | None = None, judging: Judging | None = None, max_leak: float | None = None,
         max_short: float = 0.0,
         fmt: str = recipe.FORMAT, scores: bool = False, batch_order: str = "pool", batch_size: int = 32,
         min_coverage: float | None = None, force: bool = False, ray: RaySettings | None = None, adapt: str = "adaptive",
         fail_on_dense: bool = False, progress: Any = None) -> dict[str, Any]:
    """``minenegs mine``: the candidate pool of ``embeddings`` under ``pool_params`` (kept in ``pool``, or under
    the embeddings folder; reused when it exists), then :func:`filter` from it. With ``max_leak``, the settings are
    first calibrated on the pool (:func:`calibrate`'s default grid over ``params``) and the hardest whose leak
    upper bound is at most ``max_leak`` is mined; the summary says what was picked. ``adapt`` and
    ``fail_on_dense``: see :func:`filter`."""
    from .encode.folder import Embeddings
    from .retrieve.pool import PoolParams, build_pool

    judge, judging = parts(judging)
    pool_params = pool_params or PoolParams()
    _check_selection(output, fmt, force, min_coverage, adapt)
    check_bounds(max_leak, max_short)
    check_order(batch_order, batch_size, fmt, pool_params.query_clusters > 0)
    check_judge(judge, needs_judge(params.thresholds))  # before retrieval, which the pool must wait for
    _probe(ray)
    if judging is not None:
        judging.probe()
    with _bar(progress, "retrieving") as tick:
        folder = build_pool(Embeddings(embeddings), pool_params, progress=tick, out=pool, force=force, ray=ray)
    calibrated = arrays = None
    with _bar(progress, "cross-encoder") as tick:
        if max_leak is not None:
            from .select.calibrate import DEFAULT_GRID, calibrate as run_calibration, pick

            opened = OpenedPool(folder, params, judge, tick, needs=_grid_needs_judge(params, DEFAULT_GRID))
            selector = opened.whole()
            row = pick(run_calibration(selector, params, DEFAULT_GRID), max_leak, max_short)
            params, calibrated, arrays = row.params, row.to_dict(), selector.arrays  # the pool is read once
            opened.params = params
        else:
            opened = OpenedPool(folder, params, judge, tick)
        density = opened.adapt("fixed" if max_leak is not None else adapt, fail_on_dense, arrays)
        summary = _write(opened, output, fmt, scores, batch_order, batch_size, force, judging, arrays=arrays,
                         density=density)
    return {**summary, "density": density, **({"calibrated": calibrated} if calibrated is not None else {})}


def filter(pool: Path | str, output: Path | str, params: MineParams, *, judging: Judging | None = None,
           fmt: str = recipe.FORMAT, scores: bool = False, batch_order: str = "pool", batch_size: int = 32, min_coverage: float | None = None,
           force: bool = False, adapt: str = "adaptive", fail_on_dense: bool = False,
           progress: Any = None) -> dict[str, Any]:
    """``minenegs filter``: each query's negatives from the pool folder ``pool`` under ``params`` (``judging``: its
    judges judge the negatives lazily, its ``scorer`` scores the pairs the cross-encoder filters read), written to
    ``output`` as ``fmt``; the summary.

    ``batch_order="clusters"`` writes the rows in blocks of ``batch_size`` from one query cluster each, shuffled
    with ``params.seed`` (:mod:`minenegs.write.batching`); ``"pool"`` keeps the pool's query order.

    Before writing, the pool's density is measured (:mod:`minenegs.select.adaptive`; the summary's ``density``).
    With ``adapt="adaptive"`` and ``params`` the default recipe's, dense data gets the dense recipe instead;
    ``"fixed"`` keeps ``params``. Negatives the user chose on dense data are written with a warning in the
    summary, or with ``fail_on_dense`` not written at all (:class:`AcceptanceError`, exit 3)."""
    judge, judging = parts(judging)
    _check_selection(output, fmt, force, min_coverage, adapt)
    opened = OpenedPool(pool, params, judge)  # a folder that is not a pool: one line, before anything reads it
    clusters = _clusters(opened.pool)
    check_order(batch_order, batch_size, fmt, clusters is not None)
    if judging is not None:
        judging.probe()
    density = opened.adapt(adapt, fail_on_dense)
    with _bar(progress, "cross-encoder") as opened.progress:
        return {**_write(opened, output, fmt, scores, batch_order, batch_size, force, judging, clusters,
                         density=density), "density": density}


negatives_from_pool = filter  # the name Python users know


def pairs(dataset: Dataset, folder: Path, encoder: Encoder, params: MineParams, pool_params: PoolParams, *,
          cache_dir: Path, prompts: tuple[str | None, str | None] = (None, None), judging: Judging | None = None,
          own_doc: np.ndarray | None = None) -> tuple[Selection, Embeddings]:
    """The drop-in's run (:func:`minenegs.compat.mine_hard_negatives`), on a dataset in memory: encoded by
    ``encoder`` into ``folder`` (with the (query, corpus) ``prompts``) unless it is there, its pool under
    ``pool_params``, each query's negatives under ``params`` (with ``judging``); ``own_doc[query]`` is a corpus
    row never handed out to that query (-1: none). Returns the selection and the embeddings folder."""
    from .encode.embeddings import encode_dataset
    from .encode.folder import Embeddings
    from .retrieve.pool import build_pool
    from .select.candidates import cached_pool_arrays, without_docs

    judge, judging = parts(judging)
    check_judge(judge, needs_judge(params.thresholds))
    if judging is not None:
        judging.probe()
    if not (folder / "manifest.json").exists():
        encode_dataset(dataset, folder, encoder, cache_dir=cache_dir, query_prompt=prompts[0],
                       corpus_prompt=prompts[1], force=True)
    emb = Embeddings(folder)
    pool = build_pool(emb, pool_params)
    arrays = cached_pool_arrays(pool)
    arrays = arrays if own_doc is None else without_docs(arrays, own_doc)
    with running(judging):
        return OpenedPool(pool, params, judge).select(arrays, judging=judging), emb


def _clusters(pool: Path) -> dict[int, int] | None:
    col = read_parquet(pool / "queries.parquet", columns=["cluster_id"]).column("cluster_id")
    if col.null_count == len(col):
        return None
    return dict(enumerate(col.to_pylist()))


def _write(opened: OpenedPool, output: Path | str, fmt: str, scores: bool, batch_order: str, batch_size: int,
           force: bool, judging: Judging | None = None, clusters: dict[int, int] | None = None,
           arrays: dict[str, Any] | None = None, density: dict[str, Any] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    params, manifest, emb = opened.params, opened.manifest, opened.emb
    with running(judging):
        selection = opened.select(arrays, judging=judging)
        flags = None if judging is None else opened.flags_estimate(judging, arrays)
    clusters = _clusters(opened.pool) if clusters is None else clusters
    by_position = None if clusters is None else {i: clusters[int(q)] for i, q in enumerate(selection.query_idx)}
    summary = selection.summary(params.num_negatives)
    used = manifest.get("index_used") or {}  # what was searched, without timings: the output's bytes stay the same
    index = {k: v for k, v in used.items() if k not in ("reused", "build_seconds") and v is not None}
    metadata = {
        "params": {**asdict(params), "format": fmt, "scores": scores,
                   **({"batch_order": batch_order, "batch_size": batch_size} if batch_order != "pool" else {})},
        "pool": {k: manifest.get(k) for k in ("retriever", "depth", "index", "rrf_k", "query_clusters")},
        "index_used": index,
        "model": emb.manifest["model"], "fingerprint": emb.manifest["fingerprint"],
        "inputs": emb.manifest.get("sources", {}), "seed": params.seed, "counts": summary,
    }
    if judging is not None:
        from .select.judging import provenance

        metadata["judging"] = provenance(judging)
    if density and "loss" in density:  # the dense recipe's rows: the loss they are meant for, and what chose it
        metadata["training"] = {**density["loss"], "density": {k: density[k] for k in ("above_positive", "leak")}}
    rows = write_output(selection, emb, output, fmt=fmt, num_negatives=params.num_negatives, scores=scores,
                        metadata=metadata, force=force, clusters=by_position, corpus_texts=opened.corpus.texts,
                        batches=(batch_size, params.seed) if batch_order == "clusters" else None)
    return {"pool": str(opened.pool), **({"index": index} if index else {}), **summary, "rows": rows,
            **({"judging": judging.summary()} if judging is not None else {}),
            **({"contamination": flags} if flags is not None else {}),
            "seconds": round(time.perf_counter() - started, 3)}


def check_coverage(summary: dict[str, Any], min_coverage: float | None) -> None:
    """Raise :class:`AcceptanceError` when no row was written, or fewer than ``min_coverage`` (checked by
    :func:`mine` and :func:`filter`) of the queries got all their negatives."""
    if summary.get("rows") == 0:
        raise AcceptanceError(f"no rows were written: none of the {summary['queries']} queries kept a negative "
                              "(loosen the filters or the rank window); the empty output was written")
    if min_coverage is None:
        return
    coverage = 1 - summary["queries_short"] / max(1, summary["queries"])
    if coverage < min_coverage:
        raise AcceptanceError(f"only {coverage:.1%} of queries got {summary['num_negatives']} negatives "
                              f"({summary['queries_short']} short), below --min-coverage {min_coverage:g}; "
                              "the output was written, short query ids are in OUT.short.txt")


def _grid_needs_judge(base: MineParams, grid: dict[str, list]) -> bool:
    """Whether a grid needs a judge's scores; every setting is checked first, before any work starts."""
    from .select.sweep import grid_settings

    for _ in grid_settings(base, grid):
        pass
    return needs_judge(base.thresholds) or any(needs_judge({k: v}) for k, values in grid.items() for v in values)


def sweep(pool: Path | str, base: MineParams, grid: dict[str, list], *, judging: Judging | None = None,
          progress: Any = None) -> list[dict[str, Any]]:
    """``minenegs sweep``: negatives kept and queries short per setting of ``grid`` (setting name -> values);
    with ``judging``, after the judges."""
    from .select.sweep import sweep as run_sweep

    judge, judging = parts(judging)
    if not grid:
        raise InputError("give at least one list to sweep, e.g. --relative-margin 0,0.02,0.05,0.1")
    if judging is not None:
        judging.probe()
    with _bar(progress, "cross-encoder") as tick:
        opened = OpenedPool(pool, base, judge, tick, _grid_needs_judge(base, grid))
        selector = opened.whole()
        with running(judging):
            return run_sweep(selector, base, grid, opened.step(selector, judging) if judging else None)


def calibrate(pool: Path | str, base: MineParams, grid: dict[str, list] | None = None, *, judging: Judging | None = None,
              max_leak: float | None = None, max_short: float = 0.0,
              recipe: Path | str = "calibrated.toml",
              plot: Path | str | None = None, force: bool = False, progress: Any = None,
              **options: Any) -> dict[str, Any]:
    """``minenegs calibrate``: the leak estimate, hardness and shortfall of each setting of ``grid``
    (``calibrate.DEFAULT_GRID`` when None; ``options`` go to :func:`~minenegs.select.calibrate.calibrate`).
    With ``max_leak``, the hardest setting whose leak upper bound is at most ``max_leak`` is written as a TOML
    recipe to ``recipe`` (``picked`` in the summary); with ``plot``, leak against hardness as a PNG. With
    ``judging``, each judge's miss rate on the held-out positives (how often it calls a known relevant document
    not relevant) with its interval, as ``judges``."""
    from .report.stats import plot_frontier
    from .select.calibrate import MAX_HOLDOUTS, DEFAULT_GRID, calibrate as run_calibration, pick, recipe_toml, summary

    judge, judging = parts(judging)
    check_bounds(max_leak, max_short)
    if max_leak is not None:
        check_output(Path(recipe), force)
    grid = DEFAULT_GRID if grid is None else grid
    if judging is not None:
        judging.probe()
    with _bar(progress, "cross-encoder") as tick:
        opened = OpenedPool(pool, base, judge, tick, _grid_needs_judge(base, grid))
        selector = opened.whole()
        judged = opened.step(selector, judging) if judging is not None else None
        with running(judging):
            rows = run_calibration(selector, base, grid, judged=judged, **options)
            if judging is not None:
                misses = opened.judge_misses(selector, judging, options.get("max_holdouts", MAX_HOLDOUTS),
                                             options.get("seed", 0))
    info = summary(rows)
    if judging is not None:
        info["judges"], info["judging"] = misses, judging.summary()
    if plot is not None:
        plot_frontier({"settings": [(r.mean_rank, r.estimate.rate, _short(r.setting)) for r in rows]}, plot,
                      title=f"calibrate {pool}: {info['holdouts']} held-out positives, {info['queries']} queries")
    if max_leak is not None:
        chosen = pick(rows, max_leak, max_short)
        write_text_atomic(Path(recipe), recipe_toml(chosen, str(pool), opened.manifest))
        info["picked"] = {**chosen.to_dict(), "recipe": str(recipe), "setting": _short(chosen.setting)}
    return info


def _short(setting: dict) -> str:
    return " ".join(f"{k}={'off' if v is None else v}" for k, v in setting.items())


def inspect(path: Path | str, plot: Path | str | None = None) -> dict[str, Any]:
    """``minenegs inspect``: score statistics of a pool folder or an output file; with ``plot``, a PNG
    histogram of positive against negative scores."""
    from .report.stats import inspect_path, plot_histogram

    info, pos, neg = inspect_path(path)
    if plot is not None:
        plot_histogram(pos, neg, plot, title=str(path))
        info["plot"] = str(plot)
    return info
