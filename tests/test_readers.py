"""Readers and loaders: every supported input shape, read the same way."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minenegs.inputs.dataset import load_beir, load_dataset, load_files
from minenegs.inputs.pairs import load_pairs
from minenegs.inputs.tables import Columns, content_id
from minenegs.errors import InputError
from minenegs.records import join_title


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_delimited(path: Path, rows: list[dict], delimiter: str) -> Path:
    """CSV with standard quoting; TSV plain (no quoting, as BEIR and MS MARCO write it)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        if delimiter == ",":
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        else:
            header = list(rows[0])
            fh.write("\t".join(header) + "\n")
            fh.writelines("\t".join(str(row[k]) for k in header) + "\n" for row in rows)
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


WRITERS = {
    "jsonl": write_jsonl,
    "csv": lambda p, r: write_delimited(p, r, ","),
    "tsv": lambda p, r: write_delimited(p, r, "\t"),
    "parquet": write_parquet,
}


def test_beir_sample_train_split(samples):
    ds = load_beir(samples, "train")
    assert len(ds.corpus) == 104
    assert len(ds.queries) == 16
    assert len(ds.qrels) == 22
    assert ds.positives()["q-blackhole"] == ["blackhole-p1", "blackhole-p2", "blackhole-p3"]
    # title and text joined the BEIR way
    i = ds.corpus.ids.index("tcp-p1")
    assert ds.corpus.texts[i].startswith("TCP handshake A TCP connection opens with a three-way handshake")
    assert set(ds.sources) == {"corpus", "queries", "qrels"}
    assert all(len(s["sha256"]) == 64 for s in ds.sources.values())


def test_beir_split_selects_queries(samples):
    ds = load_beir(samples, "test")
    assert sorted(ds.queries.ids) == ["q-aurora", "q-bees", "q-hamlet", "q-penguin"]
    assert len(ds.qrels) == 4


def test_missing_split_names_the_available_ones(samples):
    with pytest.raises(InputError, match=r"no qrels for split 'dev'.*test, train"):
        load_beir(samples, "dev")


def test_join_title_matches_beir():
    assert join_title("Title", "Body text. ") == "Title Body text."
    assert join_title("", "  Body ") == "Body"


# Plain TSV has no escapes, so no control characters (tab, newline) and no backslash in the texts.
_chars = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\")
docs_strategy = st.lists(
    st.fixed_dictionaries({
        "title": st.text(_chars, max_size=8),
        "text": st.text(_chars, min_size=1, max_size=20).filter(str.strip),
    }),
    min_size=1, max_size=8,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(docs=docs_strategy)
def test_every_format_reads_the_same(tmp_path_factory, docs):
    """Property: the same rows written as JSONL, CSV, TSV and Parquet load as the same dataset."""
    folder = tmp_path_factory.mktemp("fmt")
    corpus_rows = [{"_id": f"d{i}", **d} for i, d in enumerate(docs)]
    query_rows = [{"_id": "q0", "text": "a query"}]
    qrel_rows = [{"query-id": "q0", "corpus-id": "d0", "score": 1}]
    loaded = []
    for fmt, write in WRITERS.items():
        ds = load_files(write(folder / f"c.{fmt}", corpus_rows), write(folder / f"q.{fmt}", query_rows),
                        write(folder / f"r.{fmt}", qrel_rows))
        loaded.append((ds.corpus, ds.queries, ds.qrels))
    assert all(item == loaded[0] for item in loaded)
    assert loaded[0][0].texts == [join_title(d["title"], d["text"]) for d in docs]


def test_gzipped_jsonl(tmp_path, samples):
    gz = tmp_path / "corpus.jsonl.gz"
    gz.write_bytes(gzip.compress((samples / "corpus.jsonl").read_bytes()))
    ds = load_files(gz)
    assert len(ds.corpus) == 104 and len(ds.queries) == 0


@pytest.mark.parametrize("qrels_text", [
    "q-tcp 0 tcp-p1 1\nq-gil 0 gil-p1 2\n",  # TREC
    "q-tcp\ttcp-p1\t1\nq-gil\tgil-p1\t2\n",  # headerless 3 columns
    "qid\tdocid\trelevance\nq-tcp\ttcp-p1\t1\nq-gil\tgil-p1\t2\n",  # other header spellings
])
def test_qrels_layouts(tmp_path, samples, qrels_text):
    path = tmp_path / "qrels.txt"
    path.write_text(qrels_text)
    ds = load_files(samples / "corpus.jsonl", samples / "queries.jsonl", path)
    assert sorted((q.query_id, q.doc_id, q.score) for q in ds.qrels) == [("q-gil", "gil-p1", 2), ("q-tcp", "tcp-p1", 1)]
    assert sorted(ds.queries.ids) == ["q-gil", "q-tcp"]


def test_zero_scored_qrels_are_not_positives(tmp_path, samples):
    path = tmp_path / "qrels.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq-tcp\ttcp-p1\t1\nq-tcp\ttcp-n1\t0\nq-gil\tgil-n1\t0\n")
    ds = load_files(samples / "corpus.jsonl", samples / "queries.jsonl", path)
    assert ds.positives() == {"q-tcp": ["tcp-p1"]}
    assert ds.queries.ids == ["q-tcp"]  # q-gil has no positive: nothing to mine for


