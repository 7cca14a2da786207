"""The package's layout is the pipeline: a module imports only from its own stage or an earlier one, and no
two modules import each other, even through imports made inside functions (read from the source, not run)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "minenegs"

# the stages in the order data flows through them; a module may import from its own stage or an earlier one
STAGES = {
    "errors": 0, "records": 0, "settings": 0, "artifacts": 0, "recipe": 0,  # the base: what every stage speaks
    "distributed": 1,  # running a stage's work on Ray: knows nothing of the pipeline
    "inputs": 2, "encode": 3, "retrieve": 4, "select": 5, "write": 6, "report": 7,
    "api": 8, "compat": 8, "config": 8,  # one library call per command; the drop-in; recipes
    "cli": 9, "__init__": 10, "__main__": 10,
}


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The minenegs modules ``path`` imports, anywhere in it."""
    module = _name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("minenegs")}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if not target.startswith("minenegs"):
                continue
            for alias in node.names:  # `from . import x` may name a module
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _exists(candidate) else target)
    return {m for m in found if m != module}


def _exists(module: str) -> bool:
    path = PACKAGE.parent / Path(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _stage(module: str) -> int:
    parts = module.split(".")
    return 0 if len(parts) == 1 else STAGES[parts[1]]  # the root: the version, and exports loaded by name


GRAPH = {_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_belongs_to_a_stage():
    assert all(m == "minenegs" or m.split(".")[1] in STAGES for m in GRAPH), sorted(GRAPH)


def test_no_module_imports_from_a_later_stage():
    later = sorted(f"{m} -> {i}" for m, imports in GRAPH.items() for i in imports if _stage(i) > _stage(m))
    assert later == []


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for i in sorted(graph.get(m, ())):
            if state.get(i) == 1:
                cycles.append(" -> ".join(path[path.index(i):] + [i]))
            elif i in graph and not state.get(i):
                visit(i, path + [i])
        state[m] = 2

    for m in sorted(graph):
        if not state.get(m):
            visit(m, [m])
    return cycles


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_the_root_imports_nothing_itself():
    assert GRAPH["minenegs"] == set()


def test_the_checks_can_fail():
    """Imports inside functions are seen, and a cycle is found."""
    assert "minenegs.select.judges" in GRAPH["minenegs.select.engine"]  # imported inside a method
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a -> b -> c -> a"]


def test_no_module_over_350_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 350}
    assert long == {}


def test_no_command_body_over_40_lines():
    """A command parses, calls the library once and renders: its body (after the signature) stays short."""
    bodies = {}
    for node in ast.parse((PACKAGE / "cli" / "commands.py").read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.decorator_list:
            bodies[node.name] = node.end_lineno - node.body[0].lineno + 1
    assert len(bodies) >= 7 and max(bodies.values()) <= 40, bodies


def test_the_drop_in_translates_and_calls_the_library():
    """``compat.mine_hard_negatives`` translates sentence-transformers' arguments and makes one library call
    (``api.pairs``): its body (after the signature) stays short, and it runs no stage of its own."""
    tree = ast.parse((PACKAGE / "compat.py").read_text())
    (func,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "mine_hard_negatives"]
    calls = {f"{c.func.value.id}.{c.func.attr}" for c in ast.walk(func) if isinstance(c, ast.Call)
             and isinstance(c.func, ast.Attribute) and isinstance(c.func.value, ast.Name)}
    assert func.end_lineno - func.body[0].lineno + 1 <= 60
    assert "api.pairs" in calls and not {"encode_dataset", "build_pool", "OpenedPool"} & {
        c.func.id for c in ast.walk(func) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}


def test_the_command_line_stays_thin():
    """``cli/`` holds the commands and their option groups, derived from settings records: 300 lines in all."""
    lines = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in (PACKAGE / "cli").rglob("*.py")}
    assert sum(lines.values()) <= 300, lines
