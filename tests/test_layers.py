"""The package's layers: no import cycles (top level or inside functions), no private names
across modules, every module's public names in ``__all__``, numpydoc docstrings that
napoleon renders as the book does.

The import graph is read from the source with ``ast`` (every ``import`` statement, at any
depth), not from ``sys.modules``, so an import inside a function counts too.
"""
import ast
import os
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("LCTOOLS_LAYERS_ROOT", Path(__file__).resolve().parents[1] / "lctools"))
def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules():
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str, path: Path):
    """``(target module, imported names, line)`` for every import of an lctools module in ``path``."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    known = modules()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "lctools":
                    yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "lctools":
                continue
            names = [a.name for a in node.names]
            # "from . import cache" imports the submodule lctools.cache
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            for sub in subs:
                yield sub, [], node.lineno
            rest = [n for n in names if f"{target}.{n}" not in known]
            if rest or not subs:
                yield target, rest, node.lineno


def graph():
    known = modules()
    edges = {name: set() for name in known}
    for name, path in known.items():
        for target, _, _ in imports_of(name, path):
            if target != name and target in known:
                edges[name].add(target)
    return edges


def cycles(edges, skip=()):
    """Every elementary cycle through Tarjan's strongly connected components (size > 1, or self-loops)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w.startswith(skip) and v.startswith(skip):
                continue
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
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    """No strongly connected component in lctools' import graph (a submodule may read the
    package, e.g. ``from .. import __version__``, only if the package does not import it).
    Cycles inside ``lctools.reproduce`` are checked by the next test."""
    edges = graph()
    found = cycles(edges)
    print("\nlctools import graph (module -> lctools modules it imports):")
    for name in sorted(edges):
        print(f"  {name} -> {', '.join(sorted(edges[name])) or '-'}")
    assert found == [], f"import cycles: {found}"


def test_leaf_modules_import_nothing_from_lctools():
    edges = graph()
    for leaf in ("lctools.validation", "lctools.hashing", "lctools.versions"):
        assert edges[leaf] == set(), (leaf, edges[leaf])
    assert edges["lctools.checkpoints"] <= {"lctools.hashing"}
    assert "lctools" not in edges["lctools.cache"]  # the cache reads CACHE_VERSION, not lctools.__version__


def test_no_private_names_across_modules():
    bad = []
    for name, path in modules().items():
        for target, names, line in imports_of(name, path):
            bad += [f"{name}:{line} imports {target}.{n}" for n in names if n.startswith("_") and n != "__version__"]
    assert bad == []


PUBLIC_MODULES = ["lctools", "lctools.cache", "lctools.checkpoints", "lctools.complexity", "lctools.ensemble",
                  "lctools.hashing", "lctools.models", "lctools.rank", "lctools.regions", "lctools.representation",
                  "lctools.robustness", "lctools.training", "lctools.validation", "lctools.variation",
                  "lctools.versions", "lctools.data", "lctools._jacobian", "lctools._network", "lctools.course",
                  "lctools.plotting", "lctools.explorer", "lctools.experiments", "lctools.reproduce"]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_names_are_in_all(name):
    mod = importlib.import_module(name)
    assert hasattr(mod, "__all__"), name
    for public in mod.__all__:
        assert hasattr(mod, public), (name, public)
    defined = [k for k, v in vars(mod).items() if not k.startswith("_") and (inspect.isfunction(v) or inspect.isclass(v))
               and getattr(v, "__module__", None) == name]
    missing = sorted(set(defined) - set(mod.__all__))
    assert missing == [], f"{name} defines public {missing} but does not list them in __all__"


def public_functions(name):
    mod = importlib.import_module(name)
    for public in mod.__all__:
        obj = getattr(mod, public)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == name:
            yield public, obj


MY_MODULES = [m for m in PUBLIC_MODULES if m not in ("lctools", "lctools.data")]


@pytest.mark.parametrize("name", MY_MODULES)
def test_numpydoc_parameters_render_as_the_book_does(name):
    """napoleon (the book's config) must not read a parameter's description as its type: that
    split 'number of bias-noise draws eps per input point; 0 gives the) – noiseless plug-in'."""
    from sphinx.ext.napoleon import Config
    from sphinx.ext.napoleon.docstring import NumpyDocstring

    cfg = Config(napoleon_numpy_docstring=True, napoleon_google_docstring=True, napoleon_use_param=False)
    bad = []
    for public, obj in public_functions(name):
        targets = [(public, obj)] + ([(f"{public}.{k}", v) for k, v in vars(obj).items()
                                      if inspect.isfunction(v) and not k.startswith("_")] if inspect.isclass(obj) else [])
        for label, target in targets:
            doc = inspect.getdoc(target)
            assert doc, f"{name}.{label} has no docstring"
            rst = str(NumpyDocstring(doc, cfg, what="function"))
            for m in re.finditer(r"\*\*[^*]+\*\* \(\*([^)]*)\*\)", rst):
                if len(m.group(1).split()) > 4:  # a sentence where a type belongs
                    bad.append(f"{label}: {m.group(0)[:80]}")
    assert bad == []


@pytest.mark.parametrize("name", MY_MODULES)
def test_public_functions_have_an_example(name):
    missing = [public for public, obj in public_functions(name)
               if inspect.isfunction(obj) and ">>>" not in (inspect.getdoc(obj) or "")]
    assert missing == [], f"{name}: public functions without an example: {missing}"


@pytest.mark.parametrize("name", MY_MODULES)
def test_examples_run(name):
    import doctest

    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
