"""The shape of the code: which way imports run, and that nothing imports in a circle.

cli -> runners -> (registry) -> algorithms -> genlab.algorithm / genlab.hparams / genlab.rl / algorithms.common.
A method never imports a runner, tracking, data or the CLI; a runner never imports a method (only the registry
names them); the RL library never imports a runner; no two modules import each other, directly or around a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT

from genlab import registry

SOURCES = [ROOT / "platform" / "genlab", ROOT / "algorithms"]


def _module_name(path: Path) -> str:
    root = ROOT / "platform" if path.is_relative_to(ROOT / "platform") else ROOT
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the genlab/algorithms modules it imports (at any depth of the file: lazy imports count)."""
    modules = {_module_name(p): p for src in SOURCES for p in src.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


GRAPH = _imports()


def test_no_import_cycles():
    visiting, done, cycles = set(), set(), []

    def visit(node: str, path: list[str]) -> None:
        if node in done:
            return
        if node in visiting:
            cycles.append(path[path.index(node):] + [node])
            return
        visiting.add(node)
        for dep in sorted(GRAPH[node]):
            # a package's __init__ importing nothing, its modules importing the package name: not a cycle of code
            if not node.startswith(dep + "."):
                visit(dep, path + [dep])
        visiting.discard(node)
        done.add(node)

    for node in sorted(GRAPH):
        visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("method", sorted({m.split(".")[1] for m in GRAPH if m.startswith("algorithms.")
                                           and m.count(".") >= 1}))
def test_methods_import_no_runner_tracking_data_or_cli(method):
    forbidden = ("genlab.runners", "genlab.tracking", "genlab.data", "genlab.cli", "genlab.jobs")
    for module, deps in GRAPH.items():
        if module.startswith(f"algorithms.{method}"):
            bad = [d for d in deps if d.startswith(forbidden)]
            assert not bad, f"{module} imports {bad}"


def test_runners_and_the_rl_library_reach_methods_only_through_the_registry():
    for module, deps in GRAPH.items():
        if module.startswith(("genlab.runners", "genlab.rl", "genlab.cli", "genlab.config", "genlab.specs",
                              "genlab.tracking")):
            bad = [d for d in deps if d.startswith("algorithms")]
            assert not bad, f"{module} imports {bad}"
        if module.startswith("genlab.rl"):
            assert not [d for d in deps if d.startswith("genlab.runners")], module


def test_every_registered_method_resolves_and_declares_its_metrics():
    for name in registry.names():
        hp = registry.hparams_class(name)
        assert registry.metrics(name), name
        assert len(set(registry.metrics(name))) == len(registry.metrics(name)), f"{name}: a metric listed twice"
        assert all("/" in m for m in hp.metrics), f"{name}: metric names are namespaced (loss/..., eval/...)"
        registry.impl_class(name)  # imports