def test_auto_detected_and_explicit_columns(tmp_path):
    auto = write_jsonl(tmp_path / "a.jsonl", [{"doc_id": "x", "contents": "hello"}])
    assert load_files(auto).corpus.ids == ["x"]
    odd = write_jsonl(tmp_path / "b.jsonl", [{"docno": "x", "body_text": "hello"}])
    with pytest.raises(InputError, match=r"b.jsonl: has no id column .*--id-column"):
        load_files(odd)
    ds = load_files(odd, columns=Columns(id="docno", text="body_text"))
    assert (ds.corpus.ids, ds.corpus.texts) == (["x"], ["hello"])
    with pytest.raises(InputError, match=r"has no column 'nope'.*fix --text-column"):
        load_files(odd, columns=Columns(id="docno", text="nope"))


def test_exact_duplicate_rows_merge(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": "same"}, {"_id": "a", "text": "same"},
                                              {"_id": "b", "text": "other"}])
    assert load_files(path).corpus.ids == ["a", "b"]


def test_pairs_merge_identical_texts(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"anchor": "what is a cat", "positive": "a cat is a small feline"},
        {"anchor": "what is a cat", "positive": "cats are mammals"},
        {"anchor": "what is a dog", "positive": "cats are mammals"},
    ])
    ds = load_dataset(path)
    assert len(ds.queries) == 2 and len(ds.corpus) == 2
    cat = content_id("q", "what is a cat")
    assert ds.positives()[cat] == [content_id("d", "a cat is a small feline"), content_id("d", "cats are mammals")]
    assert ds.positives()[content_id("q", "what is a dog")] == [content_id("d", "cats are mammals")]
    assert content_id("q", "what is a cat") == load_dataset(path).queries.ids[0]  # stable across runs


def test_flagembedding_pairs_with_lists(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [
        {"query": "q one", "pos": ["p one", "p two"], "neg": ["n one"]},
        {"query": "q two", "pos": ["p two"], "neg": []},
    ])
    ds = load_pairs(path)
    assert len(ds.corpus) == 3  # p one, p two, n one
    assert sorted(len(v) for v in ds.positives().values()) == [1, 2]
    assert content_id("d", "n one") not in {d for v in ds.positives().values() for d in v}


def test_pairs_csv_with_columns_flags(tmp_path):
    path = write_delimited(tmp_path / "pairs.csv", [{"question": "q, with comma", "answer": "an answer"}], ",")
    with pytest.raises(InputError, match="has no positive column"):
        load_pairs(path)
    ds = load_pairs(path, Columns(positive="answer"))
    assert ds.queries.texts == ["q, with comma"] and ds.corpus.texts == ["an answer"]


def test_pairs_with_extra_corpus_reuse_corpus_ids(tmp_path, samples):
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"query": "three-way handshake?", "positive": load_beir(samples).corpus.texts[0]},
    ])
    ds = load_dataset(path, corpus=samples / "corpus.jsonl")
    assert len(ds.corpus) == 104
    assert list(ds.positives().values()) == [[load_beir(samples).corpus.ids[0]]]


@pytest.fixture
def hf_pairs(tmp_path):
    """The same three pairs as a JSONL file and as Hugging Face dataset folders and files."""
    from datasets import Dataset as HFDataset, DatasetDict

    rows = [{"anchor": "what is a cell", "positive": "A cell is the unit of life."},
            {"anchor": "what is a cell", "positive": "Cells divide by mitosis."},
            {"anchor": "why is the sky blue", "positive": "Rayleigh scattering favours blue light."}]
    ds = HFDataset.from_list(rows)
    ds.save_to_disk(str(tmp_path / "saved"))
    DatasetDict({"train": ds, "test": ds.select([2])}).save_to_disk(str(tmp_path / "dict"))
    (tmp_path / "parquet" / "data").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "parquet" / "data" / "train-00000.parquet"))
    return write_jsonl(tmp_path / "pairs.jsonl", rows), tmp_path


@pytest.mark.parametrize("source", ["saved", "dict", "parquet", "saved/data-00000-of-00001.arrow"])
def test_hugging_face_datasets_are_read_wherever_a_pair_file_is(hf_pairs, source):
    jsonl, root = hf_pairs
    expected = load_dataset(jsonl)
    got = load_dataset(root / source)
    assert (got.queries, got.corpus, got.qrels) == (expected.queries, expected.corpus, expected.qrels)
    assert len(got.queries) == 2 and len(got.qrels) == 3


def test_a_dataset_dict_split_is_chosen_and_a_missing_one_named(hf_pairs):
    _, root = hf_pairs
    assert len(load_dataset(root / "dict", split="test").qrels) == 1
    with pytest.raises(InputError, match="has no split 'dev'; choose --split from test, train"):
        load_dataset(root / "dict", split="dev")
    with pytest.raises(InputError, match="without .arrow or .parquet files"):
        load_pairs(root)  # a folder of other things is not a dataset
