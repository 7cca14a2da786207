"""Bad input fails before any work, with one line naming the file, the line and the fix, and exit 2."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from typer.testing import CliRunner

from minenegs.cli import app
from minenegs.inputs.dataset import load_dataset
from minenegs.errors import InputError

CORPUS = '{"_id": "d1", "title": "", "text": "first doc"}\n{"_id": "d2", "title": "T", "text": "second doc"}\n'
QUERIES = '{"_id": "q1", "text": "a query"}\n'
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\n"


def beir(tmp_path: Path, corpus: str | bytes = CORPUS, queries: str | bytes = QUERIES, qrels: str = QRELS) -> Path:
    folder = tmp_path / "data"
    (folder / "qrels").mkdir(parents=True)
    for name, content in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        target = folder / name
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    (folder / "qrels" / "train.tsv").write_text(qrels)
    return folder


def one_file(name: str, content: str | bytes, role: str = "corpus"):
    """A case whose input is a single file with this name and content, passed as ``role``."""
    def make(tmp_path: Path) -> dict:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return {role: path}
    return make


def _parquet(tmp_path: Path, columns: dict) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), tmp_path / "corpus.parquet")
    return {"corpus": tmp_path / "corpus.parquet"}


def folder_as_file(tmp_path: Path) -> dict:
    (tmp_path / "corpus.jsonl").mkdir()
    return {"corpus": tmp_path / "corpus.jsonl"}


CASES = {
    "missing text column": (lambda t: {"data": beir(t, corpus='{"_id": "d1", "words": "x"}\n')},
                            r"corpus.jsonl: has no text column .*name it with --text-column"),
    "missing field on a later line": (lambda t: {"data": beir(t, corpus='{"_id": "d1", "text": "x"}\n{"_id": "d2"}\n')},
                                      r"corpus.jsonl line 2: has no field 'text'"),
    "duplicate id, different text": (
        lambda t: {"data": beir(t, corpus=CORPUS + '{"_id": "d1", "text": "not the first doc"}\n')},
        r"corpus.jsonl line 3: document id 'd1' appears again with a different text \(first at line 1\)"),
    "qrels name an unknown document": (lambda t: {"data": beir(t, qrels=QRELS + "q1\tzzz\t1\n")},
                                       r"train.tsv line 3: names document 'zzz', which is not in the corpus"),
    "qrels name an unknown query": (lambda t: {"data": beir(t, qrels=QRELS + "q9\td1\t1\n")},
                                    r"train.tsv line 3: names query 'q9', which is not among the queries"),
    "qrels score not a number": (lambda t: {"data": beir(t, qrels=QRELS + "q1\td2\thigh\n")},
                                 r"train.tsv line 3: relevance 'high' is not a whole number"),
    "empty document text": (lambda t: {"data": beir(t, corpus=CORPUS + '{"_id": "d3", "title": " ", "text": "  "}\n')},
                            r"corpus.jsonl line 3: document 'd3' has an empty text"),
    "empty query text": (lambda t: {"data": beir(t, queries='{"_id": "q1", "text": ""}\n')},
                         r"queries.jsonl line 1: query 'q1' has an empty text"),
    "empty id": (lambda t: {"data": beir(t, corpus='{"_id": "", "text": "x"}\n')},
                 r"corpus.jsonl line 1: document has an empty id"),
    "invalid UTF-8": (lambda t: {"data": beir(t, corpus=CORPUS.encode() + b'{"_id": "d3", "text": "caf\xe9"}\n')},
                      r"corpus.jsonl line 3: invalid UTF-8 .*re-encode the file as UTF-8"),
    "broken JSON": (lambda t: {"data": beir(t, corpus=CORPUS + '{"_id": "d3", "text": \n')},
                    r"corpus.jsonl line 3: not valid JSON"),
    "JSON line not an object": (lambda t: {"data": beir(t, corpus=CORPUS + '["d3", "text"]\n')},
                                r"corpus.jsonl line 3: is not a JSON object"),
    "empty file": (lambda t: {"data": beir(t, queries="")}, r"queries.jsonl: file is empty"),
    "header-only file": (one_file("corpus.csv", "_id,text\n"), r"corpus.csv: has no data rows"),
    "ragged CSV": (one_file("corpus.csv", "_id,text\nd1,hello\nd2,hello,again\n"), r"corpus.csv line 3: has 3 fields but the header has 2"),
    "missing file": (lambda t: {"corpus": t / "nope.jsonl"}, r"nope.jsonl: no such file"),
    "folder instead of file": (folder_as_file, r"corpus.jsonl: is a folder without .arrow or .parquet files; give a file"),
    "corrupt gzip": (one_file("corpus.jsonl.gz", gzip.compress(CORPUS.encode())[:20]), r"corpus.jsonl.gz: cannot be read"),
    "not parquet": (one_file("corpus.parquet", b"PAR1 this is not parquet"), r"corpus.parquet: is not a readable Parquet file"),
    "unknown suffix": (one_file("corpus.xml", "<doc/>"), r"corpus.xml: unknown file type"),
    "missing split": (lambda t: {"data": beir(t), "split": "dev"}, r"has no qrels for split 'dev'; choose one of: train"),
    "not a BEIR folder": (lambda t: {"data": t}, r"has no corpus.jsonl"),
    "pair with empty positive": (one_file("pairs.jsonl", '{"query": "q", "positive": "p"}\n{"query": "q2", "positive": "  "}\n', "data"),
                                 r"pairs.jsonl line 2: has an empty positive"),
    "duplicate query id, different text": (
        lambda t: {"data": beir(t, queries=QUERIES + '{"_id": "q1", "text": "another query"}\n')},
        r"queries.jsonl line 2: query id 'q1' appears again with a different text \(first at line 1\)"),
    "qrels without a document column": (lambda t: {"data": beir(t, qrels="query-id\tscore\nq1\t1\n")},
                                        r"train.tsv: has no document id column"),
    "TREC qrels with a short line": (lambda t: {"data": beir(t, qrels="q1 0 d1 1\nq1 d2 1\n")},
                                     r"train.tsv line 2: has 3 fields, expected 4"),
    "TREC qrels naming an unknown document": (lambda t: {"data": beir(t, qrels="q1 0 d1 1\nq1 0 d9 1\n")},
                                              r"train.tsv line 2: names document 'd9'"),
    "id that is a list": (lambda t: {"data": beir(t, corpus='{"_id": ["d1"], "text": "x"}\n')},
                          r"corpus.jsonl line 1: id is a list, not a string"),
    "text that is an object": (lambda t: {"data": beir(t, corpus='{"_id": "d1", "text": {"en": "x"}}\n')},
                               r"corpus.jsonl line 1: text is a dict, not a string"),
    "pair file without a positive column": (one_file("pairs.jsonl", '{"query": "q", "answer": "a"}\n', "data"),
                                            r"pairs.jsonl: has no positive column"),
    "parquet without an id column": (lambda t: _parquet(t, {"text": ["a", "b"]}), r"corpus.parquet: has no id column"),
    "blank lines only": (one_file("corpus.jsonl", "\n\n  \n"), r"corpus.jsonl: has no data rows"),
    "qrels without queries": (lambda t: {"corpus": beir(t) / "corpus.jsonl", "qrels": beir(t / "x") / "qrels/train.tsv"},
                              r"qrels were given without queries"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_library_raises_one_line_input_error(tmp_path, case):
    make, pattern = CASES[case]
    kwargs = make(tmp_path)
    with pytest.raises(InputError, match=pattern) as info:
        load_dataset(kwargs.pop("data", None), **kwargs)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("case", list(CASES))
def test_cli_exits_2_with_one_line_and_writes_nothing(tmp_path, case):
    make, pattern = CASES[case]
    kwargs = make(tmp_path)
    args = ["encode", "--output", str(tmp_path / "out")]
    if kwargs.get("data") is not None:
        args.insert(1, str(kwargs["data"]))
    for key in ("corpus", "queries", "qrels", "split"):
        if key in kwargs:
            args += [f"--{key}", str(kwargs[key])]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minenegs: error: "), result.stderr
    assert not (tmp_path / "out").exists()


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30


def test_byte_order_mark_is_read_not_refused(tmp_path):
    folder = beir(tmp_path, corpus=b"\xef\xbb\xbf" + CORPUS.encode())
    assert load_dataset(folder).corpus.ids == ["d1", "d2"]


def test_existing_output_needs_force(tmp_path, samples):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = CliRunner().invoke(app, ["encode", str(samples), "--output", str(out)])
    assert result.exit_code == 2
    assert "already exists; pass --force" in result.stderr
    assert (out / "keep.txt").read_text() == "precious"


def test_unknown_precision_is_bad_usage(tmp_path, samples):
    result = CliRunner().invoke(app, ["encode", str(samples), "-o", str(tmp_path / "o"), "--precision", "fp8"])
    assert result.exit_code == 2
    assert "--precision fp8: choose one of auto, fp32, bf16" in result.stderr


# -- every numeric option is checked before work starts -----------------------------------------------------
def _numeric_options():
    """(command, flag, type, minimum) for every int and float option of every command."""
    import typer

    group = typer.main.get_command(app)
    for name, command in sorted(group.commands.items()):
        for param in command.params:
            desc, click_type = getattr(param, "type_descriptor", None), getattr(param, "type", None)
            if desc is not None:  # typer 0.29 on
                kind = desc.annotation
            else:  # typer 0.26-0.28: click's parameter types
                kind = {"integer": int, "float": float}.get(getattr(click_type, "name", "").split(" ")[0])
            if kind in (int, float) and param.opts[0].startswith("--"):
                yield name, param.opts[0], kind, param.min if hasattr(param, "min") else getattr(click_type, "min", None)


def _invoke_with(tmp_path, command: str, flag: str, value: str):
    """``command`` with placeholder arguments (paths that do not exist) and ``flag value``."""
    import typer

    cmd = typer.main.get_command(app).commands[command]
    args = [command]
    for p in cmd.params:
        if p.param_type_name == "argument" and p.required:
            args.append(str(tmp_path / "missing"))
        elif p.param_type_name == "option" and p.required:
            args += [p.opts[0], str(tmp_path / "out.parquet")]
    return CliRunner().invoke(app, args + [flag, value])


NUMERIC = list(_numeric_options())


def test_the_numeric_options_are_many():
    assert len(NUMERIC) >= 30 and {"--depth", "--nlist", "--simans-a", "--max-leak"} <= {f for _, f, _, _ in NUMERIC}


@pytest.mark.parametrize("command,flag,kind,minimum", NUMERIC, ids=[f"{c} {f}" for c, f, _, _ in NUMERIC])
def test_nan_infinity_and_out_of_range_exit_2_naming_the_option(tmp_path, command, flag, kind, minimum):
    values = ["nan", "inf", "-inf"] + ([str(minimum - 1)] if minimum is not None else [])
    if flag == "--seed":
        values = ["nan", "1.5"]
    for value in values:
        result = _invoke_with(tmp_path, command, flag, value)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2, (command, flag, value, result.output)
        assert len(lines) == 1 and lines[0].startswith("minenegs: error: ") and flag in lines[0], (value, lines)
    assert not (tmp_path / "out.parquet").exists()


def test_unterminated_quote_is_reported_at_its_line(tmp_path):
    (tmp_path / "c.csv").write_text('id,text\nd1,first\nd2,"second doc\nd3,third\nd4,fourth\n')
    result = CliRunner().invoke(app, ["encode", "--corpus", str(tmp_path / "c.csv"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "c.csv line 3: a quoted field opened here is never closed (unterminated quote)" in result.stderr
    assert not (tmp_path / "o").exists()
