"""Sharded search with an exact merge (minenegs.retrieve.shards): the same lists as one flat index, ties by id."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SAMPLES
from fakes import FakeEncoder
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings
from minenegs.errors import InputError
from minenegs.inputs.dataset import load_beir
from minenegs.retrieve.index import IndexParams
from minenegs.retrieve.pool import PoolParams, build_pool
from minenegs.retrieve.index import open_index, open_sharded
from minenegs.retrieve.shards import ShardedIndex, bounds, canonical, flat_index, merge


def test_bounds_cover_every_row_once():
    assert bounds(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert bounds(2, 5) == [(0, 1), (1, 2)]  # never an empty shard
    assert bounds(7, 1) == [(0, 7)]


def test_the_merge_by_hand():
    # two shards' lists for one query; ids are global; a tie at 0.5 goes to the lower id, -1 entries last
    a = (np.array([[0.9, 0.5, -np.inf]], np.float32), np.array([[4, 7, -1]]))
    b = (np.array([[0.7, 0.5]], np.float32), np.array([[12, 3]]))
    scores, ids = merge([a, b], 4)
    assert ids.tolist() == [[4, 12, 3, 7]] and scores[0].tolist() == pytest.approx([0.9, 0.7, 0.5, 0.5])
    scores, ids = merge([a], 4)  # fewer than k found: -1 and -inf past the end
    assert ids.tolist() == [[4, 7, -1]] and scores[0, 2] == -np.inf
    s, i = canonical(np.array([[0.5, 0.5, 0.9]], np.float32), np.array([[9, 2, 5]]), 2)
    assert i.tolist() == [[5, 2]]


def test_sharded_flat_equals_one_flat_index_with_duplicate_documents():
    import faiss

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[[5, 1500, 2999]] = x[700]  # exact ties, across shards
    q = rng.standard_normal((200, 32)).astype(np.float32)
    q[0] = x[700]
    one = faiss.IndexFlatIP(32)
    one.add(x)
    expected = canonical(*one.search(q, 60), 50)
    for shards in (1, 2, 3, 7):
        parts = [(lo, flat_index(x, lo, hi, block=256)) for lo, hi in bounds(len(x), shards)]
        scores, ids = ShardedIndex(parts, IndexParams("flat"), x, 0.0).search(q, 50)
        assert (ids == expected[1]).all() and (scores == expected[0]).all(), shards
    assert ids[0, :4].tolist() == [5, 700, 1500, 2999]  # the tie, by id


def test_a_sharded_pool_is_byte_identical_to_the_unsharded_one(tmp_path):
    encode_dataset(load_beir(SAMPLES), tmp_path / "emb", FakeEncoder(), cache_dir=tmp_path / "cache")
    emb = Embeddings(tmp_path / "emb")
    one = build_pool(emb, PoolParams(depth=20, index=IndexParams("flat")), out=tmp_path / "one")
    three = build_pool(emb, PoolParams(depth=20, index=IndexParams("flat"), shards=3), out=tmp_path / "three")
    assert (one / "candidates.parquet").read_bytes() == (three / "candidates.parquet").read_bytes()
    with pytest.raises(InputError, match="--shards 2: sharded search is the dense one .* flat or an IVF index"):
        PoolParams(index=IndexParams("hnsw"), shards=2)
    with pytest.raises(InputError, match="--retriever dense or hybrid"):
        PoolParams(retriever="bm25", shards=2)
    # hybrid: the dense lists sharded, BM25 one index over every text (global statistics): the same pool
    hybrid = [build_pool(emb, PoolParams(retriever="hybrid", depth=20, index=IndexParams("flat"), shards=s),
                         out=tmp_path / f"hybrid{s}") for s in (1, 3)]
    assert (hybrid[0] / "candidates.parquet").read_bytes() == (hybrid[1] / "candidates.parquet").read_bytes()


@pytest.fixture(scope="module")
def random_emb(tmp_path_factory) -> Embeddings:
    """6,000 documents and 300 queries of seeded random 32-dimensional vectors."""
    from fakes import RandomEncoder
    from minenegs.records import Dataset, Qrel, TextTable

    root = tmp_path_factory.mktemp("ivf")
    ds = Dataset(TextTable([f"d{i}" for i in range(6000)], [f"doc {i}" for i in range(6000)]),
                 TextTable([f"q{i}" for i in range(300)], [f"query {i}" for i in range(300)]),
                 [Qrel(f"q{i}", f"d{i * 7}") for i in range(300)])
    encode_dataset(ds, root / "emb", RandomEncoder(dim=32), cache_dir=root / "cache")
    return Embeddings(root / "emb")


def test_sharded_ivf_with_shared_cells_searches_as_one_ivf_index(random_emb, tmp_path):
    """Every shard's IVF index has the same trained cells, so a query searches the same cells of every shard:
    the merged lists are the unsharded index's, nprobe given or tuned."""
    q = random_emb.reader("queries")[:]
    for nprobe in (2, 6):
        params = IndexParams("ivf", nlist=40, nprobe=nprobe)
        one = open_index(random_emb, params, 50).search(q, 50)
        for shards in (2, 5):
            got = open_sharded(random_emb, shards, params, 50).search(q, 50)
            assert (got[1] == one[1]).all() and (got[0] == one[0]).all(), (nprobe, shards)
    params = IndexParams("ivf", nlist=40)
    one = build_pool(random_emb, PoolParams(depth=50, index=params), out=tmp_path / "one")
    three = build_pool(random_emb, PoolParams(depth=50, index=params, shards=3), out=tmp_path / "three")
    assert (one / "candidates.parquet").read_bytes() == (three / "candidates.parquet").read_bytes()
    assert open_sharded(random_emb, 3, params, 50).params.nprobe == open_index(random_emb, params, 50).params.nprobe


