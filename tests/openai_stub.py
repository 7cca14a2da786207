"""An OpenAI-compatible chat-completions server for tests, on 127.0.0.1 and a free port, in a thread of the test
process. Its answers are scripted: ``verdict(prompt)`` gives the verdict for a prompt; ``faults`` is a list of
what the next requests get instead (``"429"``, ``"500"``, ``"malformed"``, ``"drop"``: the connection closed
without an answer, ``"slow"``: an answer after ``slow_seconds``, ``"missing-first"``: a listwise answer without
its first candidate), consumed one per request. A listwise request (minenegs' listwise template) is answered item
by item, each candidate as its one-candidate prompt would be. ``schema``: True takes
any ``response_format``, False none (a 400), ``"json_object"`` takes only that form and answers ``json_schema``
with a 500 naming ``response_format``, as llama.cpp's server through llama-cpp-python does."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def pointwise(prompt: str) -> list[str] | None:
    """For a prompt of minenegs' listwise template, the one-candidate prompts of its candidates (the default
    template's), so a scripted verdict answers a candidate alike whatever the batch; None for any other prompt."""
    from minenegs.select.judges.llm import DEFAULT_TEMPLATE

    marks = ("\nQuery: ", "\n\nDocuments known to be relevant to the query, for reference:\n",
             "\n\nCandidates:\n", "\n\nFor each candidate:")
    if not all(m in prompt for m in marks):
        return None
    query, rest = prompt.split(marks[0], 1)[1].split(marks[1], 1)
    positives, rest = rest.split(marks[2], 1)
    listed = rest.split(marks[3], 1)[0]
    texts = [t.rstrip("\n") for t in re.split(r"(?m)^\[\d+\] ", listed)[1:]]
    return [DEFAULT_TEMPLATE.format(query=query, positives=positives, candidate=t) for t in texts]


class Stub:
    def __init__(self, verdict: Callable[[str], str], delay: float = 0.0, schema: bool | str = True) -> None:
        self.verdict, self.delay, self.schema = verdict, delay, schema
        self.faults: list[str] = []
        self.slow_seconds = 2.0
        self.requests: list[dict] = []
        self.in_flight = self.most_in_flight = 0  # answers being prepared at once
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with stub.lock:
                    stub.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                    fault = stub.faults.pop(0) if stub.faults else None
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault in ("429", "500"):
                    return self._send(int(fault), {"error": {"message": fault}}, {"Retry-After": "0"})
                form = (body.get("response_format") or {}).get("type")
                if form and not stub.schema:
                    return self._send(400, {"error": {"message": "response_format is not supported"}})
                if form == "json_schema" and stub.schema == "json_object":  # as llama-cpp-python's server answers
                    return self._send(500, {"error": {"message": "1 validation error: ('body', 'response_format', "
                                                                 "'type') Input should be 'text' or 'json_object'",
                                                      "type": "internal_server_error"}})
                with stub.lock:
                    stub.in_flight += 1
                    stub.most_in_flight = max(stub.most_in_flight, stub.in_flight)
                time.sleep(stub.slow_seconds if fault == "slow" else stub.delay)
                with stub.lock:
                    stub.in_flight -= 1
                prompt = body["messages"][-1]["content"]
                listed = pointwise(prompt)
                if listed is not None:  # a listwise request: each candidate as its own prompt would be answered
                    items = [{"id": k, "verdict": stub.verdict(p)} for k, p in enumerate(listed, 1)]
                    if fault == "missing-first":
                        items = items[1:]
                    content = "{not json" if fault == "malformed" else json.dumps({"verdicts": items})
                else:
                    content = "{not json" if fault == "malformed" else json.dumps({"verdict": stub.verdict(prompt)})
                self._send(200, {"choices": [{"message": {"role": "assistant", "content": content}}],
                                 "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 5}})

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Stub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
