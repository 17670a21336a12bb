"""The package's shape: every entry point loads, the import graph has no cycle, nothing imports the CLI,
optional extras fail with a message naming them, and one Doc contract serves every component."""
import ast
import configparser
import importlib
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, Span

import spacy_clinalign
from spacy_clinalign.extras import require
from spacy_clinalign.pairs import DOC_EXTENSIONS, SPAN_EXTENSIONS, register_extensions, spans_of
from spacy_clinalign.torch_runtime import torch_device

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "spacy_clinalign"


def _entry_points():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    for group, body in parser["options.entry_points"].items():
        for line in body.strip().splitlines():
            name, _, target = (part.strip() for part in line.partition("="))
            yield group, name, target


@pytest.mark.parametrize("group,name,target", list(_entry_points()))
def test_every_entry_point_in_setup_cfg_loads(group, name, target):
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attr)), f"{group} {name}: {target} is not callable"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports_of(path: Path):
    """Modules of the package that `path` imports (absolute or relative, at any depth of the file)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("spacy_clinalign"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("spacy_clinalign"))
    return found


def _graph():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def test_nothing_outside_the_cli_imports_the_cli():
    offenders = sorted(name for name, deps in _graph().items()
                       if not name.startswith(("spacy_clinalign.cli", "spacy_clinalign.__main__"))
                       and any(d.startswith("spacy_clinalign.cli") for d in deps))
    bench = sorted(str(p.name) for p in (ROOT / "bench").glob("*.py") if "spacy_clinalign.cli" in p.read_text())
    assert offenders == [] and bench == []


def test_module_import_graph_has_no_cycle():
    """Package __init__ files re-export their children, so edges into a package's own __init__ from its
    children are expected; any other cycle is a design error."""
    graph = _graph()
    for name, deps in graph.items():  # a child importing its parent package is not a cycle of modules
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the [ray] extra were absent (CI installs it)
    with pytest.raises(ImportError, match=r"spacy-clinalign\[ray\]"):
        require("ray")
    with pytest.raises(ImportError, match=r"spacy-clinalign\[linking\]"):
        require("faiss_not_installed_here")


def test_register_extensions_covers_every_attribute():
    register_extensions()
    for name in DOC_EXTENSIONS:
        assert Doc.has_extension(name)
    for name in list(SPAN_EXTENSIONS) + ["icd_candidates"]:
        assert Span.has_extension(name)


def test_spans_of_none_means_entities_everywhere():
    nlp = spacy.blank("en")
    doc = nlp("Quiste renal derecho con dolor")
    doc.ents = [Span(doc, 0, 2, label="DISEASE")]
    doc.spans["sym"] = [Span(doc, 4, 5, label="SYMPTOM")]
    assert [s.text for s in spans_of(doc, None)] == ["Quiste renal"]
    assert [s.text for s in spans_of(doc, "sym")] == ["dolor"]
    assert spans_of(doc, "absent") == []
    with pytest.raises(ValueError, match=r"no span group 'absent' \(it has \['sym'\]\)"):
        spans_of(doc, "absent", required=True)
    assert spacy_clinalign.spans_of is spans_of


def test_torch_device_follows_spacy_not_cuda_availability():
    assert str(torch_device()) == "cpu"  # no require_gpu() was called
    assert str(torch_device("cpu")) == "cpu"
