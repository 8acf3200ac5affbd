"""The package's layering, read from the source with `ast`: data flows one way, and no module cycles.

    io -> data -> models -> evaluation -> {training, inference} -> experiments -> apps -> cli

A module may import its own package, any package below it, and the base modules (`_version`, `errors`,
`extras`, `runtime`). The root package sits on top, with the CLI: no library module imports it. training
and inference are siblings: neither imports the other. Function-local and TYPE_CHECKING imports count as
well: a lazy import still is a dependency. The one named exception is the root package's `mpliver.predict`
shortcut, which imports the predictor lazily.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ORDER = ["io", "data", "models", "evaluation", "training|inference", "experiments", "apps", "cli"]
BASE = {"mpliver._version", "mpliver.errors", "mpliver.extras", "mpliver.runtime"}
ALLOWED = {("mpliver", "mpliver.inference.predict")}  # the `mpliver.predict` shortcut (lazy, named)


def rank(module: str) -> tuple[int, str] | None:
    """(layer index, package) of a module; None for a base module (and for `mpliver.__main__`, the top)."""
    parts = module.split(".")
    if module in BASE:
        return None
    if len(parts) == 1 or parts[1] == "__main__":  # the root package and `python -m mpliver`
        return len(ORDER), "__main__"
    for i, layer in enumerate(ORDER):
        if parts[1] in layer.split("|"):
            return i, parts[1]
    raise AssertionError(f"{module}: not in any layer of {ORDER}; add its package to the order")


def module_sources(src: Path = SRC) -> dict[str, str]:
    """{dotted module name: source text} of every module of the package under `src`."""
    out = {}
    for path in sorted((src / "mpliver").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path.read_text()
    return out


def _imports_of(module: str, text: str, sources: dict[str, str]) -> set[tuple[str, bool]]:
    """(imported mpliver module, under TYPE_CHECKING) pairs of one module, relative imports resolved."""
    is_pkg = any(m.startswith(module + ".") for m in sources)
    found: set[tuple[str, bool]] = set()
    todo: list[tuple[ast.AST, bool]] = [(ast.parse(text), False)]
    while todo:
        node, typing_only = todo.pop()
        for child in ast.iter_child_nodes(node):
            t = typing_only or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = module.split(".")[: len(module.split(".")) - child.level + int(is_pkg)]
                    base = ".".join(pkg + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in child.names]
            for name in names:
                while name and name not in sources:  # `from pkg import function` -> pkg
                    name = name.rpartition(".")[0]
                if name and name != module and name.startswith("mpliver"):
                    found.add((name, t))
            todo.append((child, t))
    return found


def imports(sources: dict[str, str]) -> dict[str, set[tuple[str, bool]]]:
    """{module: {(imported mpliver module, under TYPE_CHECKING)}} of every module."""
    return {module: _imports_of(module, text, sources) for module, text in sources.items()}


def upward(sources: dict[str, str]) -> list[str]:
    """Every import against the layer order, as 'a imports b (layer x above y)'."""
    bad = []
    for module, targets in imports(sources).items():
        for target, _ in sorted(targets):
            if (module, target) in ALLOWED or target in BASE:
                continue
            src_rank, dst_rank = rank(module), rank(target)
            if src_rank is None:
                bad.append(f"{module} imports {target}: a base module imports only base modules")
            elif dst_rank[0] > src_rank[0] or (dst_rank[0] == src_rank[0] and dst_rank[1] != src_rank[1]):
                bad.append(f"{module} imports {target} ({dst_rank[1]} is not below {src_rank[1]})")
    return bad


def cycles(sources: dict[str, str]) -> list[list[str]]:
    """Strongly connected groups of modules (Tarjan), over run-time imports (TYPE_CHECKING ones left out)."""
    graph = {m: {t for t, typing_only in ts if not typing_only and (m, t) not in ALLOWED}
             for m, ts in imports(sources).items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_no_import_goes_up_the_layers():
    assert upward(module_sources()) == []


def test_no_import_cycles():
    assert cycles(module_sources()) == []


def test_every_package_has_a_layer():
    for module in module_sources():
        rank(module)  # raises for a package outside the order


@pytest.mark.parametrize(
    ("planted", "expected"),
    [
        ("from mpliver.inference.predict import predict\n",
         "mpliver.io.nifti imports mpliver.inference.predict"),
        ("def f():\n    from mpliver.cli import main\n", "mpliver.io.nifti imports mpliver.cli"),
        ("from mpliver.training.trainer import train\n",
         "mpliver.inference.bundle imports mpliver.training"),
    ],
)
def test_a_planted_upward_import_is_caught(planted, expected):
    sources = module_sources()
    target = "mpliver.inference.bundle" if "training" in planted else "mpliver.io.nifti"
    sources[target] = sources[target] + "\n" + planted
    assert any(line.startswith(expected) for line in upward(sources))


def test_a_planted_cycle_is_caught():
    sources = module_sources()
    sources["mpliver.io.geometry"] += "\nfrom mpliver.io.nifti import read_nifti\n"
    assert any({"mpliver.io.geometry", "mpliver.io.nifti"} <= set(group) for group in cycles(sources))
