"""The LLM judge's prompts and how its answers are read: one candidate a request (``DEFAULT_TEMPLATE``, a verdict
under ``SCHEMA``), or listwise (``--judge-batch K`` above 1: up to K candidates of one query in one request,
numbered, the instructions, the query and its positives sent once for them all; the answer a list of verdicts by
number)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .base import VERDICTS, Ask

DEFAULT_TEMPLATE = """You judge search results for a retrieval training set.

Query: {query}

Documents known to be relevant to the query, for reference:
{positives}

Candidate document:
{candidate}

Is the candidate relevant to the query, as the reference documents are? Answer with a JSON object
{{"verdict": "relevant"}}, {{"verdict": "not_relevant"}} or {{"verdict": "unsure"}} and nothing else."""
SCHEMA = {"type": "object", "properties": {"verdict": {"type": "string", "enum": list(VERDICTS)}},
          "required": ["verdict"], "additionalProperties": False}
SLOTS = ("query", "candidate")  # a template must have these; {positives} is optional


def response_format(form: str, schema: dict = SCHEMA, name: str = "verdict") -> dict:
    """The request's ``response_format`` for ``form`` (none for ``plain``)."""
    if form == "json_schema":
        return {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}}
    if form == "json_object":
        return {"response_format": {"type": "json_object", "schema": schema}}
    return {}


@dataclass
class Answer:
    verdict: str | None  # None: no verdict (malformed, missing, or the request failed for good)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

_WORD = re.compile(r"\b(not[ _-]?relevant|relevant|unsure)\b", re.I)


def tokens(response: dict) -> dict[str, int]:
    usage = response.get("usage") or {}
    return {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0)}


def read_answer(response: dict | Answer) -> Answer:
    """The verdict in a chat-completions response, and its token counts; None where there is no clear one."""
    if isinstance(response, Answer):
        return response
    counts = tokens(response)
    content = message(response)
    if content is None:
        return Answer(None, error="no message in the answer", **counts)
    verdict = None
    if isinstance(content, str):
        text = content.strip()
        try:
            parsed = json.loads(text)
            verdict = parsed.get("verdict") if isinstance(parsed, dict) else None
        except ValueError:
            words = {plain_word(w) for w in _WORD.findall(text)}
            verdict = words.pop() if len(words) == 1 else None  # a bare word, and only one kind of it
    if verdict not in VERDICTS:
        return Answer(None, error="no verdict in the answer", **counts)
    return Answer(verdict, **counts)

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
