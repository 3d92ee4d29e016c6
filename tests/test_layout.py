"""The shape of the code: which way imports run, and that nothing imports in a circle.

cli -> launch -> runners -> (registry) -> algorithms -> genlab.algorithm / hparams / context / errors / genlab.rl /
algorithms.common. A method imports only those (an allow-list) and its own package; a runner never imports a method
(only the registry names them); the RL library never imports a runner; no two modules import each other, directly
or around a loop. The graph follows importlib too: a ``"package.module:attr"`` string (the registry's lazy
references) is an edge, so a loop through the registry is a loop.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import ROOT

from genlab import registry

SOURCES = [ROOT / "platform" / "genlab", ROOT / "algorithms"]
LAZY_REF = re.compile(r"^([A-Za-z_][\w.]*):[A-Za-z_]\w*$")
"""A lazy reference the registry imports with importlib."""
METHOD_MAY_IMPORT = ("genlab.algorithm", "genlab.hparams", "genlab.errors", "genlab.context", "genlab.rl",
                     "algorithms.common")
"""Everything of the platform a method may import (and itself, and third-party packages)."""


def _module_name(path: Path) -> str:
    root = ROOT / "platform" if path.is_relative_to(ROOT / "platform") else ROOT
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the genlab/algorithms modules it imports (at any depth of the file: lazy imports count), and those
    its ``"module:attr"`` strings name."""
    modules = {_module_name(p): p for src in SOURCES for p in src.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and LAZY_REF.match(node.value):
                targets = [LAZY_REF.match(node.value).group(1)]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


GRAPH = _imports()


def test_the_graph_follows_the_registrys_lazy_references():
    assert "algorithms.gail.hparams" in GRAPH["genlab.registry"]
    assert "algorithms.improved_gan.algorithm" in GRAPH["genlab.registry"]


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
                                           and m.count(".") >= 1 and m.split(".")[1] != "common"}))
def test_a_method_imports_only_its_allow_list(method):
    own = f"algorithms.{method}"
    for module, deps in GRAPH.items():
        if module == own or module.startswith(own + "."):
            bad = [d for d in deps if not (d == own or d.startswith(own + ".") or d == "genlab"
                                           or any(d == a or d.startswith(a + ".") for a in METHOD_MAY_IMPORT))]
            assert not bad, f"{module} imports {bad}; a method may import only {', '.join(METHOD_MAY_IMPORT)}"


def test_algorithms_common_imports_no_method():
    for module, deps in GRAPH.items():
        if module.startswith("algorithms.common"):
            bad = [d for d in deps if d.startswith("algorithms.") and not d.startswith("algorithms.common")]
            assert not bad, f"{module} imports {bad}"


def test_runners_and_the_rl_library_reach_methods_only_through_the_registry():
    for module, deps in GRAPH.items():
        if module.startswith(("genlab.",)) and module != "genlab.registry":
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
        assert set(hp.progress) <= set(registry.metrics(name)), f"{name}: progress shows a metric it never reports"
        assert isinstance(registry.impl_class(name), type), name  # imports; always a class
