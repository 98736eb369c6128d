"""Verdict statistics, store queries and run-level services sit where the layers put them
(docs/architecture.md): nothing below the reports imports a report, the CLI or the Python
API; quantize never reaches the store; only the store runs SQL; and no two of the modules
that decide or show verdicts import each other (a ``TYPE_CHECKING`` or function-level
import counts: it is still a dependency, and the contracts in CI see it)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BELOW_REPORT = ("harness/quantize", "harness/verdicts", "harness/store", "agents",
                "android_runner", "ios_runner", "harness/plan.py", "harness/planfile.py",
                "harness/ab.py", "harness/dispatch.py", "harness/delegate_gate.py",
                "harness/evaluations.py", "harness/stats.py", "harness/numerics.py",
                "harness/records.py", "harness/errors.py")
ABOVE = ("quantlab.harness.report", "quantlab.harness.cli", "quantlab._", "quantlab.session")


def _files(*where: str) -> Iterator[Path]:
    for name in where:
        path = ROOT / name
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from sorted(path.rglob("*.py"))


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["quantlab", *parts])


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in the file, at any depth, relative ones resolved;
    ``from X import name`` also yields ``X.name`` (which may be a module)."""
    package = _module(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[:len(package) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix if prefix.endswith("_") else prefix + ".")


def test_nothing_below_the_reports_imports_them_or_the_layers_above() -> None:
    upward = [f"{p.relative_to(ROOT)}:{line}: {name}" for p in _files(*BELOW_REPORT)
              for line, name in _imports(p) if any(_under(name, top) for top in ABOVE)]
    assert upward == []


def test_quantize_does_not_reach_the_store() -> None:
    """Saving an evaluation and reading stored runs belong to the layer that owns runs."""
    found = [f"{p.relative_to(ROOT)}:{line}: {name}" for p in _files("harness/quantize")
             for line, name in _imports(p) if _under(name, "quantlab.harness.store")]
    assert found == []


def test_only_the_store_runs_sql() -> None:
    """Reports, the CLI and the API read the store through its read models."""
    outside = [p for p in _files("harness", "agents", "android_runner", "ios_runner")
               if p.relative_to(ROOT).parts[:2] != ("harness", "store")]
    outside += sorted((ROOT / "quantlab").glob("*.py"))  # its folders are links to those above
    found = [f"{p.relative_to(ROOT)}:{line}: {name}" for p in outside
             for line, name in _imports(p)
             if _under(name, "sqlalchemy") or _under(name, "quantlab.harness.store.schema")]
    assert found == []


def test_verdict_and_report_modules_import_no_cycle() -> None:
    files = list(_files("harness/verdicts", "harness/report"))
    modules = {_module(p) for p in files}
    graph = {_module(p): {n for _, n in _imports(p) if n in modules} - {_module(p)}
             for p in files}
    mutual = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if a < b and a in graph[b])
    assert mutual == []

    def cycle_from(start: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(graph[start]):
            if nxt == seen[0]:
                return (*seen, nxt)
            if nxt not in seen:
                found = cycle_from(nxt, (*seen, nxt))
                if found:
                    return found
        return None

    cycles = [" -> ".join(c) for m in sorted(graph) if (c := cycle_from(m, (m,)))]
    assert cycles == []
