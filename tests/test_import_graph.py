"""The ``service`` package has no import circle, lazy imports included.

A circle hidden behind an import inside a function (``service.config`` once imported the issuers file
parser and the fhirServer allowlist in a method because both imported ``ConfigError`` back from it)
still ties the modules together: each can be loaded only in a certain order. Every ``import`` in every
module counts here, wherever it stands, except those under ``if TYPE_CHECKING:`` (never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

SERVICE = Path(__file__).resolve().parent.parent / "service"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SERVICE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return hidden


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The ``service`` modules ``path`` imports (a name imported from a package counts as its submodule)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(SERVICE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, modules) for p in paths}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_service_modules() -> None:
    graph = import_graph()
    assert "service.config" in graph and "service.app" in graph
    assert "service.config_errors" in graph["service.auth.issuers"]
    assert "service.cds.pipeline" in graph["service.cds.assemble"]  # a relative import is read
    assert "service.engine.runtime" in graph["service.cds.pipeline"]


def test_the_service_package_has_no_import_circle() -> None:
    assert circles(import_graph()) == []


def test_a_lazy_import_back_is_a_circle() -> None:
    graph = import_graph()
    graph["service.config_errors"] = {"service.config"}  # config -> issuers -> config_errors -> config
    assert any({"service.auth.issuers", "service.config", "service.config_errors"} <= set(c) for c in circles(graph))


def test_configuration_errors_are_a_leaf() -> None:
    assert import_graph()["service.config_errors"] == set()


def test_the_rule_engine_and_its_catalogue_need_no_endpoint() -> None:
    """The rule engine, the rule catalogue and the reference are read by the console, ``/rules`` and the CLI:
    they depend on none of them (nor on the batch commands), so each can change without the others."""
    endpoints = ("service.app", "service.ops", "service.console", "service.batch", "service.cds", "service.fhir_api")
    graph = import_graph()
    wrong = {
        module: sorted(d for d in deps if d.startswith(endpoints))
        for module, deps in graph.items()
        if module.startswith("service.engine") and any(d.startswith(endpoints) for d in deps)
    }
    assert wrong == {}
