"""``--help``: every declared help text whole, options in panels, flags as flags, choices as choices, option
names never cut, and a few example command lines at the end that use only options the command has."""

from __future__ import annotations

import shlex

import pytest
import typer.main
from typer.testing import CliRunner

from minenegs.cli import app

ROOT = typer.main.get_command(app)
COMMANDS = {name: ROOT.commands[name] for name in ROOT.commands}


def _help(args: list[str], columns: int) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": str(columns), "TERMINAL_WIDTH": None})
    assert result.exit_code == 0, result.output
    return result.output


def _declared(command) -> list[str]:
    return [p.help for p in command.params if getattr(p, "help", None)]


@pytest.mark.parametrize("name", [None, *COMMANDS])
def test_every_declared_help_text_is_shown_whole(name):
    command = ROOT if name is None else COMMANDS[name]
    shown = _help([] if name is None else [name], columns=2000)
    for text in [*_declared(command), " ".join(command.help.split())]:
        assert text in shown, f"{name} --help lost: {text!r}"
    assert "<bool>" not in shown and "<str>" not in shown


@pytest.mark.parametrize("name", [None, *COMMANDS])
def test_examples_end_the_help_and_use_options_the_command_has(name):
    command = ROOT if name is None else COMMANDS[name]
    shown = _help([] if name is None else [name], columns=2000)
    panel = shown[shown.index("─ Examples ─"):].splitlines()
    lines = [line.strip(" │") for line in panel[1:] if line.startswith("│")]
    assert not shown[shown.index("─ Examples ─"):].split("╰")[1].strip("─╯ \n")  # nothing after the examples
    assert 2 <= len(lines) <= 3 and all(line.startswith("minenegs ") for line in lines)
    assert lines == [line.strip() for line in command.epilog.strip().splitlines()]
    for line in lines:
        words = shlex.split(line.split("|")[0])
        sub = COMMANDS[words[1]]
        if name is not None:
            assert words[1] == name
        known = {o for p in sub.params + ROOT.params for o in [*p.opts, *getattr(p, "secondary_opts", [])]}
        for word in words:
            if word.startswith("-") and word != "-":
                assert word in known, f"{line}: {word} is not an option of {words[1]}"


def test_mine_help_groups_options_in_panels_and_shows_choices_and_flags():
    from minenegs.select.strategies import STRATEGIES
    from minenegs.write.outputs import FORMATS

    shown = _help(["mine"], columns=2000)
    assert "pip install 'minenegs[ray]'" in shown
    titles = ["Arguments", "Input and output", "Retrieval and index", "Strategy", "Filters", "Judges", "Ray"]
    at = [shown.index(f"─ {title} ─") for title in titles]
    assert at == sorted(at)
    row = {line.split()[1]: line for line in shown.splitlines() if line.startswith("│ --")}
    assert "|".join(STRATEGIES) in row["--strategy"] and "|".join(FORMATS) in row["--format"]
    assert row["--scores"].split()[2] == "Add"  # a flag takes no value: nothing between its name and its help
    assert "[default: --judge-guard]" in shown and "--judge-guard / --no-judge-guard" in shown
    filters = shown[shown.index("─ Filters ─"):shown.index("─ Judges ─")]
    assert "--relative-margin" in filters and "--depth" not in filters


@pytest.mark.parametrize("columns", [60, 80])
def test_option_names_are_never_cut_at_a_narrow_width(columns):
    shown = _help(["mine"], columns=columns)
    assert "…" not in shown
    for p in COMMANDS["mine"].params:
        for flag in p.opts:
            assert flag in shown


def test_every_option_a_message_names_exists():
    """Error messages and notes name options the user can type: each ``--flag`` in the package's strings (its
    docstrings aside) is an option of some command, or a flag of the ``ray start`` command a message tells to run."""
    import ast
    import re
    from pathlib import Path

    import minenegs

    known = {o for c in [ROOT, *COMMANDS.values()] for p in c.params for o in [*p.opts, *getattr(p, "secondary_opts", [])]}
    known.add("--help")
    named: dict[str, str] = {}
    package = Path(minenegs.__file__).parent
    for path in package.rglob("*.py"):
        if path.name == "head.py":  # builds `ray start` command lines
            continue
        tree = ast.parse(path.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))
                and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                text = re.sub(r"ray start( --[a-z-]+)+", "", node.value)
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text):
                    named.setdefault(flag, str(path.relative_to(package)))
    assert {f: where for f, where in named.items() if f not in known} == {}


def test_options_are_settings_record_fields_or_filters_but_for_a_few_of_the_commands_own():
    """Each option shows the help of a settings record's field (:mod:`minenegs.settings`; the records
    ``minenegs.cli.options`` uses) or of a filter of the registry; ``cli/`` declares only the arguments and these."""
    import dataclasses

    import minenegs.cli.options as options
    from minenegs.select.filters import REGISTRY

    records = [v for v in vars(options).values() if isinstance(v, type) and dataclasses.is_dataclass(v)]
    helps = [f.metadata["help"] for r in records for f in dataclasses.fields(r) if "help" in f.metadata]
    helps += [f.help for f in REGISTRY.values() if f.flag]
    assert {"Writing", "EncodeSettings", "Shown", "JudgeSpecs", "Judging", "MineParams"} <= {r.__name__ for r in records}
    own = {"--keep-duplicates", "--pool", "--plot", "--set"}
    for name, command in COMMANDS.items():
        declared = {p.opts[0] for p in command.params if p.param_type_name == "option"
                    and not any(h and h in (p.help or "") for h in helps)}
        assert declared <= own, f"{name}: {sorted(declared - own)} declared in cli/, not derived from a record"
    required = {name: sorted(p.opts[0] for p in c.params if p.required and p.param_type_name == "option")
                for name, c in COMMANDS.items()}
    assert required["mine"] == required["filter"] == required["encode"] == ["--output"]  # a record's field, no default
