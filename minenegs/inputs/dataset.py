"""Inputs: BEIR folders, separate corpus/queries/qrels files, and query-positive pair files.

Everything is read and checked before any work starts. Documents are encoded as
``(title + " " + text).strip()``, which is how BEIR's sentence-transformers wrapper joins them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from .readers import RowReader, pick_column, require_column, table_files
from ..records import Dataset, Doc, Qrel, Query, TextTable, setting

DOC_ID = ("_id", "id", "doc_id", "docid", "corpus_id", "corpus-id", "pid")
QUERY_ID = ("_id", "id", "query_id", "query-id", "qid")
DOC_TEXT = ("text", "contents", "content", "passage", "body")
QUERY_TEXT = ("text", "query", "question")
TITLE = ("title",)
PAIR_QUERY = ("query", "anchor", "question")
PAIR_POSITIVE = ("positive", "pos", "document")
PAIR_NEGATIVE = ("negative", "neg", "negatives")
QREL_QUERY = ("query-id", "query_id", "qid", "query")
QREL_DOC = ("corpus-id", "corpus_id", "doc-id", "doc_id", "docid", "pid", "doc")
QREL_SCORE = ("score", "relevance", "rel", "label")


@dataclass(frozen=True)
class Columns:
    """Column names chosen by the user; ``None`` means auto-detect from the common spellings."""

    id: str | None = setting(help="Id column of corpus and queries.", flag="--id-column")
    text: str | None = setting(help="Text column of corpus and queries.", flag="--text-column")
    title: str | None = setting(help="Title column of the corpus.", flag="--title-column")
    query: str | None = setting(help="Query column of a pair file.", flag="--query-column")
    positive: str | None = setting(help="Positive column of a pair file.", flag="--positive-column")


def content_id(prefix: str, text: str) -> str:
    """A stable id derived from a text, for inputs that come without ids (pair files)."""
    return f"{prefix}-{hashlib.blake2b(text.encode('utf-8'), digest_size=8).hexdigest()}"


def _scalar(reader: RowReader, where: str, field: str, value: Any) -> str:
    """A field that must hold one string or number (an id, a text)."""
    if isinstance(value, (list, dict, tuple)):
        raise InputError.at(reader.path, where, f"{field} is a {type(value).__name__}, not a string",
                            f"give each row one {field} string")
    return _as_str(value)


def _as_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class _TableBuilder:
    """Collects (id, text) rows, merging exact repeats and refusing conflicting ones."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path, self.kind = path, kind
        self.ids: list[str] = []
        self.texts: list[str] = []
        self._first: dict[str, tuple[int, str]] = {}

    def add(self, where: str, id_: str, text: str) -> None:
        if not id_:
            raise InputError.at(self.path, where, f"{self.kind} has an empty id", "give every row an id")
        if not text:
            raise InputError.at(self.path, where, f"{self.kind} {id_!r} has an empty text", "remove the row or fill in its text")
        first = self._first.get(id_)
        if first is not None:
            if self.texts[first[0]] != text:
                raise InputError.at(
                    self.path, where, f"{self.kind} id {id_!r} appears again with a different text (first at {first[1]})",
                    "give each text its own id or remove the duplicate",
                )
            return
        self._first[id_] = (len(self.ids), where)
        self.ids.append(id_)
        self.texts.append(text)

    def table(self) -> TextTable:
        return TextTable(self.ids, self.texts)


def _resolve(reader: RowReader, row: dict[str, Any], specs: dict[str, tuple[tuple[str, ...], str | None, str, str]],
             optional: set[str]) -> dict[str, str | None]:
    columns = list(row)
    out: dict[str, str | None] = {}
    for role, (candidates, explicit, what, flag) in specs.items():
        if role in optional:
            out[role] = pick_column(columns, candidates, explicit, path=reader.path, what=what, flag=flag)
        else:
            out[role] = require_column(columns, candidates, explicit, path=reader.path, what=what, flag=flag)
    return out


