"""The file formats ``quantlab export`` writes, by name: one line each in :data:`EXPORT_FORMATS`.

Each name maps to ``"module:function"``, a writer ``(rows, path) -> None`` that writes one flat
table (a list of dicts with the same keys) to ``path``; :mod:`quantlab.harness.report.export`
imports it when a table is written, atomically. Adding a format is a writer (in a module of its
own when it needs a library) and one line here. A leaf: the CLI's help lists the names
without importing the report package.
"""

from __future__ import annotations

EXPORT_FORMATS: dict[str, str] = {
    "csv": "quantlab.harness.report.export:write_csv",
    "json": "quantlab.harness.report.export:write_json",
    "parquet": "quantlab.harness.report.export:write_parquet",
}
"""Format name (``--format``, the files' suffix) → its writer."""


def format_names() -> str:
    """The formats in words: ``csv, json or parquet``."""
    names = list(EXPORT_FORMATS)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
