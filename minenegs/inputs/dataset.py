"""Inputs: BEIR folders, separate corpus/queries/qrels files, and query-positive pair files.

Everything is read and checked before any work starts. Documents are encoded as
``(title + " " + text).strip()``, which is how BEIR's sentence-transformers wrapper joins them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..records import Dataset, Qrel, TextTable
from ..settings import setting
from .pairs import load_pairs
from .readers import RowReader, table_files
from .tables import QREL_DOC, QREL_QUERY, QREL_SCORE, Columns, _as_str, _fields, _source, read_corpus, read_queries

def _parse_score(path: Path, where: str, value: Any) -> int:
    if value is None or value == "":
        return 1
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number.is_integer():
        raise InputError.at(path, where, f"relevance {value!r} is not a whole number", "use 0 for not relevant, 1 or more for relevant")
    return int(number)


def _headerless_qrels(reader: RowReader) -> Iterator[tuple[str, dict[str, Any]]] | None:
    """TREC (``qid iter docid rel``) or 3-column (``qid docid rel``) qrels without a header, else None."""
    path = reader.path
    if reader.fmt != "tsv":
        return None
    with open(path, "rb") as fh:
        first = next((raw for raw in fh if raw.strip()), b"").decode("utf-8", "replace")
    fields = first.split()
    if len(fields) not in (3, 4) or not fields[-1].lstrip("-").replace(".", "", 1).isdigit():
        return None

    def rows() -> Iterator[tuple[str, dict[str, Any]]]:
        for lineno, line in reader.lines():
            parts = line.split()
            if not parts:
                continue
            if len(parts) != len(fields):
                raise InputError.at(path, f"line {lineno}", f"has {len(parts)} fields, expected {len(fields)}",
                                    "write `query-id doc-id score` or TREC `qid 0 docid rel` on every line")
            yield f"line {lineno}", {"query": parts[0], "doc": parts[-2], "score": parts[-1]}

    return rows()


def iter_qrels(reader: RowReader) -> Iterator[tuple[str, Qrel]]:
    """Qrels from a BEIR TSV (with header), a TREC qrels file, or a JSONL/CSV/Parquet table."""
    path = reader.path
    rows = _headerless_qrels(reader)
    if rows is None:
        specs = {
            "query": (QREL_QUERY, None, "query id", "a query-id header"),
            "doc": (QREL_DOC, None, "document id", "a corpus-id header"),
            "score": (QREL_SCORE, None, "score", "a score header"),
        }
        rows = _fields(reader, specs, optional={"score"})
    for where, v in rows:
        qid, did = _as_str(v["query"]).strip(), _as_str(v["doc"]).strip()
        if not qid or not did:
            raise InputError.at(path, where, "has an empty query or document id", "fill in both ids")
        yield where, Qrel(qid, did, _parse_score(path, where, v["score"]))


def read_qrels(path: Path | str, doc_ids: set[str], queries: TextTable) -> tuple[list[Qrel], dict[str, str]]:
    """Qrels checked against the corpus' ``doc_ids`` (those the qrels may name) and the queries, and their source
    record.

    A repeated (query, document) pair keeps its highest score.
    """
    reader = RowReader.open(path)
    path = reader.path
    query_ids = set(queries.ids)
    best: dict[tuple[str, str], Qrel] = {}
    for where, qrel in iter_qrels(reader):
        if qrel.query_id not in query_ids:
            raise InputError.at(path, where, f"names query {qrel.query_id!r}, which is not among the queries",
                                "check that qrels and queries come from the same dataset")
        if qrel.doc_id not in doc_ids:
            raise InputError.at(path, where, f"names document {qrel.doc_id!r}, which is not in the corpus",
                                "check that qrels and corpus come from the same dataset")
        key = (qrel.query_id, qrel.doc_id)
        if key not in best or best[key].score < qrel.score:
            best[key] = qrel
    return list(best.values()), _source(reader)


def _only_judged(queries: TextTable, qrels: list[Qrel]) -> TextTable:
    """The queries with at least one positive, in their file order."""
    judged = {q.query_id for q in qrels if q.is_positive}
    keep = [i for i, qid in enumerate(queries.ids) if qid in judged]
    return TextTable([queries.ids[i] for i in keep], [queries.texts[i] for i in keep])




def load_files(corpus: Path | str, queries: Path | str | None = None, qrels: Path | str | None = None,
               columns: Columns = Columns(), stage: Path | None = None) -> Dataset:
    """A dataset from separate corpus, queries and qrels files (JSONL, CSV, TSV or Parquet). With ``stage`` (a
    folder), the corpus is read in blocks into it (:mod:`.staged`) rather than into memory."""
    if stage is None:
        corpus_table, corpus_source = read_corpus(corpus, columns)
        doc_ids = set(corpus_table.ids)
    else:
        from .staged import stage_corpus

        wanted = {q.doc_id for _, q in iter_qrels(RowReader.open(qrels))} if qrels is not None and queries else set()
        corpus_table, corpus_source, doc_ids = stage_corpus(corpus, columns, stage, wanted)
    sources = {"corpus": corpus_source}
    if queries is None:
        if qrels is not None:
            raise InputError("qrels were given without queries; pass --queries too")
        return Dataset(corpus_table, TextTable([], []), [], sources)
    query_table, sources["queries"] = read_queries(queries, columns)
    if qrels is None:
        return Dataset(corpus_table, query_table, [], sources)
    qrel_list, sources["qrels"] = read_qrels(qrels, doc_ids, query_table)
    return Dataset(corpus_table, _only_judged(query_table, qrel_list), qrel_list, sources)


def beir_split_path(folder: Path, split: str) -> Path:
    qrels_dir = folder / "qrels"
    path = qrels_dir / f"{split}.tsv"
    if not path.exists():
        have = sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
        hint = f"choose one of: {', '.join(have)}" if have else "add a qrels/<split>.tsv file"
        raise InputError.at(folder, None, f"has no qrels for split {split!r}", f"{hint} with --split")
    return path


def load_beir(folder: Path | str, split: str = "train", columns: Columns = Columns(),
              stage: Path | None = None) -> Dataset:
    """A BEIR folder: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

    Only the queries judged in that split with at least one positive are kept.
    """
    folder = Path(folder)
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (folder / name).exists():
            raise InputError.at(folder, None, f"has no {name}", "a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/")
    return load_files(folder / "corpus.jsonl", folder / "queries.jsonl", beir_split_path(folder, split), columns, stage)


@dataclass(frozen=True)
class Sources:
    """Where a dataset is read from beside (or instead of) a BEIR folder or pair file: :func:`load_dataset`'s
    keyword arguments, as the command line sets them."""

    split: str = setting("train", "Qrels split of a BEIR folder.")
    corpus: Path | None = setting(help="Corpus file (JSONL, CSV, TSV, Parquet).")
    queries: Path | None = setting(help="Queries file.")
    qrels: Path | None = setting(help="Qrels file: BEIR TSV, TREC, or a table.")


def load_dataset(data: Path | str | None = None, *, split: str = "train", corpus: Path | str | None = None,
                 queries: Path | str | None = None, qrels: Path | str | None = None,
                 columns: Columns = Columns(), stage: Path | None = None) -> Dataset:
    """Any supported input: a BEIR folder or pair file as ``data``, or separate files. ``stage``: a folder to
    read a corpus file into a block at a time (see :func:`load_files`); pair files are read into memory."""
    if data is not None:
        data = Path(data)
        if (data / "dataset_dict.json").exists():  # DatasetDict.save_to_disk: one folder per split
            if not (data / split).is_dir():
                splits = sorted(p.name for p in data.iterdir() if p.is_dir())
                raise InputError(f"{data}: has no split {split!r}; choose --split from {', '.join(splits)}")
            data = data / split
        if data.is_dir() and not table_files(data):  # a BEIR folder; a dataset folder holds pairs
            if corpus or queries or qrels:
                raise InputError("give either a BEIR folder or --corpus/--queries/--qrels, not both")
            return load_beir(data, split, columns, stage)
        if queries or qrels:
            raise InputError("a pair file carries its own queries and positives; drop --queries/--qrels")
        return load_pairs(data, columns, corpus)
    if corpus is None:
        raise InputError("no input: give a BEIR folder or pair file, or --corpus (with --queries and --qrels)")
    return load_files(corpus, queries, qrels, columns, stage)
