"""The pieces that let minenegs scale: the columnar pool builder (checked against a per-query reference), the
index chosen from the corpus size with its search breadth tuned for recall, float16 storage, vectors read a
block at a time, and selection a chunk of queries at a time giving the same output as all at once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fakes import FakeEncoder, RandomEncoder
from minenegs.select import candidates as candidates_module
from minenegs.inputs.dataset import load_beir
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings, VectorFile
from minenegs.retrieve.index import FLAT_MAX, IVF_FLAT_MAX, RECALL_TARGET, IndexParams, exact_top, open_index, recall_at
from minenegs.select.candidates import pool_chunks
from minenegs.select.params import MineParams
from minenegs.retrieve.pool import PoolParams, build_pool
from minenegs.records import Dataset, Qrel, TextTable
from minenegs.api import negatives_from_pool

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples"


@pytest.fixture(scope="module")
def emb(tmp_path_factory) -> Embeddings:
    root = tmp_path_factory.mktemp("scale")
    encode_dataset(load_beir(SAMPLES), root / "emb", FakeEncoder(dim=64), cache_dir=root / "cache")
    return Embeddings(root / "emb")


@pytest.fixture(scope="module")
def clustered(tmp_path_factory) -> Embeddings:
    """3,000 documents in 30 tight clusters and 200 queries near them: an IVF index has something to find."""
    root = tmp_path_factory.mktemp("clustered")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((30, 32))
    docs = centres[rng.integers(0, 30, 3000)] + 0.3 * rng.standard_normal((3000, 32))
    queries = docs[:200] + 0.2 * rng.standard_normal((200, 32))

    class Table:  # texts are row numbers; the "encoder" looks the vectors up
        def __init__(self, vectors):
            self.vectors = vectors

    class Lookup:
        name, batch_size = "lookup", 10_000

        def fingerprint(self):
            return "lookup-clustered"

        def settings(self):
            return {}

        def encode(self, texts, prompt):
            return np.stack([(queries if t[0] == "q" else docs)[int(t[1:])] for t in texts]).astype(np.float32)

    ds = Dataset(TextTable([f"d{i}" for i in range(3000)], [f"d{i}" for i in range(3000)]),
                 TextTable([f"q{i}" for i in range(200)], [f"q{i}" for i in range(200)]),
                 [Qrel(f"q{i}", f"d{i}") for i in range(200)])
    encode_dataset(ds, root / "emb", Lookup(), cache_dir=root / "cache")
    return Embeddings(root / "emb")


# -- the pool builder against a per-query reference -------------------------------------------------------
def reference_rows(emb: Embeddings, depth: int) -> list[tuple]:
    """What a dense pool holds, computed query by query: exact top ``depth`` (ties by index), then the
    positives not reached, in qrels order; every score the exact inner product."""
    corpus, queries = np.asarray(emb.vectors("corpus"), np.float32), np.asarray(emb.vectors("queries"), np.float32)
    doc_ids, query_ids = emb.ids("corpus"), emb.ids("queries")
    positives: dict[str, list[str]] = {}
    for q in emb.qrels():
        if q.is_positive and q.doc_id not in positives.setdefault(q.query_id, []):
            positives[q.query_id].append(q.doc_id)
    rows = []
    for qi, qid in enumerate(query_ids):
        scores = corpus @ queries[qi]
        top = np.lexsort((np.arange(len(scores)), -scores))[:depth].tolist()
        pos = [doc_ids.index(d) for d in positives.get(qid, [])]
        for r, d in enumerate(top, 1):
            rows.append((qi, d, qid, doc_ids[d], r, d in pos, "dense"))
        for d in pos:
            if d not in top:
                rows.append((qi, d, qid, doc_ids[d], None, True, "qrels"))
    return rows


def test_dense_pool_matches_the_per_query_reference(emb):
    t = pq.read_table(build_pool(emb, PoolParams(depth=7, index=IndexParams("flat"))) / "candidates.parquet")
    got = list(zip(*(t.column(c).to_pylist() for c in
                     ("query_idx", "doc_idx", "query_id", "doc_id", "rank", "is_positive", "source"))))
    assert got == reference_rows(emb, 7)
    corpus, queries = emb.vectors("corpus"), emb.vectors("queries")
    exact = [float(corpus[d] @ queries[q]) for q, d in zip(t.column("query_idx").to_pylist(), t.column("doc_idx").to_pylist())]
    np.testing.assert_allclose(t.column("score").to_numpy(), exact, atol=1e-5)
    mins = pq.read_table(build_pool(emb, PoolParams(depth=7, index=IndexParams("flat"))) / "queries.parquet")
    pos_scores = {}
    for q, s, p in zip(t.column("query_idx").to_pylist(), t.column("score").to_pylist(), t.column("is_positive").to_pylist()):
        if p:
            pos_scores[q] = min(pos_scores.get(q, np.inf), s)
    assert mins.column("min_positive_score").to_pylist() == [pos_scores.get(q) for q in range(len(mins))]


def reference_fusion(dense: list[int], bm25: list[int], k: int) -> list[tuple[int, str]]:
    """Reciprocal-rank fusion of two lists, written plainly: (document, source) in fused order."""
    fused: dict[int, float] = {}
    for docs in (dense, bm25):
        for r, d in enumerate(docs, 1):
            fused[d] = fused.get(d, 0.0) + 1.0 / (k + r)
    order = sorted(fused, key=lambda d: (-fused[d], d))
    return [(d, "both" if d in dense and d in bm25 else "dense" if d in dense else "bm25") for d in order]


def test_hybrid_pool_matches_plain_reciprocal_rank_fusion(emb):
    from minenegs.retrieve.search import _Bm25

    t = pq.read_table(build_pool(emb, PoolParams(depth=6, retriever="hybrid", index=IndexParams("flat")))
                      / "candidates.parquet").to_pydict()
    corpus, queries = np.asarray(emb.vectors("corpus")), np.asarray(emb.vectors("queries"))
    bm25 = _Bm25(emb.table("corpus").texts)
    bdocs, bscores = bm25.search(emb.table("queries").texts, 6)
    for qi in range(len(queries)):
        dense = np.lexsort((np.arange(len(corpus)), -(corpus @ queries[qi])))[:6].tolist()
        lexical = bdocs[qi][bscores[qi] > 0].tolist()
        rows = [i for i, q in enumerate(t["query_idx"]) if q == qi and t["rank"][i] is not None]
        assert [(t["doc_idx"][i], t["source"][i]) for i in rows] == reference_fusion(dense, lexical, 60)
        assert [t["rank"][i] for i in rows] == list(range(1, len(rows) + 1))
        for i in rows:
            lex = dict(zip(bdocs[qi].tolist(), bscores[qi].tolist()))
            assert (t["bm25"][i] is None) == (t["doc_idx"][i] not in lexical)
            if t["bm25"][i] is not None:
                assert t["bm25"][i] == pytest.approx(lex[t["doc_idx"][i]], rel=1e-6)


# -- indexes chosen from the size, and tuned ----------------------------------------------------------------
def test_auto_index_follows_the_corpus_size():
    assert IndexParams().resolved(FLAT_MAX, 384).kind == "flat"
    ivf = IndexParams().resolved(FLAT_MAX + 1, 384)
    assert (ivf.kind, ivf.pq_m, ivf.nlist) == ("ivf", 0, int(2 * np.sqrt(FLAT_MAX + 1)))
    pq_ = IndexParams().resolved(IVF_FLAT_MAX + 1, 384)
    assert (pq_.kind, pq_.pq_m) == ("ivf", 48)  # 48 bytes a vector: dim / 8
    assert IndexParams().resolved(IVF_FLAT_MAX + 1, 100).pq_m == 10  # the largest divisor of 100 up to 12
    assert IndexParams("ivf", nlist=7).resolved(10, 384).nlist == 7  # what the user gives is kept


@pytest.mark.parametrize("bad", [{"nlist": 0}, {"nprobe": 0}, {"refine": 0}, {"pq_m": -1}, {"kind": "lsh"}])
def test_index_parameters_out_of_range_are_refused(bad):
    from minenegs.errors import InputError

    with pytest.raises(InputError, match=next(iter(bad)).replace("_", "-") if "kind" not in bad else "--index"):
        IndexParams(**bad)


def test_ivf_breadth_is_tuned_for_recall_on_the_folders_queries(clustered):
    loaded = open_index(clustered, IndexParams("ivf", nlist=40), k=20)
    tuned = json.loads((loaded.path / "tuned.json").read_text())["k=20,refine=4"]
    assert loaded.params.nprobe == tuned["nprobe"] < 40 and loaded.recall == tuned["recall"] >= RECALL_TARGET
    queries = clustered.reader("queries")[:]
    measured = recall_at(loaded.search(queries, 20)[1], exact_top(queries, clustered.reader("corpus"), 20))
    assert measured >= 0.95
    again = open_index(clustered, IndexParams("ivf", nlist=40), k=20)  # tuned once, then read back
    assert again.reused and again.params.nprobe == loaded.params.nprobe


def test_ivf_pq_candidates_are_rescored_exactly(clustered):
    loaded = open_index(clustered, IndexParams("ivf", nlist=20, pq_m=8, refine=4), k=10)
    queries = clustered.reader("queries")[:50]
    scores, ids = loaded.search(queries, 10)
    corpus = clustered.reader("corpus")
    exact = np.einsum("bkd,bd->bk", corpus[ids.ravel()].reshape(50, 10, -1), queries)
    np.testing.assert_allclose(scores, exact, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-7).all()  # best first, by the exact score
    exact_ids = exact_top(queries, corpus, 10)
    coarse = open_index(clustered, IndexParams("ivf", nlist=20, nprobe=loaded.params.nprobe, pq_m=8, refine=1), k=10)
    assert coarse.reused  # refine is a search-time setting: the same index
    assert recall_at(ids, exact_ids) > recall_at(coarse.search(queries, 10)[1], exact_ids)


# -- storage and reading ---------------------------------------------------------------------------------
@pytest.mark.parametrize("map_max", [0, 1 << 30])
def test_vector_file_reads_rows_and_blocks_as_float32(tmp_path, map_max):
    data = np.random.default_rng(0).standard_normal((300, 6)).astype(np.float16)
    np.save(tmp_path / "v.npy", data)
    f = VectorFile(tmp_path / "v.npy", map_max=map_max)
    want = data.astype(np.float32)
    rows = np.array([299, 3, 3, 0, 150])
    assert f[rows].dtype == np.float32 and np.array_equal(f[rows], want[rows])
    assert np.array_equal(f[10:20], want[10:20]) and np.array_equal(f[290:400], want[290:])
    assert np.array_equal(np.concatenate([b for _, b in f.blocks(64)]), want)
    with pytest.raises(IndexError):
        f[np.array([300])]


def test_float16_embeddings_halve_the_size_and_mine_the_same_negatives(tmp_path):
    ds = load_beir(SAMPLES)
    full = encode_dataset(ds, tmp_path / "f32", FakeEncoder(dim=64), cache_dir=tmp_path / "cache")
    half = encode_dataset(ds, tmp_path / "f16", FakeEncoder(dim=64), cache_dir=tmp_path / "cache", dtype="float16")
    assert half.texts_encoded == 0 and full.texts_encoded > 0  # the cache holds float32: nothing encoded again
    a, b = Embeddings(tmp_path / "f32"), Embeddings(tmp_path / "f16")
    assert b.manifest["dtype"] == "float16" and b.vectors("corpus").dtype == np.float16
    assert (tmp_path / "f16" / "corpus.npy").stat().st_size < 0.6 * (tmp_path / "f32" / "corpus.npy").stat().st_size
    assert np.abs(b.reader("corpus")[:] - a.reader("corpus")[:]).max() < 1e-3
    picks = {}
    for name, e in (("f32", a), ("f16", b)):
        pool = build_pool(e, PoolParams(depth=10))
        negatives_from_pool(pool, tmp_path / f"{name}.parquet", MineParams("top", 3))
        picks[name] = pq.read_table(tmp_path / f"{name}.parquet").drop_columns([]).to_pylist()
    same = sum(x == y for x, y in zip(picks["f32"], picks["f16"]))
    assert len(picks["f32"]) == len(picks["f16"]) and same >= 0.9 * len(picks["f32"])


# -- selection a chunk at a time ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_pool(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chunks")
    rng = np.random.default_rng(1)
    docs = TextTable([f"d{i}" for i in range(2000)], [f"doc {i} {rng.integers(1e6)}" for i in range(2000)])
    queries = TextTable([f"q{i}" for i in range(300)], [f"query {i}" for i in range(300)])
    qrels = [Qrel(f"q{i}", f"d{(i * 7 + k) % 2000}") for i in range(300) for k in range(1 + i % 3)]
    encode_dataset(Dataset(docs, queries, qrels), root / "emb", RandomEncoder(dim=16), cache_dir=root / "cache")
    return build_pool(Embeddings(root / "emb"), PoolParams(depth=20))


def test_pool_chunks_hold_whole_queries_even_when_row_groups_split_them(big_pool, tmp_path):
    t = pq.read_table(big_pool / "candidates.parquet")
    pq.write_table(t, big_pool / "candidates.parquet", row_group_size=7)  # groups cut queries anywhere
    chunks = list(pool_chunks(big_pool, rows=50))
    q = [c["query_idx"] for c in chunks]
    assert len(chunks) > 10 and np.array_equal(np.concatenate(q), t.column("query_idx").to_numpy())
    assert all(len(set(a) & set(b)) == 0 for a, b in zip(q, q[1:]))  # no query in two chunks
    for c in chunks:
        assert c["query_id"].take(pa.array([0])).to_pylist() == [f"q{c['query_idx'][0]}"]


@pytest.mark.parametrize("params", [MineParams("top", 4, thresholds={"relative_margin": 0.05, "duplicate_text": 1.0,
                                                                      "max_positive_similarity": 0.5}),
                                    MineParams("random", 3, range_min=2, seed=5),
                                    MineParams("simans", 5, seed=9)])
def test_selection_by_chunks_writes_the_same_bytes_as_all_at_once(big_pool, tmp_path, monkeypatch, params):
    negatives_from_pool(big_pool, tmp_path / "whole.parquet", params, fmt="labeled-list", scores=True)
    monkeypatch.setattr(candidates_module, "CHUNK_ROWS", 600)
    summary = negatives_from_pool(big_pool, tmp_path / "chunked.parquet", params, fmt="labeled-list", scores=True)
    assert summary["queries"] == 300
    assert (tmp_path / "chunked.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()


@pytest.mark.parametrize("pq_m", [0, 8])
def test_ivf_lists_sized_once_hold_what_faiss_add_gives(clustered, pq_m):
    import faiss

    from minenegs.retrieve import index as index_module

    params = IndexParams("ivf", nlist=16, pq_m=pq_m).resolved(3000, 32)
    ours = index_module._build(params, clustered.reader("corpus"))
    theirs = faiss.clone_index(ours)
    theirs.reset()
    for _, block in clustered.reader("corpus").blocks(1000):
        theirs.add(block)
    assert faiss.serialize_index(ours).tobytes() == faiss.serialize_index(theirs).tobytes()
