"""The LLM judge: a model behind an OpenAI-compatible chat-completions server (vLLM, llama.cpp's server, Ollama,
TGI, a hosted API) asked whether a candidate is relevant to a query, the query's labelled positives given for
reference.

A careful client: requests go out ``concurrency`` at a time, each with a timeout; a 429 or a 5xx answer, a timeout
or a dropped connection is retried with exponential backoff (``Retry-After`` honoured) up to ``retries`` times;
token usage is counted. Where the server takes one, the answer is asked for as JSON under a schema: OpenAI's
``json_schema`` form, else the ``json_object`` form with the schema beside it (llama.cpp's server through
llama-cpp-python, which answers the first with a 500 naming ``response_format``), else in plain words; the first
refusal moves the whole judge to the next form, so each form is tried once per run, not once per request. An answer that is missing, malformed or not one of the verdicts is
*no verdict* (counted), never "not relevant".
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ...errors import InputError
from .base import Ask, JudgeKind, JudgeOptions
from .prompts import (DEFAULT_TEMPLATE, LIST_SCHEMA, LIST_SLOTS, LIST_TEMPLATE, SCHEMA, SLOTS, Answer, list_verdicts,
                      numbered, read_answer, references, requests, response_format, tokens)

TEMPLATE_VERSION = 1
FORMS = ("json_schema", "json_object", "plain")  # how the answer is asked for, most structured first


@dataclass
class Usage:
    """What a run of the client cost: requests sent (retries included), answers, tokens (its seconds are in the
    judging summary, as every judge's)."""

    requests: int = 0
    retries: int = 0
    answers: int = 0
    no_verdict: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def to_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if k != "lock"}


class _Retry(Exception):
    def __init__(self, why: str, wait: float | None = None) -> None:
        super().__init__(why)
        self.wait = wait


