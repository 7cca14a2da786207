"""Rows to tables: which columns hold ids, texts and titles (the user's choice or the common spellings), and
documents and queries read into text tables, every row checked."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..records import Doc, Query, TextTable
from ..settings import setting
from .readers import RowReader, pick_column, require_column


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


def check_row(path: Path, kind: str, where: str, id_: str, text: str) -> None:
    """A row needs an id and a text."""
    if not id_:
        raise InputError.at(path, where, f"{kind} has an empty id", "give every row an id")
    if not text:
        raise InputError.at(path, where, f"{kind} {id_!r} has an empty text", "remove the row or fill in its text")


def conflict(path: Path, kind: str, id_: str, where: str, first: str) -> InputError:
    """An id given twice with different texts."""
    return InputError.at(path, where, f"{kind} id {id_!r} appears again with a different text (first at {first})",
                         "give each text its own id or remove the duplicate")


class _TableBuilder:
    """Collects (id, text) rows, merging exact repeats and refusing conflicting ones."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path, self.kind = path, kind
        self.ids: list[str] = []
        self.texts: list[str] = []
        self._first: dict[str, tuple[int, str]] = {}

    def add(self, where: str, id_: str, text: str) -> None:
        check_row(self.path, self.kind, where, id_, text)
        first = self._first.get(id_)
        if first is not None:
            if self.texts[first[0]] != text:
                raise conflict(self.path, self.kind, id_, where, first[1])
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

def _source(reader: RowReader) -> dict[str, str]:
    return {"path": f"{reader.path}", "sha256": reader.sha256}
