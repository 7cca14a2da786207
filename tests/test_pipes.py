"""Composing with the shell: JSON lines on stdin and stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

MINENEGS = [sys.executable, "-m", "minenegs"]
PAIRS = "".join(json.dumps(p) + "\n" for p in [
    {"query": "what is a cat", "positive": "a cat is a small feline"},
    {"query": "what is a dog", "positive": "a dog is a loyal canine"},
    {"query": "where do fish live", "positive": "fish live in water"},
    {"query": "can birds fly", "positive": "birds can fly"},
])


def run(args, stdin="", env=None):
    return subprocess.run(MINENEGS + args, input=stdin, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_pairs_on_stdin_negatives_on_stdout(tmp_path):
    env = {"MINENEGS_CACHE": str(tmp_path / "cache")}
    enc = run(["encode", "-", "-o", str(tmp_path / "emb"), "-q"], PAIRS, env)
    assert enc.returncode == 0, enc.stderr
    mined = run(["mine", str(tmp_path / "emb"), "-o", "-", "--num-negatives", "2", "--format", "flag-jsonl", "--json"],
                env=env)
    assert mined.returncode == 0, mined.stderr
    rows = [json.loads(line) for line in mined.stdout.splitlines()]
    assert len(rows) == 4 and all(len(r["neg"]) == 2 and r["pos"][0] not in r["neg"] for r in rows)
    summary = json.loads(mined.stderr.strip().splitlines()[-1])  # with -o -, the summary goes to stderr
    assert summary["queries"] == 4 and summary["rows"] == 4
    ntuple = run(["mine", str(tmp_path / "emb"), "-o", "-", "--num-negatives", "1", "-q"], env=env)
    assert [set(json.loads(line)) for line in ntuple.stdout.splitlines()][0] == {"anchor", "positive", "negative_1"}


def test_bad_stdin_is_named_stdin(tmp_path):
    bad = run(["encode", "--corpus", "-", "-o", str(tmp_path / "x")], '{"_id": 1}\n')
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("minenegs: error: <stdin>: has no text column (looked for text, contents, content, "
                                  "passage, body; it has: _id); name it with --text-column")