@dataclass
class LLMJudge:
    """``model`` at the OpenAI-compatible ``url`` (the base, e.g. ``http://127.0.0.1:8000/v1``); the API key, if
    the server wants one, in the environment variable ``key_env``. ``template`` is a ``str.format`` template with
    ``{query}``, ``{candidate}`` and optionally ``{positives}``. ``batch`` > 1 judges up to that many candidates of
    one query in one request (listwise, with ``list_template``: ``{query}``, ``{candidates}``, optionally
    ``{positives}``); verdicts are per pair whatever ``batch``, so the fingerprint leaves it out and a cache
    filled at one ``batch`` serves every other."""

    model: str
    url: str
    key_env: str | None = None
    template: str = DEFAULT_TEMPLATE
    concurrency: int = 8
    timeout: float = 60.0
    retries: int = 4
    backoff: float = 0.5
    max_tokens: int = 32
    structured: bool = True  # ask for JSON under SCHEMA where the server takes it
    batch: int = 1
    list_template: str = LIST_TEMPLATE
    usage: Usage = field(default_factory=Usage, repr=False)
    form: int = field(default=0, init=False, repr=False)  # the FORMS index this server takes, as far as known

    def __post_init__(self) -> None:
        self.form = 0 if self.structured else FORMS.index("plain")
        self._form_lock = threading.Lock()
        missing = [s for s in SLOTS if "{" + s + "}" not in self.template]
        if missing:
            raise InputError(f"--judge-template: has no {{{missing[0]}}} slot; a template needs {{query}} and "
                             "{candidate} ({positives} is optional)")
        try:
            self.template.format(query="", candidate="", positives="")
        except (KeyError, IndexError, ValueError) as exc:
            raise InputError(f"--judge-template: not a template of {{query}}, {{candidate}} and {{positives}} "
                             f"only ({exc}); write a literal brace as {{{{ or }}}}") from None
        if self.batch < 1:
            raise InputError(f"--judge-batch {self.batch}: must be at least 1")
        if self.batch > 1:
            missing = [s for s in LIST_SLOTS if "{" + s + "}" not in self.list_template]
            if missing:
                raise InputError(f"--judge-batch {self.batch}: the listwise template has no {{{missing[0]}}} slot")
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"--judge {self.spec}: give the server's base URL after the @, "
                             "e.g. llm:MODEL@http://127.0.0.1:8000/v1")
        if self.key_env is not None and not os.environ.get(self.key_env):
            raise InputError(f"--judge-key-env {self.key_env}: that environment variable is not set")
        if self.concurrency < 1:
            raise InputError(f"--judge-concurrency {self.concurrency}: must be at least 1")
        if self.retries < 0:
            raise InputError(f"LLMJudge(retries={self.retries}): must be at least 0")
        if not (0 < self.timeout < float("inf")):
            raise InputError(f"--judge-timeout {self.timeout}: give a number of seconds above 0")

    # -- identity -----------------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """What decides a verdict: the model, the template and its version, the settings of the request. Not the
        server's address or key: the same model elsewhere gives the same verdicts."""
        settings = {"kind": "llm", "model": self.model, "template": self.template, "version": TEMPLATE_VERSION,
                    "max_tokens": self.max_tokens, "structured": self.structured, "temperature": 0}
        if self.batch > 1 and self.list_template != LIST_TEMPLATE:  # a listwise template of the user's own
            settings["list_template"] = self.list_template
        blob = json.dumps(settings, sort_keys=True)
        return "llm-" + hashlib.sha256(blob.encode()).hexdigest()[:24]

    def probe(self) -> None:
        """Fail in seconds, before any work, when nothing listens at the server's address."""
        parts = urllib.parse.urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=min(5.0, self.timeout)).close()
        except OSError as exc:
            raise InputError(f"--judge {self.spec}: no server answers at {self.url} "
                             f"({exc.strerror or type(exc).__name__})") from None

    # -- asking -------------------------------------------------------------------------------------------
    def prompt(self, ask: Ask) -> str:
        return self.template.format(query=ask.query, candidate=ask.candidate, positives=references(ask.positives))

    @property
    def name(self) -> str:
        return f"llm:{self.model}"

    @property
    def spec(self) -> str:
        """The judge as ``--judge`` takes it."""
        return f"llm:{self.model}@{self.url}"

    def verdicts(self, asks: list[Ask], done: Callable[[int, str | None], None]) -> list[str | None]:
        """The verdict per ask (None: no verdict), ``done(i, verdict)`` called as each arrives."""
        if self.batch > 1:
            return self._listwise(asks, done)
        return [a.verdict for a in self.ask_all(asks, lambda i, answer: done(i, answer.verdict))]

    def list_prompt(self, asks: list[Ask]) -> str:
        return self.list_template.format(query=asks[0].query, positives=references(asks[0].positives),
                                         candidates=numbered([a.candidate for a in asks]))

    def _listwise(self, asks: list[Ask], done: Callable[[int, str | None], None]) -> list[str | None]:
        out: list[str | None] = [None] * len(asks)
        lock = threading.Lock()

        def one(rows: list[int]) -> None:
            response = self._request(self.list_prompt([asks[i] for i in rows]), LIST_SCHEMA, "verdicts",
                                     self.max_tokens + 16 * self.batch)
            failed = isinstance(response, Answer)
            said = [None] * len(rows) if failed else list_verdicts(response, len(rows))
            self._spent(response if failed else Answer(None, **tokens(response)), said)
            with lock:
                for i, verdict in zip(rows, said):
                    out[i] = verdict
                    done(i, verdict)

        self._at_once(one, requests(asks, self.batch))
        return out

    def ask_all(self, asks: Iterable[Ask], done: Callable[[int, Answer], None] | None = None) -> list[Answer]:
        """Answers to ``asks``, ``concurrency`` requests at a time; ``done(i, answer)`` is called as the answer to
        ``asks[i]`` arrives (from the worker threads, one at a time)."""
        asks = list(asks)
        lock = threading.Lock()

        def one(i: int) -> Answer:
            answer = self._ask(asks[i])
            self._spent(answer, [answer.verdict])
            if done is not None:
                with lock:
                    done(i, answer)
            return answer

        return self._at_once(one, list(range(len(asks))))

    def _at_once(self, work: Callable[[Any], Any], items: list) -> list:
        """``work(item)`` for every item, ``concurrency`` requests at a time."""
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(items)))) as pool:
            return list(pool.map(work, items))

    def _spent(self, answer: Answer, said: list[str | None]) -> None:
        """Count one answered request: the verdicts it gave (``said``) and its tokens."""
        self.usage.add(answers=len(said), no_verdict=sum(v is None for v in said),
                       prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens)

    def _ask(self, ask: Ask) -> Answer:
        return read_answer(self._request(self.prompt(ask), SCHEMA, "verdict", self.max_tokens))

    def _request(self, prompt: str, schema: dict, name: str, max_tokens: int) -> dict | Answer:
        """The server's response to ``prompt`` (an Answer without a verdict where it failed for good), asked in the
        most structured form the server takes, retried as the class says."""
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                "temperature": 0, "max_tokens": max_tokens}
        form, attempt = self.form, 0
        while True:
            try:
                return self._post({**body, **response_format(FORMS[form], schema, name)})
            except _Refused as exc:
                if not exc.form or form == len(FORMS) - 1:
                    return Answer(None, error=str(exc))
                form = self._next_form(form)  # the server does not take this form: the next one, for every ask
            except _Retry as exc:
                if attempt == self.retries:
                    return Answer(None, error=str(exc))
                wait = exc.wait if exc.wait is not None else self.backoff * 2 ** attempt
                time.sleep(min(wait, 30.0) * (1 + 0.1 * random.random()))
                attempt += 1
                self.usage.add(retries=1)

    def _next_form(self, refused: int) -> int:
        with self._form_lock:
            self.form = max(self.form, refused + 1)
            return self.form

    def _post(self, payload: dict) -> dict:
        request = urllib.request.Request(self.url.rstrip("/") + "/chat/completions", data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {os.environ[self.key_env]}"}
                                                     if self.key_env else {})})
        self.usage.add(requests=1)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            about_form = "response_format" in payload and exc.code != 429 and (
                exc.code < 500 or "response_format" in _text(exc))  # a 4xx, or llama-cpp-python's 500 naming it
            if about_form:
                raise _Refused(f"HTTP {exc.code}: the server does not take this response_format", form=True) from None
            if exc.code == 429 or exc.code >= 500:
                after = exc.headers.get("Retry-After") if exc.headers else None
                raise _Retry(f"HTTP {exc.code}", float(after) if after and after.isdigit() else None) from None
            raise _Refused(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            raise _Retry(type(getattr(exc, "reason", exc)).__name__) from None
        try:
            return json.loads(raw)
        except ValueError:
            return {}


class _Refused(Exception):
    """A 4xx other than 429, or an error naming the response format: the request itself is wrong for this server
    (``form``: its ``response_format``)."""

    def __init__(self, why: str, form: bool = False) -> None:
        super().__init__(why)
        self.form = form


def _text(exc: urllib.error.HTTPError) -> str:
    try:
        return exc.read(65536).decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""


def _build(rest: str, options: JudgeOptions, given: str) -> LLMJudge:
    """``llm:MODEL@URL``: an OpenAI-compatible server; the template given is K's kind (listwise when K > 1)."""
    model, at, url = rest.partition("@")
    if not model or not at or not url:
        raise InputError(f"--judge {given}: write llm:MODEL@URL, e.g. llm:qwen2.5-0.5b@http://127.0.0.1:8000/v1")
    text = options.template_text()
    one, listed = (None, text) if options.batch > 1 else (text, None)
    if listed is not None and "{candidates}" not in listed:
        raise InputError(f"--judge-template: with --judge-batch {options.batch}, give a listwise template with "
                         "{query} and {candidates} (optionally {positives}); the numbered candidates go in "
                         "{candidates}")
    return LLMJudge(model, url, key_env=options.key_env, template=one or DEFAULT_TEMPLATE,
                    concurrency=options.concurrency, timeout=options.timeout, batch=options.batch,
                    list_template=listed or LIST_TEMPLATE)


KIND = JudgeKind("llm", "llm:MODEL@URL", _build)