def _fields(reader: RowReader, specs, optional: set[str] = frozenset()) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows of ``reader`` as ``{role: value}``; columns resolved from the first row."""
    names: dict[str, str | None] | None = None
    for where, row in reader:
        if names is None:
            names = _resolve(reader, row, specs, optional)
        values: dict[str, Any] = {}
        for role, column in names.items():
            if column is None:
                values[role] = None
            elif column in row:
                values[role] = row[column]
            elif role in optional:
                values[role] = None
            else:
                raise InputError.at(reader.path, where, f"has no field {column!r}", "give every row the same fields")
        yield where, values


def iter_docs(reader: RowReader, columns: Columns = Columns()) -> Iterator[tuple[str, Doc]]:
    """Documents of a corpus file, with where each came from."""
    specs = {
        "id": (DOC_ID, columns.id, "id", "--id-column"),
        "text": (DOC_TEXT, columns.text, "text", "--text-column"),
        "title": (TITLE, columns.title, "title", "--title-column"),
    }
    for where, v in _fields(reader, specs, optional={"title"}):
        yield where, Doc(_scalar(reader, where, "id", v["id"]).strip(), _scalar(reader, where, "text", v["text"]),
                         _scalar(reader, where, "title", v["title"]))


def iter_queries(reader: RowReader, columns: Columns = Columns()) -> Iterator[tuple[str, Query]]:
    """Queries of a queries file, with where each came from."""
    specs = {
        "id": (QUERY_ID, columns.id, "id", "--id-column"),
        "text": (QUERY_TEXT, columns.text, "text", "--text-column"),
    }
    for where, v in _fields(reader, specs):
        yield where, Query(_scalar(reader, where, "id", v["id"]).strip(), _scalar(reader, where, "text", v["text"]))


def read_corpus(path: Path | str, columns: Columns = Columns()) -> tuple[TextTable, dict[str, str]]:
    """The corpus table and its source record (path and SHA-256)."""
    reader = RowReader.open(path)
    builder = _TableBuilder(reader.path, "document")
    for where, doc in iter_docs(reader, columns):
        builder.add(where, doc.id, doc.full_text)
    return builder.table(), _source(reader)


def read_queries(path: Path | str, columns: Columns = Columns()) -> tuple[TextTable, dict[str, str]]:
    """The queries table and its source record (path and SHA-256)."""
    reader = RowReader.open(path)
    builder = _TableBuilder(reader.path, "query")
    for where, query in iter_queries(reader, columns):
        builder.add(where, query.id, query.text.strip())
    return builder.table(), _source(reader)


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


def read_qrels(path: Path | str, corpus: TextTable, queries: TextTable) -> tuple[list[Qrel], dict[str, str]]:
    """Qrels checked against the corpus and queries, and their source record.

    A repeated (query, document) pair keeps its highest score.
    """
    reader = RowReader.open(path)
    path = reader.path
    doc_ids, query_ids = set(corpus.ids), set(queries.ids)
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


def _source(reader: RowReader) -> dict[str, str]:
    return {"path": f"{reader.path}", "sha256": reader.sha256}


def load_files(corpus: Path | str, queries: Path | str | None = None, qrels: Path | str | None = None,
               columns: Columns = Columns()) -> Dataset:
    """A dataset from separate corpus, queries and qrels files (JSONL, CSV, TSV or Parquet)."""
    corpus_table, corpus_source = read_corpus(corpus, columns)
    sources = {"corpus": corpus_source}
    if queries is None:
        if qrels is not None:
            raise InputError("qrels were given without queries; pass --queries too")
        return Dataset(corpus_table, TextTable([], []), [], sources)
    query_table, sources["queries"] = read_queries(queries, columns)
    if qrels is None:
        return Dataset(corpus_table, query_table, [], sources)
    qrel_list, sources["qrels"] = read_qrels(qrels, corpus_table, query_table)
    return Dataset(corpus_table, _only_judged(query_table, qrel_list), qrel_list, sources)


def beir_split_path(folder: Path, split: str) -> Path:
    qrels_dir = folder / "qrels"
    path = qrels_dir / f"{split}.tsv"
    if not path.exists():
        have = sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
        hint = f"choose one of: {', '.join(have)}" if have else "add a qrels/<split>.tsv file"
        raise InputError.at(folder, None, f"has no qrels for split {split!r}", f"{hint} with --split")
    return path


def load_beir(folder: Path | str, split: str = "train", columns: Columns = Columns()) -> Dataset:
    """A BEIR folder: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

    Only the queries judged in that split with at least one positive are kept.
    """
    folder = Path(folder)
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (folder / name).exists():
            raise InputError.at(folder, None, f"has no {name}", "a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/")
    return load_files(folder / "corpus.jsonl", folder / "queries.jsonl", beir_split_path(folder, split), columns)


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_as_str(v) for v in value]
    return [_as_str(value)]


def load_pairs(path: Path | str, columns: Columns = Columns(), corpus: Path | str | None = None) -> Dataset:
    """Query-positive pairs without ids (sentence-transformers or FlagEmbedding style).

    Ids are derived from the texts, so identical texts merge: a query repeated with several
    positives becomes one query with several positives. A list-valued positive column (FlagEmbedding
    ``pos``) gives several positives; a negative column (``neg``) adds its texts to the corpus.
    With ``corpus``, its documents join the corpus and a positive with a corpus document's exact text
    takes that document's id.
    """
    path = Path(path)
    docs = _TableBuilder(path, "document")
    sources: dict[str, dict[str, str]] = {}
    if corpus is not None:
        extra, sources["corpus"] = read_corpus(corpus, columns)
        for i, (did, text) in enumerate(zip(extra.ids, extra.texts)):
            docs.add(f"row {i + 1}", did, text)
    id_of_text = dict(zip(docs.texts, docs.ids))
    queries = _TableBuilder(path, "query")
    qrels: dict[tuple[str, str], Qrel] = {}
    reader = RowReader.open(path)
    specs = {
        "query": (PAIR_QUERY, columns.query, "query", "--query-column"),
        "positive": (PAIR_POSITIVE, columns.positive, "positive", "--positive-column"),
        "negative": (PAIR_NEGATIVE, None, "negative", ""),
    }
    for where, v in _fields(reader, specs, optional={"negative"}):
        query = _as_str(v["query"]).strip()
        if not query:
            raise InputError.at(path, where, "has an empty query", "remove the row or fill in the query")
        positives = [t.strip() for t in _texts(v["positive"])]
        if not positives or not all(positives):
            raise InputError.at(path, where, "has an empty positive", "remove the row or fill in the positive")
        qid = content_id("q", query)
        queries.add(where, qid, query)
        for text in positives + [t.strip() for t in _texts(v["negative"]) if t.strip()]:
            if text not in id_of_text:
                id_of_text[text] = content_id("d", text)
                docs.add(where, id_of_text[text], text)
        for text in positives:
            qrels[(qid, id_of_text[text])] = Qrel(qid, id_of_text[text], 1)
    sources["pairs"] = _source(reader)
    return Dataset(docs.table(), queries.table(), list(qrels.values()), sources)


def load_dataset(data: Path | str | None = None, *, split: str = "train", corpus: Path | str | None = None,
                 queries: Path | str | None = None, qrels: Path | str | None = None,
                 columns: Columns = Columns()) -> Dataset:
    """Any supported input: a BEIR folder or pair file as ``data``, or separate files."""
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
            return load_beir(data, split, columns)
        if queries or qrels:
            raise InputError("a pair file carries its own queries and positives; drop --queries/--qrels")
        return load_pairs(data, columns, corpus)
    if corpus is None:
        raise InputError("no input: give a BEIR folder or pair file, or --corpus (with --queries and --qrels)")
    return load_files(corpus, queries, qrels, columns)
