"""A second mining round (ANCE): a new model encodes only under its own fingerprint, and its pool is combined
with the previous round's: the union of candidates, every one scored and ranked by the newest model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fakes import FakeEncoder
from minenegs.cli import app
from minenegs.inputs.dataset import load_beir
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings
from minenegs.errors import InputError
from minenegs.retrieve.pool import PoolParams, build_pool

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples"


@pytest.fixture(scope="module")
def rounds(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("rounds")
    ds = load_beir(SAMPLES)
    first = encode_dataset(ds, root / "emb1", FakeEncoder(dim=32), cache_dir=root / "cache")
    second = encode_dataset(ds, root / "emb2", FakeEncoder(dim=48, version="2"), cache_dir=root / "cache")
    pool1 = build_pool(Embeddings(root / "emb1"), PoolParams(depth=6))
    emb2 = Embeddings(root / "emb2")
    return {"root": root, "ds": ds, "first": first, "second": second, "pool1": pool1, "emb2": emb2,
            "plain2": build_pool(emb2, PoolParams(depth=6)),
            "combined": build_pool(emb2, PoolParams(depth=6, previous=(str(pool1),)))}


def candidates(pool: Path) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for r in pq.read_table(pool / "candidates.parquet").to_pylist():
        out.setdefault(r["query_id"], {})[r["doc_id"]] = r
    return out


def test_a_new_model_encodes_everything_once_and_the_old_one_nothing(rounds):
    n = len(rounds["ds"].corpus.ids) + len(rounds["ds"].queries.ids)
    assert rounds["first"].texts_encoded == rounds["second"].texts_encoded == n
    root, ds = rounds["root"], rounds["ds"]
    again = encode_dataset(ds, root / "emb2-again", FakeEncoder(dim=48, version="2"), cache_dir=root / "cache")
    back = encode_dataset(ds, root / "emb1-again", FakeEncoder(dim=32), cache_dir=root / "cache")
    assert again.texts_encoded == back.texts_encoded == 0


def test_the_combined_pool_is_the_union_scored_and_ranked_by_the_new_model(rounds):
    old, new, both = candidates(rounds["pool1"]), candidates(rounds["plain2"]), candidates(rounds["combined"])
    emb2 = rounds["emb2"]
    qvec, dvec = emb2.reader("queries"), emb2.reader("corpus")
    q_row = {q: i for i, q in enumerate(emb2.ids("queries"))}
    d_row = {d: i for i, d in enumerate(emb2.ids("corpus"))}
    grew = 0
    for qid, rows in both.items():
        retrieved = lambda pool: {d for d, r in pool.get(qid, {}).items() if r["rank"] is not None}  # noqa: E731
        assert retrieved(both) == retrieved(old) | retrieved(new)
        grew += len(retrieved(both)) > len(retrieved(new))
        ranked = sorted((r for r in rows.values() if r["rank"] is not None), key=lambda r: r["rank"])
        assert [r["rank"] for r in ranked] == list(range(1, len(ranked) + 1))
        assert all(a["score"] >= b["score"] for a, b in zip(ranked, ranked[1:]))
        for d, r in rows.items():
            exact = float(qvec[q_row[qid]] @ dvec[d_row[d]])
            assert r["score"] == pytest.approx(exact, abs=1e-5)
            assert (r["source"] == "previous") == (d in retrieved(old) and d not in retrieved(new))
            assert r["is_positive"] == new[qid][d]["is_positive"] if d in new[qid] else not r["is_positive"]
    assert grew >= len(both) // 2  # the two models disagree: most queries gain candidates
    manifest = json.loads((rounds["combined"] / "manifest.json").read_text())
    assert manifest["previous_pools"] == [str(rounds["pool1"].resolve())] and manifest["previous_only_rows"] > 0


def test_the_combined_pool_has_its_own_key_and_is_reused(rounds):
    emb2, pool1 = rounds["emb2"], rounds["pool1"]
    assert rounds["combined"] != rounds["plain2"]
    before = (rounds["combined"] / "candidates.parquet").stat().st_mtime_ns
    assert build_pool(emb2, PoolParams(depth=6, previous=(str(pool1),))) == rounds["combined"]
    assert (rounds["combined"] / "candidates.parquet").stat().st_mtime_ns == before


def test_bad_previous_pools_are_errors(rounds, tmp_path):
    with pytest.raises(InputError, match="not a candidate pool folder"):
        PoolParams(previous=(str(tmp_path),))
    with pytest.raises(InputError, match="use --retriever dense or hybrid"):
        PoolParams(retriever="bm25", previous=(str(rounds["pool1"]),))


def _save_static_model(folder: Path, seed: int) -> Path:
    """A tiny sentence-transformers model (static word embeddings over the sample data's words), saved."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer, models, pre_tokenizers

    ds = load_beir(SAMPLES)
    words = sorted({w for t in ds.corpus.texts + ds.queries.texts for w in t.lower().split()})
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["[UNK]", *words])}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    static = StaticEmbedding(tok, embedding_weights=np.random.default_rng(seed).standard_normal((len(words) + 1, 16)))
    SentenceTransformer(modules=[static], device="cpu").save(str(folder))
    return folder


def test_cli_rounds_with_model_folders(tmp_path):
    """Teacher or checkpoint given by --model FOLDER: round 1 mines, round 2 encodes with another folder (all
    texts, under its fingerprint) and mines with --previous-pool; the first folder again encodes nothing."""
    runner = CliRunner()
    env = {"MINENEGS_CACHE": str(tmp_path / "cache")}
    teacher, checkpoint = _save_static_model(tmp_path / "m1", 1), _save_static_model(tmp_path / "m2", 2)

    def encode(model: Path, out: str) -> dict:
        result = runner.invoke(app, ["encode", str(SAMPLES), "--model", str(model), "-o", str(tmp_path / out),
                                     "--json", "-q"], env=env)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    n = len(load_beir(SAMPLES).corpus.ids) + len(load_beir(SAMPLES).queries.ids)
    assert encode(teacher, "e1")["texts_encoded"] == n
    result = runner.invoke(app, ["mine", str(tmp_path / "e1"), "-o", str(tmp_path / "r1.parquet"), "--depth", "8",
                                 "--pool", str(tmp_path / "pool1"), "-q"], env=env)
    assert result.exit_code == 0, result.output
    assert encode(checkpoint, "e2")["texts_encoded"] == n
    assert encode(teacher, "e1b")["texts_encoded"] == 0
    result = runner.invoke(app, ["mine", str(tmp_path / "e2"), "-o", str(tmp_path / "r2.parquet"), "--depth", "8",
                                 "--previous-pool", str(tmp_path / "pool1"), "--pool", str(tmp_path / "pool2"),
                                 "--json"], env=env)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "pool2" / "manifest.json").read_text())
    assert manifest["model"].endswith("m2") and manifest["previous_only_rows"] > 0
    assert pq.read_table(tmp_path / "r2.parquet").num_rows > 0
    bad = runner.invoke(app, ["mine", str(tmp_path / "e2"), "-o", str(tmp_path / "r3.parquet"),
                              "--previous-pool", str(tmp_path / "nowhere")], env=env)
    assert bad.exit_code == 2 and "not a candidate pool folder" in bad.output
    assert len(bad.output.strip().splitlines()) == 1 and not (tmp_path / "r3.parquet").exists()