def test_a_shard_that_does_not_fit_the_workers_memory_is_refused_before_any_work(random_emb, tmp_path):
    from minenegs.distributed.runner import RaySettings
    from minenegs.retrieve.shards import shard_bytes

    n, dim = random_emb.reader("corpus").shape
    # room for a third of the corpus's vectors beside what a worker holds anyway: half does not fit, a third does
    cap = (shard_bytes(0, dim, 300) + n * (dim * 4 + 8) / 3) / 2 ** 30
    with pytest.raises(InputError, match=r"shard 0 \(corpus rows 0-3000\) needs about .* GB, more than "
                                         r"--ray-memory .*: give at least --shards 3"):
        build_pool(random_emb, PoolParams(depth=20, index=IndexParams("flat"), shards=2), out=tmp_path / "p",
                   ray=RaySettings("local", memory=cap))
    assert not (tmp_path / "p").exists()  # nothing written, no cluster started
    with pytest.raises(InputError, match="raise --ray-memory"):
        build_pool(random_emb, PoolParams(depth=20, index=IndexParams("flat"), shards=2), out=tmp_path / "p",
                   ray=RaySettings("local", memory=0.1))
    assert RaySettings("local", memory=2).remote_args()["memory"] == 2 * 2 ** 30
    with pytest.raises(InputError, match="--ray-memory -1"):
        RaySettings("local", memory=-1)


def test_sharded_rows_read_and_write_as_one_matrix():
    from minenegs.encode.folder import ShardedRows

    whole = np.arange(40, dtype=np.float32).reshape(20, 2)
    parts = [whole[0:7].copy(), whole[7:8].copy(), whole[8:20].copy()]
    m = ShardedRows(parts)
    assert len(m) == 20 and m.shape == (20, 2)
    for rows in (slice(None), slice(3, 15), slice(7, 8), slice(15, 3), slice(0, 20, 3), [19, 0, 7, 7, -1],
                 np.array([], dtype=np.int64), whole[:, 0] % 4 == 0):
        assert np.array_equal(m[rows], whole[rows]), rows
    assert np.array_equal(m[7], whole[7]) and np.array_equal(np.asarray(m, dtype=np.float64), whole)
    m[[1, 7, 19]] = np.full((3, 2), -1.0, dtype=np.float32)
    assert parts[0][1].tolist() == parts[1][0].tolist() == parts[2][11].tolist() == [-1.0, -1.0]
    with pytest.raises(IndexError):
        m[[20]]


