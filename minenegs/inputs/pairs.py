"""Query-positive pair files (sentence-transformers or FlagEmbedding style): a file, or a Hugging Face dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError
from ..records import Dataset, Qrel
from .readers import RowReader
from .tables import (PAIR_NEGATIVE, PAIR_POSITIVE, PAIR_QUERY, Columns, _TableBuilder, _as_str, _fields, _source,
                     content_id, read_corpus)


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
