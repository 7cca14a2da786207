"""Mining: the candidate pool, strategies and the rank window, positive-aware filters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fakes import FakeEncoder
from conftest import select_negatives
from minenegs.cli import app
from minenegs.inputs.dataset import load_beir
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings
from minenegs.retrieve.index import IndexParams
from minenegs.select.candidates import read_pool_arrays
from minenegs.select.engine import RowsView, Selector
from minenegs.select.params import MineParams
from minenegs.retrieve.pool import PoolParams, _schema, build_pool
from minenegs.select.strategies import STRATEGIES


@pytest.fixture(scope="module")
def emb(tmp_path_factory) -> Embeddings:
    root = tmp_path_factory.mktemp("mine")
    ds = load_beir(Path(__file__).resolve().parents[1] / "data_samples")
    encode_dataset(ds, root / "emb", FakeEncoder(dim=64), cache_dir=root / "cache")
    return Embeddings(root / "emb")


def pool_table(pool: Path) -> dict:
    return pq.read_table(pool / "candidates.parquet").to_pydict()


def test_pool_has_ranked_candidates_and_exact_positive_scores(emb):
    pool = build_pool(emb, PoolParams(depth=10))
    t = pool_table(pool)
    corpus, queries = emb.vectors("corpus"), emb.vectors("queries")
    qids = emb.ids("queries")
    for qi in range(len(qids)):
        rows = [i for i, q in enumerate(t["query_idx"]) if q == qi]
        ranks = [t["rank"][i] for i in rows if t["rank"][i] is not None]
        assert ranks == list(range(1, 11))
        retrieved_scores = [t["score"][i] for i in rows if t["rank"][i] is not None]
        assert retrieved_scores == sorted(retrieved_scores, reverse=True)
        for i in rows:  # every score is the exact dot product, retrieved or not
            assert t["score"][i] == pytest.approx(float(corpus[t["doc_idx"][i]] @ queries[qi]), abs=1e-5)
    positives = {(q.query_id, q.doc_id) for q in emb.qrels()}
    flagged = {(q, d) for q, d, p in zip(t["query_id"], t["doc_id"], t["is_positive"]) if p}
    assert flagged == positives  # every positive is in the pool, retrieved or added with source "qrels"
    assert {s for s, r in zip(t["source"], t["rank"]) if r is None} <= {"qrels"}


def test_pool_is_reused(emb):
    first = build_pool(emb, PoolParams(depth=12))
    stamp = (first / "candidates.parquet").stat().st_mtime_ns
    again = build_pool(emb, PoolParams(depth=12))
    assert again == first and (first / "candidates.parquet").stat().st_mtime_ns == stamp
    assert build_pool(emb, PoolParams(depth=13)) != first


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_agree_with_flat_on_small_data(emb, kind):
    flat = pool_table(build_pool(emb, PoolParams(depth=10)))
    approx = pool_table(build_pool(emb, PoolParams(depth=10, index=IndexParams(kind, nlist=4, nprobe=4))))
    pairs = lambda t: {(q, d) for q, d, r in zip(t["query_idx"], t["doc_idx"], t["rank"]) if r is not None}
    assert len(pairs(flat) & pairs(approx)) / len(pairs(flat)) >= 0.95


def test_hybrid_pool_marks_sources_and_keeps_dense_scores(emb):
    t = pool_table(build_pool(emb, PoolParams(depth=10, retriever="hybrid")))
    assert {"dense", "bm25", "both"} <= set(t["source"])
    assert all(np.isfinite(t["score"]))
    assert all(b is not None for b, s in zip(t["bm25"], t["source"]) if s in ("bm25", "both"))


def test_query_clusters(emb):
    pool = build_pool(emb, PoolParams(depth=5, query_clusters=3))
    clusters = pq.read_table(pool / "queries.parquet").column("cluster_id").to_pylist()
    assert len(clusters) == 16 and set(clusters) <= {0, 1, 2} and len(set(clusters)) > 1


# -- selection on synthetic pools ----------------------------------------------------------------
def write_pool(folder: Path, queries: list[list[tuple[float, bool]]]) -> Path:
    """A pool folder from, per query, (score, is_positive) candidates in rank order."""
    cols = {name: [] for name in _schema().names}
    for qi, cands in enumerate(queries):
        for r, (score, positive) in enumerate(cands, 1):
            cols["query_idx"].append(qi)
            cols["doc_idx"].append(qi * 1000 + r)
            cols["query_id"].append(f"q{qi}")
            cols["doc_id"].append(f"d{qi}-{r}")
            cols["rank"].append(r)
            cols["score"].append(score)
            cols["is_positive"].append(positive)
            cols["source"].append("dense")
            cols["bm25"].append(None)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols, schema=_schema()), folder / "candidates.parquet")
    (folder / "manifest.json").write_text(json.dumps({"kind": "pool"}))
    return folder


scores = st.floats(-1, 1, allow_nan=False, width=32)
pools = st.lists(st.lists(st.tuples(scores, st.booleans()), min_size=1, max_size=30), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(queries=pools, strategy=st.sampled_from(sorted(STRATEGIES)), n=st.integers(1, 8),
       range_min=st.integers(0, 5), width=st.one_of(st.none(), st.integers(1, 20)), seed=st.integers(0, 3),
       margin=st.one_of(st.none(), st.floats(0, 0.2)))
def test_selection_invariants(tmp_path_factory, queries, strategy, n, range_min, width, seed, margin):
    pool = write_pool(tmp_path_factory.mktemp("pool"), queries)
    range_max = None if width is None else range_min + width
    params = MineParams(strategy, n, range_min, range_max, seed, thresholds={"relative_margin": margin})
    sel = select_negatives(pool, params)
    again = select_negatives(pool, params)
    for qi, negs in enumerate(sel.negatives):
        cands = queries[qi]
        ranks = negs % 1000
        positives = {r for r, (_, pos) in enumerate(cands, 1) if pos}
        assert not set(ranks.tolist()) & positives  # no positive among the negatives
        assert len(set(ranks.tolist())) == len(ranks) <= n  # no duplicates
        assert all(range_min < r <= (range_max or 10**9) for r in ranks)  # inside the rank window
        if margin is not None and positives:
            p = min(cands[r - 1][0] for r in positives)
            assert all(np.float32(cands[r - 1][0]) <= np.float32(p - abs(p) * margin) for r in ranks)
        eligible = [r for r in range(1, len(cands) + 1) if r not in positives and range_min < r <= (range_max or 10**9)]
        if margin is None:
            assert len(ranks) == min(n, len(eligible))  # never short while enough candidates survive
        assert np.array_equal(negs, again.negatives[qi])  # same seed, same choice
        if strategy == "top":
            assert list(ranks) == sorted(ranks)
    assert sel.short == [f"q{i}" for i, negs in enumerate(sel.negatives) if len(negs) < n]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(queries=pools, strategy=st.sampled_from(sorted(STRATEGIES)), n=st.integers(1, 5), seed=st.integers(0, 3),
       margin=st.one_of(st.none(), st.floats(0, 0.2)), absolute=st.one_of(st.none(), st.floats(0, 0.1)))
def test_held_out_selection_is_the_selection_with_that_positive_unlabelled(tmp_path_factory, queries, strategy, n,
                                                                            seed, margin, absolute):
    """The engine that calibrates (every hold-out at once) agrees with mining a pool where the held-out positive
    is simply not labelled."""
    pool = write_pool(tmp_path_factory.mktemp("pool"), queries)
    params = MineParams(strategy, n, seed=seed, thresholds={"relative_margin": margin, "absolute_margin": absolute})
    engine = Selector(read_pool_arrays(pool))
    inst = engine.holdouts()
    got = engine.pick(RowsView(engine, inst), params)
    chosen = got.split(engine.arrays["doc_idx"][inst.rows])
    expected_instances = [(qi, r) for qi, cands in enumerate(queries) if sum(p for _, p in cands) >= 2
                          for r, (_, p) in enumerate(cands, 1) if p]
    assert len(chosen) == len(expected_instances)
    for (qi, r), negs in zip(expected_instances, chosen):
        relabelled = [list(c) for c in queries]
        relabelled[qi][r - 1] = (relabelled[qi][r - 1][0], False)
        arrays = read_pool_arrays(write_pool(tmp_path_factory.mktemp("ref"), relabelled))
        ref = select_negatives(pool, params, arrays=arrays).negatives[qi]
        assert negs.tolist() == ref.tolist()


def test_range_min_skips_original_ranks_not_survivors(tmp_path):
    # ranks 1-2 are dropped by the margin; range_min=2 must not skip ranks 3-4 as well (it does in ST)
    pool = write_pool(tmp_path / "p", [[(0.9, True), (0.89, False), (0.88, False), (0.5, False), (0.4, False),
                                        (0.3, False)]])
    sel = select_negatives(pool, MineParams("top", 2, range_min=2, thresholds={"relative_margin": 0.05}))
    assert (sel.negatives[0] % 1000).tolist() == [4, 5]


def test_simans_draws_in_proportion_to_its_weights(tmp_path):
    cands = [(0.8, True)] + [(0.8 - 0.05 - 0.01 * abs(i - 20), False) for i in range(40)]
    pool = write_pool(tmp_path / "p", [cands])
    arrays = read_pool_arrays(pool)
    scores = np.array([s for s, _ in cands[1:]])
    picks = [select_negatives(pool, MineParams("simans", 1, seed=seed), arrays=arrays).negatives[0][0] for seed in range(400)]
    drawn = scores[np.array(picks) % 1000 - 2]  # document r sits at rank r; rank 1 is the positive
    w = np.exp(-100 * (scores - 0.75) ** 2)  # centred on p + b = 0.8 - 0.05
    expected = float((w * (0.75 - scores)).sum() / w.sum())
    spread = float(np.sqrt((w * (0.75 - scores - expected) ** 2).sum() / w.sum()))
    assert abs((0.75 - drawn).mean() - expected) < 3.5 * spread / np.sqrt(len(drawn))
    gap = 0.75 - scores  # a uniform draw would average gap.mean()
    assert (0.75 - drawn).mean() < gap.mean() - 5 * gap.std() / np.sqrt(len(drawn))


def test_mine_cli_same_seed_same_bytes(tmp_path, emb):
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.parquet"
        result = CliRunner().invoke(app, ["mine", str(emb.folder), "-o", str(out), "--strategy", "simans",
                                          "--seed", "7", "--num-negatives", "4", "--json"])
        assert result.exit_code == 0, result.output
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    summary = json.loads(result.stdout)
    assert summary["queries"] == 16 and summary["rows"] == pq.read_metadata(tmp_path / "a.parquet").num_rows
    assert pq.read_schema(tmp_path / "a.parquet").names == ["anchor", "positive"] + [f"negative_{i}" for i in range(1, 5)]


def test_output_file_is_all_or_nothing(tmp_path):
    from minenegs.artifacts import output_file
    from minenegs.errors import OutputExistsError

    out = tmp_path / "out.parquet"
    out.write_text("previous")
    with pytest.raises(OutputExistsError):
        with output_file(out):
            pass
    with pytest.raises(RuntimeError):
        with output_file(out, force=True) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert out.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]
    with output_file(out, force=True) as tmp:
        tmp.write_text("new")
    assert out.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]


def test_mine_cli_refuses_to_overwrite(tmp_path, emb):
    out = tmp_path / "neg.parquet"
    out.write_text("keep me")
    result = CliRunner().invoke(app, ["mine", str(emb.folder), "-o", str(out)])
    assert result.exit_code == 2 and "already exists; pass --force" in result.stderr
    assert out.read_text() == "keep me"


def test_index_is_saved_and_reused(emb):
    from minenegs.retrieve.index import open_index

    first = open_index(emb, IndexParams("hnsw", hnsw_m=8))
    again = open_index(emb, IndexParams("hnsw", hnsw_m=8, ef_search=64))  # search-time setting: same index
    assert again.reused and again.path == first.path and again.index.hnsw.efSearch == 64
    assert open_index(emb, IndexParams("hnsw", hnsw_m=16)).path != first.path
    assert json.loads((first.path / "manifest.json").read_text())["kind"] == "index"


def test_named_pool_folder_is_checked_and_default_one_reused(tmp_path, emb):
    named = tmp_path / "pool"
    assert build_pool(emb, PoolParams(depth=7), out=named) == named
    assert build_pool(emb, PoolParams(depth=7), out=named) == named  # same settings: reused
    with pytest.raises(Exception, match="holds a pool made from other embeddings or settings"):
        build_pool(emb, PoolParams(depth=8), out=named)
    assert build_pool(emb, PoolParams(depth=8), out=named, force=True) == named
    default = build_pool(emb, PoolParams(depth=9))
    manifest = json.loads((default / "manifest.json").read_text())
    manifest.pop("key")  # a pool written before manifests carried their key
    (default / "manifest.json").write_text(json.dumps(manifest))
    assert build_pool(emb, PoolParams(depth=9)) == default


def test_bm25_top_k_breaks_ties_by_the_lower_index_whatever_the_order_given():
    """Partial sorts order ties as the NumPy release pleases: the BM25 ranking may not depend on that."""
    from minenegs.retrieve.search import top_k

    scores = np.array([1, 3, 3, 2, 3, 0, 2], np.float32)
    assert top_k(scores, 2).tolist() == [1, 2]
    assert top_k(scores, 4).tolist() == [1, 2, 4, 3]
    assert top_k(scores, 5).tolist() == [1, 2, 4, 3, 6]
    assert top_k(scores, 9).tolist() == [1, 2, 4, 3, 6, 0, 5]
    rng = np.random.default_rng(0)
    ties = rng.integers(0, 4, 500).astype(np.float32)
    for k in (1, 7, 100, 499):
        want = sorted(range(500), key=lambda i: (-ties[i], i))[:k]
        assert top_k(ties, k).tolist() == want