def test_a_corpus_stored_as_shards_reads_and_mines_as_one(tmp_path):
    """encode --shards 3: the same vectors, ids and texts as one corpus file, and the same pool, whether the
    search is sharded or not."""
    ds = load_beir(SAMPLES)
    encode_dataset(ds, tmp_path / "one", FakeEncoder(), cache_dir=tmp_path / "cache")
    encode_dataset(ds, tmp_path / "three", FakeEncoder(), cache_dir=tmp_path / "cache", shards=3)
    one, three = Embeddings(tmp_path / "one"), Embeddings(tmp_path / "three")
    assert not (tmp_path / "three" / "corpus.npy").exists()
    assert [s["rows"] for s in three.shards] == [hi - lo for lo, hi in bounds(len(ds.corpus), 3)]
    assert np.array_equal(one.reader("corpus")[:], three.reader("corpus")[:])
    assert np.array_equal(one.vectors("corpus")[[5, 90, 0]], three.vectors("corpus")[[5, 90, 0]])
    assert one.table("corpus") == three.table("corpus") and one.ids("queries") == three.ids("queries")
    flat = IndexParams("flat")
    want = (build_pool(one, PoolParams(depth=20, index=flat), out=tmp_path / "p1") / "candidates.parquet").read_bytes()
    for shards in (1, 3, 2):
        pool = build_pool(three, PoolParams(depth=20, index=flat, shards=shards), out=tmp_path / f"p3-{shards}")
        assert (pool / "candidates.parquet").read_bytes() == want, shards


def test_a_shard_missing_or_from_another_encode_is_refused_before_any_work(tmp_path):
    import shutil

    from typer.testing import CliRunner

    from fakes import RandomEncoder
    from minenegs.cli import app

    ds = load_beir(SAMPLES)
    encode_dataset(ds, tmp_path / "a", FakeEncoder(), cache_dir=tmp_path / "cache", shards=3)
    encode_dataset(ds, tmp_path / "b", RandomEncoder(dim=16), cache_dir=tmp_path / "cache", shards=3)
    name = Embeddings(tmp_path / "a").shards[1]["folder"]
    shutil.rmtree(tmp_path / "a" / name)
    shutil.copytree(tmp_path / "b" / name, tmp_path / "a" / name)  # the same rows, another encode
    with pytest.raises(InputError, match=f"corpus shard {name} is from another encode"):
        Embeddings(tmp_path / "a")
    shutil.rmtree(tmp_path / "a" / name)
    result = CliRunner().invoke(app, ["mine", str(tmp_path / "a"), "-o", str(tmp_path / "out.parquet")])
    assert result.exit_code == 2 and f"corpus shard {name} is missing" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out.parquet").exists()


def test_sharded_ivf_pq_rescores_a_superset_of_one_index_and_loses_no_recall(random_emb, tmp_path):
    """IVF-PQ shards share the cells and the PQ codebooks; each rescores its own refine x k best by code, so the
    lists are one IVF-PQ index's with one shard, and as good or better with more (recall@50 against exact)."""
    from minenegs.retrieve.index import exact_top

    q = random_emb.reader("queries")[:]
    params = IndexParams("ivf", nlist=40, nprobe=4, pq_m=8, refine=2)
    one = open_index(random_emb, params, 50).search(q, 50)
    same = open_sharded(random_emb, 1, params, 50).search(q, 50)
    assert (same[1] == one[1]).all() and np.allclose(same[0], one[0])
    truth = exact_top(q, random_emb.reader("corpus"), 50)

    def recall(ids):
        return np.mean([len(set(a) & set(b)) / 50 for a, b in zip(ids, truth)])

    base = recall(one[1])
    assert base < 0.99  # PQ loses some here: there is something to lose
    for shards in (2, 4):
        got = open_sharded(random_emb, shards, params, 50).search(q, 50)
        assert recall(got[1]) >= base - 0.005, shards
    pool = build_pool(random_emb, PoolParams(depth=50, index=params, shards=3), out=tmp_path / "pq3")
    assert (pool / "candidates.parquet").exists()


def _beir(folder, docs: list[tuple[str, str]], queries: list[tuple[str, str]], qrels: list[tuple[str, str]]):
    import json

    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries))
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels))
    return folder


