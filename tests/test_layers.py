"""The layer contract of labkit, checked on its real import graph (grimp, the engine of import-linter).

Imports point one way, down this list (ARCHITECTURE.md draws it). Modules of one layer may import each
other, but the package-level graph has no cycle, and every module of labkit belongs to a layer, so a
new module cannot slip past the contract. ``labkit/__init__.py`` is the facade on top of everything
(``labkit.lab_server()``, ``labkit.client()``) and is the one module outside the layers.
"""

from __future__ import annotations

import grimp
import pytest

#: Top to bottom. Each entry: the modules (under ``labkit.``) of one layer.
LAYERS: list[tuple[str, ...]] = [
    ("__main__",),                                                         # the command line
    ("capstone", "exercises", "gotchas", "classroom", "notebooks"),       # chapters and what runs them
    ("bench",),                                                            # benchmarks writing JSON
    ("latency", "vadeval", "vadtune", "widgets", "voicepage", "fakemic", "tutorial"),   # measurements, widgets
    ("server", "clients", "nginx", "services", "tls"),                     # adapters: sockets, processes
    ("realtime", "rooms", "streams", "chatview", "speechsets", "netem", "ratelimit", "auth", "joinlink", "timeline",
     "display"),                                                           # pure cores ...
    ("vad", "speechdata", "noises", "ephemeral"),                          # ... over the audio ones
    ("audio", "vadspectral", "vadtail"),                                              # PCM, WAV, devices, speech engines
    ("protocol",),                                                         # wire formats
    ("model",),                                                            # the simulated model
    ("config", "corpus", "resources"),                                     # settings and shipped data
]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("labkit", cache_dir=None)


def _layered(graph: grimp.ImportGraph, layers) -> set:
    return graph.find_illegal_dependencies_for_layers(
        layers=[grimp.Layer(*layer, independent=False) for layer in layers], containers={"labkit"})


def _describe(illegal) -> str:
    lines = []
    for dep in sorted(illegal, key=lambda d: (d.importer, d.imported)):
        for route in dep.routes:
            chain = " -> ".join([*route.heads, *route.middle, *route.tails]) if len(route.heads) == 1 \
                else f"{sorted(route.heads)} -> {list(route.middle)} -> {sorted(route.tails)}"
            lines.append(f"{dep.importer} imports up into {dep.imported}: {chain}")
    return "\n".join(lines)


def test_every_module_is_in_a_layer(graph):
    named = {f"labkit.{m}" for layer in LAYERS for m in layer}
    orphans = sorted(m for m in graph.modules
                     if m != "labkit" and not any(m == n or m.startswith(n + ".") for n in named))
    assert not orphans, f"modules in no layer (add them to LAYERS and ARCHITECTURE.md): {orphans}"


def test_imports_point_down_the_layers(graph):
    illegal = _layered(graph, LAYERS)
    assert not illegal, "upward imports:\n" + _describe(illegal)


def test_no_import_cycles_between_packages(graph):
    """Package-level: ``labkit.a`` (with everything under it) never imports back from ``labkit.b``'s
    users. Within a layer this is what keeps siblings one way."""
    tops = {m.split(".")[1] for m in graph.modules if m != "labkit"}
    edges = {t: set() for t in tops}
    for module in graph.modules:
        if module == "labkit":
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = module.split(".")[1], imported.split(".")[1] if imported != "labkit" else "labkit"
            if a != b:
                edges[a].add(b)
    cycles = []
    for start in sorted(tops):                        # a path from start back to itself
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join(path + [start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    assert not cycles, "import cycles between labkit's packages:\n" + "\n".join(sorted(set(cycles)))


def test_the_contract_catches_an_upward_import(graph):
    """Proof that the check can fail: an import from a core up into the server is reported."""
    graph = graph.copy() if hasattr(graph, "copy") else grimp.build_graph("labkit", cache_dir=None)
    graph.add_import(importer="labkit.vad", imported="labkit.server.app", line_number=1, line_contents="x")
    illegal = _layered(graph, LAYERS)
    assert {(d.importer, d.imported) for d in illegal} == {("labkit.vad", "labkit.server")}


def _private_names_crossing(package_dir) -> list[str]:
    """``from <a labkit module> import _name`` and ``<a labkit module or name>._name`` in ``package_dir``'s
    sources: a private name used outside the module that defines it."""
    import ast

    found = []
    for path in sorted(package_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("labkit")):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.name}:{node.lineno}: imports {alias.name} from {node.module or '.'}")
                    imported.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                imported |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("labkit")}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                found.append(f"{path.name}:{node.lineno}: uses {node.value.id}.{node.attr}")
    return found


def test_no_private_name_crosses_a_module(tmp_path):
    from pathlib import Path

    import labkit

    assert _private_names_crossing(Path(labkit.__file__).parent) == []
    # and the check can fail: both ways of reaching into another module are reported
    (tmp_path / "a.py").write_text("from .b import _helper\nfrom . import c\nc._state = 1\n")
    assert [f.split(": ", 1)[1] for f in _private_names_crossing(tmp_path)] == ["imports _helper from b",
                                                                                "uses c._state"]
