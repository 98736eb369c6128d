"""The HTML report's shared pieces: the stylesheet, escaping, tables, sections, labels."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from quantlab.harness.store import JobEntry, RunRecord

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2733;
background:#f4f6f8}
header{background:#1f3a5f;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.8}main{max-width:1100px;margin:0 auto;padding:16px 24px 48px}
nav{margin:8px 0 0}nav a{color:#cfe0f5;margin-right:14px;text-decoration:none;font-size:13px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:14px 22px;
margin:18px 0}h2{font-size:17px;margin:4px 0 10px;color:#1f3a5f}h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;width:100%;font-size:12.5px;margin:6px 0 10px}
th,td{padding:4px 8px;border-bottom:1px solid #e3e7eb;text-align:left;vertical-align:top}
th{background:#f0f3f6;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.nodata{color:#7a8794;font-style:italic}.warn{color:#a35c00}.bad{color:#b3261e}.good{color:#1e7b34}
figure{margin:8px 0}figure svg{max-width:100%;height:auto}code{font-size:12px}
"""


def _e(value: Any) -> str:
    return html.escape("–" if value is None else str(value))


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.3g} ms"


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{_e(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>"
                         for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _nodata(why: str) -> str:
    return f'<p class="nodata">no data — {_e(why)}</p>'


def _name(entry: JobEntry) -> str:
    m = entry.job.model
    name = Path(m.path).name
    return f"{m.scheme} ({name})" if m.scheme else name


def _ok(records: list[RunRecord]) -> list[tuple[RunRecord, JobEntry]]:
    return [(r, e) for r in records for e in r.entries if e.status == "ok" and e.raw is not None]


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}" data-section="{key}"><h2>{_e(title)}</h2>{body}</section>'
