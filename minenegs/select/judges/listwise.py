"""Listwise LLM judging (``--judge-batch K`` above 1): up to K candidates of one query in one request, numbered,
the instructions, the query and its positives sent once for them all; the answer a list of verdicts by number."""

from __future__ import annotations

import json
import re

from .base import VERDICTS, Ask

LIST_TEMPLATE = """You judge search results for a retrieval training set.

Query: {query}

Documents known to be relevant to the query, for reference:
{positives}

Candidates:
{candidates}

For each candidate: is it relevant to the query, as the reference documents are? Answer only with
{{"verdicts": [{{"id": 1, "verdict": "relevant"}}, ...]}}, each "relevant", "not_relevant" or "unsure"."""
LIST_SCHEMA = {"type": "object", "properties": {"verdicts": {"type": "array", "items": {
    "type": "object", "properties": {"id": {"type": "integer"}, "verdict": {"type": "string", "enum": list(VERDICTS)}},
    "required": ["id", "verdict"], "additionalProperties": False}}}, "required": ["verdicts"],
    "additionalProperties": False}
LIST_SLOTS = ("query", "candidates")  # a listwise template must have these; {positives} is optional


def references(positives: tuple[str, ...]) -> str:
    """A query's labelled positives as a prompt lists them, for reference."""
    return "\n".join(f"- {p}" for p in positives) or "(none given)"


def requests(asks: list[Ask], batch: int) -> list[list[int]]:
    """The requests of a listwise run: the asks of one query (its text and positives), in their order, up to
    ``batch`` a request."""
    by_query: dict[tuple, list[int]] = {}
    for i, ask in enumerate(asks):
        by_query.setdefault((ask.query, ask.positives), []).append(i)
    return [rows[k:k + batch] for rows in by_query.values() for k in range(0, len(rows), batch)]


def numbered(texts: list[str]) -> str:
    """Candidates as a listwise prompt numbers them: ``[1] text`` a line each, from 1."""
    return "\n".join(f"[{k}] {t}" for k, t in enumerate(texts, 1))


_ITEM = re.compile(r"\[?(\d+)\]?\s*[:.)=-]?\s*\"?(not[ _-]?relevant|relevant|unsure)\b", re.I)


def list_verdicts(response: dict, n: int) -> list[str | None]:
    """The verdicts of a listwise answer for candidates 1..n: from ``{"verdicts": [{"id", "verdict"}, ...]}`` (a bare
    array too), else from ``k: verdict`` lines; a candidate missing, given twice or malformed gets None, the others
    keep theirs."""
    content = message(response)
    pairs: list[tuple[object, object]] = []
    try:
        parsed = json.loads(content) if isinstance(content, str) else None
        items = parsed.get("verdicts") if isinstance(parsed, dict) else parsed
        pairs = [(x.get("id"), x.get("verdict")) for x in items if isinstance(x, dict)] if isinstance(items, list) else []
    except ValueError:
        if isinstance(content, str):
            pairs = [(int(k), plain_word(w)) for k, w in _ITEM.findall(content)]
    found: dict[int, str | None] = {}
    for k, verdict in pairs:
        if isinstance(k, int) and 1 <= k <= n:
            verdict = "not_relevant" if verdict == "notrelevant" else verdict
            found[k] = verdict if k not in found and verdict in VERDICTS else None
    return [found.get(k) for k in range(1, n + 1)]


def plain_word(word: str) -> str:
    """A verdict as written in plain words ("Not relevant", "not-relevant", ...) as the verdict it names."""
    word = word.lower().replace(" ", "_").replace("-", "_")
    return "not_relevant" if word == "notrelevant" else word


def message(response: dict) -> object:
    """The message content of a chat-completions response (None without one)."""
    try:
        return response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
