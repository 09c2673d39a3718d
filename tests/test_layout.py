"""The layout holds what the code map (docs/architecture.md) promises: no import cycles, no import hidden in a function
(save the documented lazy ones), modules of readable size, AWS errors inspected in one place, and every
emulator fix inside the embedded cloud's package."""

from __future__ import annotations

import ast
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
MAX_LINES = 400
# Imported when called, for start-up time (`inv --list` loads no AWS library), never to dodge a cycle.
LAZY_IMPORTS: set[tuple[str, str]] = set()
# The one module that inspects AWS's error answers, and the one that turns the rest into messages.
CLIENT_ERROR_HOMES = {"deploy.aws.clients", "deploy.cli"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in DEPLOY.rglob("*.py"):
        name = ".".join(path.relative_to(DEPLOY.parent).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def _imports(tree: ast.AST, modules: dict[str, Path]) -> set[str]:
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            candidates = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        imported.update(name for name in candidates if name in modules)
    return imported


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of GRAPH (who imports whom), each as the path that closes it."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for other in sorted(graph.get(name, set())):
            if state.get(other) == 1:
                cycles.append([*stack[stack.index(other) :], other])
            elif other not in state:
                visit(other)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return cycles


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {name: _imports(ast.parse(path.read_text()), modules) - {name} for name, path in modules.items()}
    assert _cycles(graph) == []


def _package(module: str) -> str:
    """The package a module belongs to (deploy.aws, deploy.steps, ...); a module of deploy itself is its own."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and (DEPLOY / parts[1]).is_dir() else module


def test_no_import_cycles_between_packages() -> None:
    """deploy/aws, deploy/plans, deploy/steps, deploy/views, deploy/localcloud and each module of deploy itself
    (deploy/environment.py, deploy/config.py, ...) import one another in one direction only."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported = {_package(other) for other in _imports(ast.parse(path.read_text()), modules)}
        graph.setdefault(_package(name), set()).update(imported - {_package(name)})
    assert _cycles(graph) == []


def test_no_imports_inside_functions_but_the_documented_lazy_ones() -> None:
    found = set()
    for name, path in _modules().items():
        for function in ast.walk(ast.parse(path.read_text())):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                isinstance(node, ast.Import | ast.ImportFrom) for node in ast.walk(function)
            ):
                found.add((name, function.name))
    assert found == LAZY_IMPORTS


def test_modules_stay_readable() -> None:
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_aws_errors_are_inspected_in_one_place() -> None:
    inspecting = {name for name, path in _modules().items() if "ClientError" in path.read_text()}
    assert inspecting <= CLIENT_ERROR_HOMES


def test_emulator_fixes_live_in_the_embedded_cloud_package_only() -> None:
    outside = {
        name
        for name, path in _modules().items()
        if not name.startswith("deploy.localcloud") and name != "deploy.motoserver" and "moto" in path.read_text()
    }
    assert outside == set()


def test_the_code_map_names_every_module() -> None:
    readme = (DEPLOY.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    code_map = readme.split("## Code map", 1)[1].split("\n## ", 1)[0]
    missing = [
        str(path.relative_to(DEPLOY.parent))
        for path in sorted(DEPLOY.rglob("*.py"))
        if path.name != "__init__.py" and path.stem not in code_map
    ]
    assert missing == []