def test_a_sharded_encode_reads_the_corpus_file_in_blocks_and_holds_one_shard_at_a_time(tmp_path, monkeypatch):
    """encode --shards: the corpus file goes a block at a time to a staged file beside the output, each shard
    reads its rows back; the folder holds what an in-memory encode writes, a text in two shards is encoded once,
    and nothing staged is left."""
    from minenegs import api
    from minenegs.encode import models
    from minenegs.inputs import staged

    monkeypatch.setattr(staged, "ROWS", 4)  # 24 rows, d5's twice: six row groups
    docs = [(f"d{i}", f"document {i} about topic {i % 5}") for i in range(22)] + [("d5", "document 5 about topic 0"),
                                                                                   ("d22", "document 3 about topic 3")]
    data = _beir(tmp_path / "data", docs, [("q1", "topic 3"), ("q2", "document 3 about topic 3")],
                 [("q1", "d3"), ("q2", "d22")])
    fake, held = FakeEncoder(), []
    monkeypatch.setattr(models, "SentenceTransformerEncoder", lambda *a, **k: fake)
    rows = staged.StagedCorpus.rows
    monkeypatch.setattr(staged.StagedCorpus, "rows", lambda self, lo, hi: held.append(hi - lo) or rows(self, lo, hi))
    api.encode(data, tmp_path / "out" / "three", cache_dir=tmp_path / "cache", shards=3)
    assert held == [8, 7, 8]  # the texts are read a shard at a time: never the whole corpus
    assert fake.encoded == 22 + 1  # d22 repeats d3 (another shard) and q2 is d3's text: each encoded once
    assert sorted((tmp_path / "out").iterdir()) == [tmp_path / "out" / "three"]  # nothing staged is left
    encode_dataset(load_beir(data), tmp_path / "one", FakeEncoder(), cache_dir=tmp_path / "cache-one")
    one, three = Embeddings(tmp_path / "one"), Embeddings(tmp_path / "out" / "three")
    assert one.table("corpus") == three.table("corpus") and one.table("queries") == three.table("queries")
    assert np.array_equal(one.reader("corpus")[:], three.reader("corpus")[:])
    assert np.array_equal(one.reader("queries")[:], three.reader("queries")[:]) and one.qrels() == three.qrels()
    assert [s["rows"] for s in three.shards] == [8, 7, 8]


def test_a_staged_corpus_checks_its_rows_as_an_in_memory_read_does(tmp_path, monkeypatch):
    """A repeated id with the same text is kept once; with another text it is refused naming both lines, as an
    in-memory read does; qrels naming a document the corpus lacks are refused naming the qrels line."""
    from minenegs.inputs import staged
    from minenegs.inputs.dataset import load_files

    monkeypatch.setattr(staged, "ROWS", 2)
    docs = [("a", "alpha"), ("b", "beta"), ("c", "gamma"), ("b", "beta"), ("d", "delta")]
    data = _beir(tmp_path / "ok", docs, [("q", "what")], [("q", "d")])
    (tmp_path / "s1").mkdir()
    ds = load_beir(data, stage=tmp_path / "s1")
    assert isinstance(ds.corpus, staged.StagedCorpus) and len(ds.corpus) == 4
    assert ds.corpus.rows(0, 4) == load_beir(data).corpus and ds.corpus.rows(2, 4).ids == ["c", "d"]
    bad = _beir(tmp_path / "bad", docs + [("c", "not gamma")], [("q", "what")], [("q", "d")])
    (tmp_path / "s2").mkdir()
    with pytest.raises(InputError) as staged_error:
        load_beir(bad, stage=tmp_path / "s2")
    with pytest.raises(InputError) as memory_error:
        load_beir(bad)
    assert str(staged_error.value) == str(memory_error.value) and "line 6" in str(staged_error.value)
    assert "first at line 3" in str(staged_error.value)
    (tmp_path / "s3").mkdir()
    with pytest.raises(InputError, match=r"train.tsv line 2: names document 'zz', which is not in the corpus"):
        load_files(data / "corpus.jsonl", data / "queries.jsonl", _beir(tmp_path / "q", [], [], [("q", "zz")]) /
                   "qrels" / "train.tsv", stage=tmp_path / "s3")


def test_repeats_by_hand():
    """Rows repeating an earlier row's key, with that first row, bucket by bucket; 16-byte keys that differ only
    in trailing zero bytes are different keys."""
    from minenegs.inputs.staged import in_buckets, repeats

    keys = np.array([5, 3, 5, 7, 3, 5, 256 + 5], dtype=np.uint64)
    later, first, found = repeats(in_buckets(keys), np.array([3, 9, 261], np.uint64))
    assert later.tolist() == [2, 4, 5] and first.tolist() == [0, 1, 0] and found.tolist() == [1, -1, 6]
    keys = np.array([b"a" * 15 + b"\0", b"a" * 14 + b"\0\0", b"a" * 15 + b"\0", b"b" * 16], dtype="S16")
    later, first, found = repeats(in_buckets(keys), np.array([b"a" * 14 + b"\0\0"], dtype="S16"))
    assert later.tolist() == [2] and first.tolist() == [0] and found.tolist() == [1]
    assert [len(x) for x in repeats(in_buckets(np.zeros(0, np.uint64)))[:2]] == [0, 0]
