"""The package's shape: no module imports another that (directly or through others) imports it
back at module level."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fmnist_cluster"


def _module_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        deps = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module level only
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fmnist_cluster"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("fmnist_cluster")}
        # importing a.b.c runs the packages a and a.b first
        graph[name] = {".".join(d.split(".")[:i]) for d in deps for i in range(2, d.count(".") + 2)}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for dep in graph.get(node, ()):
            # a module runs inside its own package: that edge is no cycle
            if dep not in graph or dep == node or node.startswith(dep + "."):
                continue
            if state.get(dep) == "open":
                found.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    graph = _module_graph()
    for module in (  # a module of every package, so that the graph is known to reach into each
        "fmnist_cluster.explain.search",
        "fmnist_cluster.cluster.stage",
        "fmnist_cluster.report.render",
        "fmnist_cluster.config.base",
        "fmnist_cluster.config.cluster",
        "fmnist_cluster.data.idx",
        "fmnist_cluster.data.load",
        "fmnist_cluster.artefacts.files",
        "fmnist_cluster.artefacts.stage_run",
        "fmnist_cluster.som.grid",
        "fmnist_cluster.som.batch",
        "fmnist_cluster.som.stage",
    ):
        assert module in graph
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_split_packages_re_export_every_public_name() -> None:
    """``from fmnist_cluster.<package> import X`` works for every class and function of its modules."""
    import importlib
    import inspect
    import pkgutil

    for package_name in ("fmnist_cluster.config", "fmnist_cluster.data", "fmnist_cluster.artefacts"):
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package_name}.{info.name}")
            for name, obj in vars(module).items():
                defined_here = getattr(obj, "__module__", None) == module.__name__
                if not name.startswith("_") and defined_here and (inspect.isclass(obj) or inspect.isfunction(obj)):
                    assert name in package.__all__ and getattr(package, name) is obj, f"{package_name}.{name}"
