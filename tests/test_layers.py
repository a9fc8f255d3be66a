"""The package's layers: no module imports a layer above its own, and no imports form a
cycle.

Layer order, bottom to top: ``base`` < ``models`` < ``rtl`` < ``sim`` < ``tb`` (tests sit
on top of everything). A module's layer is its first package below ``hyflexpim``
(``hyflexpim.base`` and the package itself are ``base``; ``hyflexpim.__main__``, the
command entry point, is ``sim``). Every ``import`` statement counts, also those inside
functions: an import deferred to run time is still a dependency.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "hyflexpim"
LAYERS = ("base", "models", "rtl", "sim", "tb")
SUBPACKAGES = ("models", "rtl", "sim", "tb")

# Known cycles that another change removes; each entry is the sorted modules of one
# cycle, with why. Remove an entry once its cycle is gone.
KNOWN_CYCLES = set()   # none: every import cycle is a failure


def _modules():
    """``{dotted name: path}`` of every module of the package."""
    mods = {}
    for path in [ROOT / "__init__.py", ROOT / "__main__.py", ROOT / "base.py"]:
        name = PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"
        mods[name] = path
    for sub in SUBPACKAGES:
        for path in sorted((ROOT / sub).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join((PACKAGE,) + parts)] = path
    return mods


MODULES = _modules()


def _is_package(name):
    return MODULES[name].name == "__init__.py"


def _resolve(module, level, target):
    """Absolute name of ``from <level dots><target> import ...`` inside ``module``."""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    if level > 1:
        base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _imports(name):
    """Project modules that module ``name`` imports (submodules named in ``from X import
    y`` count as imports of ``X.y``)."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(name, node.level, node.module) if node.level else node.module
            if target is None:
                continue
            subs = {f"{target}.{a.name}" for a in node.names}
            found.update(subs)
            # ``from pkg import submodule`` imports the submodule, not (for this graph)
            # the package; a name that is no submodule is an import of ``target``
            if not subs <= set(MODULES):
                found.add(target)
    out = set()
    for t in found:
        # the deepest project module the name refers to
        while t and t not in MODULES:
            t = t.rpartition(".")[0]
        if t and t != name and (t.startswith(PACKAGE + ".") or t == PACKAGE):
            out.add(t)
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def layer(name):
    parts = name.split(".")
    if len(parts) == 1 or parts[1] == "base":
        return "base"
    if parts[1] == "__main__":
        return "sim"
    return parts[1]


def test_every_module_has_a_layer():
    assert {layer(n) for n in MODULES} <= set(LAYERS)
    assert {"hyflexpim.base", "hyflexpim.rtl.bus", "hyflexpim.tb.analog_tb"} <= set(MODULES)


def test_resolution_of_relative_imports():
    assert "hyflexpim.base" in GRAPH["hyflexpim.rtl.bus"]
    assert "hyflexpim.rtl" in GRAPH["hyflexpim.sim.blocks"]           # from .. import rtl
    assert "hyflexpim.sim.cli" in GRAPH["hyflexpim.__main__"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_upward_import(name):
    own = LAYERS.index(layer(name))
    up = sorted(t for t in GRAPH[name] if LAYERS.index(layer(t)) > own)
    assert not up, f"{name} ({layer(name)}) imports a layer above it: {', '.join(up)}"


def _cycles():
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return comps


def test_no_import_cycle():
    cycles = [c for c in _cycles() if tuple(c) not in KNOWN_CYCLES]
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)

