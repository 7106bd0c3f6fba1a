"""The import graph of ``gaitcli/`` follows the layer order of docs/architecture.md.

Every ``import`` and ``from ... import`` in every module counts, including those inside
functions (a deferred import is still a dependency). A module may import from its own layer or
a lower one, never a higher one; ``gaitcli.data`` and ``gaitcli.models`` (both layer 1) never
import each other; and the module graph has no cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gaitcli"

# (prefix, layer): the longest matching prefix decides. Keep in step with docs/architecture.md.
LAYERS: list[tuple[str, int]] = [
    ("gaitcli", 0),  # the package docstring and version
    ("gaitcli.errors", 0),
    ("gaitcli.fileio", 0),
    ("gaitcli.paths", 0),
    ("gaitcli.progress", 0),
    ("gaitcli.imaging", 0),
    ("gaitcli.runtime", 0),
    ("gaitcli.data", 1),
    ("gaitcli.synth", 1),
    ("gaitcli.video", 1),
    ("gaitcli.models", 1),
    ("gaitcli.config_schema", 2),
    ("gaitcli.config_types", 2),
    ("gaitcli.config", 2),
    ("gaitcli.config_doc", 2),
    ("gaitcli.schedule", 2),
    ("gaitcli.build", 2),
    ("gaitcli.convert", 2),
    ("gaitcli.evaluation", 3),
    ("gaitcli.compare", 3),
    ("gaitcli.training", 4),
    ("gaitcli.deploy", 5),
    ("gaitcli.zoo", 5),
    ("gaitcli.demo", 6),
    ("gaitcli.cli", 6),
    ("gaitcli.cli_video", 6),
    ("gaitcli.cli_common", 6),
    ("gaitcli.cli_compare", 6),
    ("gaitcli.cli_zoo", 6),
    ("gaitcli.__main__", 6),
]
SEPARATE = ("gaitcli.data", "gaitcli.models")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    best = ""
    for prefix, _ in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    if not best or (best == "gaitcli" and module != "gaitcli"):
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")
    return dict(LAYERS)[best]


def imports_of(path: Path) -> Iterator[str]:
    """Every gaitcli module ``path`` imports, absolute or relative, at any depth of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            names = [base]
        else:
            continue
        yield from (n for n in names if n == "gaitcli" or n.startswith("gaitcli."))


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for target in imports_of(path):
            # ``from gaitcli.models import create_model`` names the package; a submodule import
            # ``from gaitcli.data import walker`` names gaitcli.data.walker if that file exists.
            targets.add(target)
        edges[name] = {t for t in targets if t != name}
    return edges


def test_no_import_from_a_higher_layer() -> None:
    wrong = []
    for source, targets in graph().items():
        for target in targets:
            if layer_of(target) > layer_of(source):
                wrong.append(
                    f"{source} (layer {layer_of(source)}) imports {target} (layer {layer_of(target)})"
                )
    assert not wrong, "\n".join(sorted(wrong))


def test_data_and_models_stay_apart() -> None:
    wrong = []
    for source, targets in graph().items():
        for a, b in (SEPARATE, SEPARATE[::-1]):
            if source.startswith(a) and any(t == b or t.startswith(b + ".") for t in targets):
                wrong.append(f"{source} imports {b}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycle() -> None:
    edges = graph()
    known = set(edges)

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    adjacency = {s: {r for t in ts if (r := resolve(t)) and r != s} for s, ts in edges.items()}
    # A package's __init__ importing its own submodules is how packages export names; an edge
    # from a submodule back to its package __init__ is the only way such a pair can cycle, and
    # that back edge is what we forbid below.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(adjacency[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(adjacency):
        if node not in state:
            visit(node)


def test_the_checker_sees_deferred_and_relative_imports(tmp_path: Path) -> None:
    """The walker must not miss imports hidden in functions, or it would pass anything."""
    source = PACKAGE / "data" / "_probe_for_test.py"
    text = "def f():\n    from ..training import trainer\n    import gaitcli.cli\n"
    source.write_text(text)
    try:
        found = set(imports_of(source))
    finally:
        source.unlink()
    assert found == {"gaitcli.training", "gaitcli.cli"}
