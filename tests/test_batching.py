"""--batch-order clusters: topic-homogeneous blocks of one batch, no repeated anchor or positive in a block."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fakes import FakeEncoder
from minenegs.write.batching import cluster_order, in_order
from minenegs.cli import app
from minenegs.inputs.dataset import load_beir
from minenegs.encode.embeddings import encode_dataset
from minenegs.encode.folder import Embeddings
from minenegs.errors import InputError
from minenegs.select.params import MineParams
from minenegs.retrieve.pool import PoolParams, build_pool
from minenegs.api import negatives_from_pool

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples"


def blocks_of(order: list[int], size: int) -> list[list[int]]:
    return [order[i:i + size] for i in range(0, len(order), size)]


def assert_no_repeated_text(blocks: list[list[int]], keys: list[tuple[str, str]]) -> None:
    for block in blocks:
        texts = [t for r in block for t in keys[r]]
        assert len(texts) == len(set(texts)), f"a text twice in block {block}"


def test_each_cluster_fills_its_own_blocks_and_only_remainders_mix():
    sizes = {"a": 70, "b": 40, "c": 10}
    clusters = [c for c, n in sizes.items() for _ in range(n)]
    keys = [(f"q{i}", f"p{i}") for i in range(len(clusters))]
    order = cluster_order(clusters, keys, 8, seed=1)
    assert sorted(order) == list(range(len(clusters)))
    blocks = blocks_of(order, 8)
    assert all(len(b) == 8 for b in blocks)  # 120 rows: no short block
    pure = Counter(clusters[b[0]] for b in blocks if len({clusters[r] for r in b}) == 1)
    assert pure == {"a": 8, "b": 5, "c": 1}  # floor(n / 8) blocks each; 6 + 0 + 2 rows left mix in one block
    assert sum(len({clusters[r] for r in b}) > 1 for b in blocks) == 1
    assert_no_repeated_text(blocks, keys)


def test_no_anchor_or_positive_twice_in_a_block():
    # triplet-like rows: each query 3 times (one per negative), and two queries sharing a positive
    clusters, keys = [], []
    for q in range(20):
        for _ in range(3):
            clusters.append(q % 2)
            keys.append((f"query {q}", f"doc {q // 2 if q < 4 else q}"))
    order = cluster_order(clusters, keys, 4, seed=0)
    assert sorted(order) == list(range(len(keys)))
    blocks = blocks_of(order, 4)
    assert_no_repeated_text(blocks, keys)
    assert all(len(b) == 4 for b in blocks[:-1])


def test_blocks_are_shuffled_by_the_seed_and_the_short_block_comes_last():
    clusters = [i % 5 for i in range(203)]
    keys = [(f"q{i}", f"p{i}") for i in range(203)]
    one, again, other = (cluster_order(clusters, keys, 10, seed=s) for s in (7, 7, 8))
    assert one == again and one != other
    assert sorted(map(sorted, blocks_of(one, 10))) == sorted(map(sorted, blocks_of(other, 10)))  # same blocks
    assert len(blocks_of(one, 10)[-1]) == 3


def test_rows_that_cannot_be_placed_without_repeats_are_an_error():
    keys = [("same query", f"p{i}") for i in range(10)]
    with pytest.raises(InputError, match="lower --batch-size"):
        cluster_order([0] * 10, keys, 4)


@pytest.fixture(scope="module")
def pools(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("batching")
    encode_dataset(load_beir(SAMPLES), root / "emb", FakeEncoder(), cache_dir=root / "cache")
    emb = Embeddings(root / "emb")
    return {"clusters": build_pool(emb, PoolParams(depth=10, query_clusters=3)),
            "plain": build_pool(emb, PoolParams(depth=10))}


@pytest.mark.parametrize("fmt", ["n-tuple", "triplet"])
def test_output_in_cluster_blocks_holds_the_same_rows(tmp_path, pools, fmt):
    plain, ordered = tmp_path / "plain.parquet", tmp_path / "ordered.parquet"
    negatives_from_pool(pools["clusters"], plain, MineParams("top", 2), fmt=fmt)
    negatives_from_pool(pools["clusters"], ordered, MineParams("top", 2), fmt=fmt, batch_order="clusters",
                        batch_size=4)
    before, after = pq.read_table(plain).to_pylist(), pq.read_table(ordered).to_pylist()
    key = lambda r: tuple(sorted((k, str(v)) for k, v in r.items()))  # noqa: E731
    assert sorted(map(key, before)) == sorted(map(key, after)) and before != after
    blocks = [after[i:i + 4] for i in range(0, len(after), 4)]
    pure = sum(len({r["cluster_id"] for r in b}) == 1 for b in blocks)
    counts = Counter(r["cluster_id"] for r in after)
    if fmt == "n-tuple":  # a repeated text may push one cluster's rows into a mixed block
        assert pure >= sum(n // 4 for n in counts.values()) - 1
    else:  # a query's triplets (one per positive and negative) must each go to another block: fewer fill one cluster
        assert pure >= 1
    for b in blocks:
        texts = [r["anchor"] for r in b] + [r["positive"] for r in b]
        assert len(texts) == len(set(texts))
    meta = pq.read_metadata(ordered).metadata[b"minenegs"].decode()
    assert '"batch_order": "clusters"' in meta and '"batch_size": 4' in meta


def test_the_seed_changes_the_block_order(tmp_path, pools):
    outs = []
    for seed in (0, 1):
        out = tmp_path / f"s{seed}.parquet"
        negatives_from_pool(pools["clusters"], out, MineParams("top", 2, seed=seed), batch_order="clusters",
                            batch_size=4)
        outs.append(pq.read_table(out).column("anchor").to_pylist())
    assert outs[0] != outs[1] and sorted(outs[0]) == sorted(outs[1])


def test_cli_errors_are_one_line(tmp_path, pools):
    runner = CliRunner()
    cases = [
        (["filter", str(pools["plain"]), "-o", str(tmp_path / "a.parquet"), "--batch-order", "clusters"],
         "mine with --query-clusters"),
        (["filter", str(pools["clusters"]), "-o", str(tmp_path / "b.parquet"), "--batch-order", "clusters",
          "--format", "labeled-list"], "not --format labeled-list"),
        (["filter", str(pools["clusters"]), "-o", str(tmp_path / "c.parquet"), "--batch-order", "topics"],
         "choose one of pool, clusters"),
        (["mine", str(pools["plain"].parents[1]), "-o", str(tmp_path / "d.parquet"), "--batch-order", "clusters"],
         "mine with --query-clusters"),
        (["filter", str(tmp_path), "-o", str(tmp_path / "e.parquet")], "not a minenegs pool folder"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
        assert not list(tmp_path.glob("*.parquet"))


def test_cli_mine_writes_cluster_blocks(tmp_path, pools):
    out = tmp_path / "m.parquet"
    result = CliRunner().invoke(app, ["mine", str(pools["plain"].parents[1]), "-o", str(out), "--query-clusters", "3",
                                      "--batch-order", "clusters", "--batch-size", "4", "-q"])
    assert result.exit_code == 0, result.output
    got = pq.read_table(out).to_pylist()
    assert {r["cluster_id"] for r in got} == {0, 1, 2}
    assert sum(len({r["cluster_id"] for r in got[i:i + 4]}) == 1 for i in range(0, len(got), 4)) >= len(got) // 4 - 3


def test_the_trainer_reads_rows_in_file_order_with_in_order(tmp_path, pools):
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer, models, pre_tokenizers

    out = tmp_path / "o.parquet"
    negatives_from_pool(pools["clusters"], out, MineParams("top", 2), batch_order="clusters", batch_size=4)
    train = Dataset.from_parquet(str(out)).select_columns(["anchor", "positive", "negative_1", "negative_2"])
    words = sorted({w for row in train for text in row.values() for w in text.lower().split()})
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["[UNK]", *words])}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    static = StaticEmbedding(tok, embedding_dim=8)
    model = SentenceTransformer(modules=[static], device="cpu")
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "t"), max_steps=2, per_device_train_batch_size=4,
                                                batch_sampler=in_order, report_to=[], save_strategy="no",
                                                use_cpu=True, disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train,
                                         loss=MultipleNegativesRankingLoss(model))
    batches = [list(b) for b in trainer.get_train_dataloader().batch_sampler]
    assert batches == [list(range(i, min(i + 4, len(train)))) for i in range(0, len(train), 4)]
    assert trainer.train().global_step == 2
