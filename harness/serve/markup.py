"""The dashboard's page shell and small HTML pieces: navigation, filter forms, pagers.

Pages are plain HTML with the report's stylesheet; the one script (:data:`SCRIPT`,
served as ``/static/dashboard.js``) refreshes the lab page's live part and keeps the run
list's compare button honest. Everything interpolated is escaped.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import urlencode

from quantlab.harness.serve.data import CSS

NAV = (("lab", "/", "Lab"), ("runs", "/runs", "Runs"), ("trends", "/trends", "Trends"),
       ("api", "/api", "API"))

STYLE = CSS + """
header nav a.on{color:#fff;font-weight:600;border-bottom:2px solid #fff}
form.filters{display:flex;flex-wrap:wrap;gap:8px 14px;align-items:end;margin:4px 0 10px}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#52606d}
form.filters input,form.filters select{font:inherit;padding:3px 6px;min-width:9em}
button{font:inherit;padding:4px 12px;border:1px solid #1f3a5f;border-radius:4px;background:#1f3a5f;
color:#fff;cursor:pointer}button:disabled{opacity:.45;cursor:default}
.pager{margin:8px 0;font-size:13px}.pager a{margin-right:12px}
td a,p a{color:#1f5f9f}td a{white-space:nowrap}
.pill{display:inline-block;padding:0 6px;border-radius:8px;font-size:12px;background:#e8edf2;
margin:0 3px 2px 0}.up{color:#1e7b34}.down{color:#b3261e}
.muted{color:#7a8794;font-size:12px}footer{max-width:1100px;margin:0 auto;padding:0 24px 24px;
color:#7a8794;font-size:12px}
"""

SCRIPT = """'use strict';
(function () {
  const live = document.getElementById('lab-live');
  if (live) {
    const every = Math.max(1, Number(live.dataset.refresh || 5)) * 1000;
    const stamp = document.getElementById('refreshed');
    async function refresh() {
      try {
        const r = await fetch('/lab/live', {headers: {'Accept': 'text/html'},
                                            credentials: 'same-origin'});
        if (r.ok) {
          live.innerHTML = await r.text();
          live.dataset.refreshes = String(Number(live.dataset.refreshes || 0) + 1);
          if (stamp) { stamp.textContent = new Date().toISOString().slice(0, 19) + 'Z'; }
        }
      } catch (e) { if (stamp) { stamp.textContent = 'unreachable (' + e + ')'; } }
    }
    setInterval(refresh, every);
  }
  const form = document.getElementById('compare-form');
  if (form) {
    const boxes = Array.from(document.querySelectorAll('input[name="run"][form="compare-form"]'));
    const button = form.querySelector('button');
    const update = () => {
      const n = boxes.filter(b => b.checked).length;
      button.disabled = n !== 2;
      button.textContent = n === 2 ? 'Compare the two runs' : 'Pick two runs to compare';
    };
    boxes.forEach(b => b.addEventListener('change', update));
    update();
  }
})();
"""


def e(value: Any) -> str:
    """Escaped text ("–" for None)."""
    return html.escape("–" if value is None else str(value))


def url(path: str, **params: Any) -> str:
    """``path`` with the non-empty ``params`` as its query string."""
    kept = {k: v for k, v in params.items() if v not in (None, "", False)}
    return f"{path}?{urlencode(kept, doseq=True)}" if kept else path


def a(href: str, text: Any, **attrs: str) -> str:
    """A link (``text`` escaped)."""
    extra = "".join(f' {k.rstrip("_").replace("_", "-")}="{e(v)}"' for k, v in attrs.items())
    return f'<a href="{e(href)}"{extra}>{e(text)}</a>'


def table(headers: list[str], rows: list[list[str]], *, id_: str | None = None,
          numeric: set[int] | None = None) -> str:
    """A table whose cells are HTML already (escape what goes into them)."""
    numeric = numeric or set()
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    ident = f' id="{e(id_)}"' if id_ else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def section(key: str, title: str, body: str) -> str:
    """A page section, as the report draws them."""
    return f'<section id="{e(key)}" data-section="{e(key)}"><h2>{e(title)}</h2>{body}</section>'


def nodata(why: str) -> str:
    """The report's "no data" line."""
    return f'<p class="nodata">no data — {e(why)}</p>'


def filter_form(action: str, fields: list[tuple[str, str, str | None, str | tuple[str, ...]]],
                hidden: dict[str, Any] | None = None) -> str:
    """A GET form of fields ``(name, label, value, placeholder)``: a choice of values when the
    placeholder is a tuple of them, a date for ``since`` and ``until``, else text."""
    parts = []
    for name, label, value, placeholder in fields:
        if isinstance(placeholder, tuple):
            options = "".join(f'<option value="{e(v)}"{" selected" if v == (value or "") else ""}>'
                              f'{e(v or "any")}</option>' for v in ("", *placeholder))
            parts.append(f'<label>{e(label)}<select name="{e(name)}">{options}</select></label>')
            continue
        kind = "date" if name in ("since", "until") else "text"
        parts.append(f'<label>{e(label)}<input type="{kind}" name="{e(name)}" '
                     f'value="{e(value or "")}" placeholder="{e(placeholder)}"></label>')
    for name, value in (hidden or {}).items():
        if value not in (None, ""):
            parts.append(f'<input type="hidden" name="{e(name)}" value="{e(value)}">')
    return (f'<form class="filters" method="get" action="{e(action)}">{"".join(parts)}'
            f'<button type="submit">Filter</button> {a(action, "clear")}</form>')


def pager(path: str, params: dict[str, Any], total: int, limit: int, offset: int,
          what: str) -> str:
    """"runs 51–100 of 10000" with links to the previous and next pages."""
    if total == 0:
        return f'<p class="pager">no {e(what)}</p>'
    last = min(offset + limit, total)
    links = []
    if offset > 0:
        links.append(a(url(path, **params, limit=limit, offset=max(0, offset - limit)),
                       "← newer" if what == "runs" else "← previous", rel="prev"))
    if last < total:
        links.append(a(url(path, **params, limit=limit, offset=offset + limit),
                       "older →" if what == "runs" else "next →", rel="next"))
    return (f'<p class="pager">{e(what)} {offset + 1}–{last} of {total} '
            f'{" ".join(links)}</p>')


def page(title: str, body: str, *, active: str, location: str, auth: bool,
         subtitle: str = "") -> str:
    """A whole dashboard page: header with navigation, the body, a footer."""
    nav = "".join(f'<a href="{href}"{" class=on" if key == active else ""}>{e(label)}</a>'
                  for key, href, label in NAV)
    sub = f"<p>{e(subtitle)}</p>" if subtitle else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{e(title)} · quantlab</title><link rel="icon" href="data:,">'
            f'<link rel="stylesheet" href="/static/dashboard.css"></head><body>'
            f"<header><h1>quantlab · {e(title)}</h1>{sub}<nav>{nav}</nav></header>"
            f"<main>{body}</main><footer>store {e(location)} · read-only"
            f"{' · token required' if auth else ' · loopback only'}</footer>"
            f'<script src="/static/dashboard.js"></script></body></html>\n')
