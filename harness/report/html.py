"""One self-contained HTML report of stored runs (inline CSS and SVG; no scripts, no network).

Every section is always present; a section with nothing to show says "no data"
and why. :func:`write_report` is what the CLI and the demo call. The sections are drawn
by :mod:`~quantlab.harness.report.html_measurements` (what the runs measured) and
:mod:`~quantlab.harness.report.html_analysis` (evaluations, ladder, delegates, baseline, history);
:mod:`~quantlab.harness.report.html_markup` holds the stylesheet and shared helpers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from quantlab.harness.atomic import write_text_atomically
from quantlab.harness.report.html_analysis import (
    _accuracy,
    _calibration,
    _comparison,
    _delegates,
    _history_body,
    _ladder,
)
from quantlab.harness.report.html_device_accuracy import device_accuracy
from quantlab.harness.report.html_markup import CSS, _e, _section
from quantlab.harness.report.html_measurements import (
    _latency,
    _ops,
    _resources,
    _startup,
    _summary,
    _sustained,
    _warnings,
)
from quantlab.harness.store import RunRecord, Store
from quantlab.harness.verdicts.history import History

SECTIONS = ("summary", "latency", "accuracy", "device-accuracy", "calibration", "ladder",
            "delegates", "ops", "resources", "startup", "sustained", "warnings", "comparison")


def report_sections(store: Store, records: list[RunRecord], baseline: str | None = None,
                    overlays: Mapping[str, str] | None = None) -> list[str]:
    """The report's sections as HTML, in :data:`SECTIONS` order (the report's page and the
    served dashboard's run page draw the same); ``overlays``: job id → the link to its Model
    Explorer overlays, shown in the delegate matrix."""
    return [
        _section("summary", "Summary", _summary(records)),
        _section("latency", "Latency distributions", _latency(records)),
        _section("accuracy", "Accuracy vs latency and size", _accuracy(store, records)),
        _section("device-accuracy", "Accuracy on the device × delegate",
                 device_accuracy(store, records)),
        _section("calibration", "Task metrics, agreement and confidence calibration",
                 _calibration(store, records)),
        _section("ladder", "Remedy ladder (autoquant)", _ladder(store, records)),
        _section("delegates", "Delegate matrix", _delegates(records, overlays)),
        _section("ops", "Per-op breakdown", _ops(records)),
        _section("resources", "Memory, energy and thermal state", _resources(records)),
        _section("startup", "The first second: cold and warm start", _startup(records)),
        _section("sustained", "Sustained runs: latency over time", _sustained(records)),
        _section("warnings", "Stability warnings, skipped and failed jobs", _warnings(records)),
        _section("comparison", "Comparison with baseline", _comparison(store, records, baseline)),
    ]


def history_body(found: History) -> str:
    """The trends section's content: one plot per series, change points marked."""
    return _history_body(found)


def render(store: Store, records: list[RunRecord], baseline: str | None = None,
           overlays: Mapping[str, str] | None = None) -> str:
    """The whole HTML document."""
    ids = ", ".join(r.run.run_id for r in records)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    parts = report_sections(store, records, baseline, overlays)
    nav = "".join(f'<a href="#{k}">{k}</a>' for k in SECTIONS)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>quantlab report · {_e(ids)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>quantlab report</h1><p>runs {_e(ids)} · written {now} from "
            f"{_e(store.location)}</p><nav>{nav}</nav></header><main>{''.join(parts)}</main>"
            f"</body></html>\n")


def render_history(store: Store, found: History) -> str:
    """The trends page (``quantlab report --history``): one plot per series."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    body = _section("history", "Trends across runs", history_body(found))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>quantlab history</title><style>{CSS}</style></head><body>"
            f"<header><h1>quantlab history</h1><p>{len(found.runs)} run(s) · written {now} "
            f"from {_e(store.location)}</p></header><main>{body}</main></body></html>\n")


def write_history_report(store: Store, found: History, path: Path) -> Path:
    """Render ``found`` to ``path`` atomically; returns the path."""
    return write_text_atomically(path, render_history(store, found))


def write_report(store: Store, run_ids: list[str], path: Path,
                 baseline: str | None = None, overlays: bool = False) -> Path:
    """Render the runs (``latest`` when none given) to ``path`` atomically; returns the path.
    With ``overlays``, each job's Model Explorer overlays go to ``<stem>_overlays/<job id>/``
    beside it, linked from the delegate matrix."""
    records = [store.load_run(r) for r in (run_ids or ["latest"])]
    links: dict[str, str] | None = None
    if overlays:
        from quantlab.harness.report.explore import write_run_overlays

        folder = path.parent / f"{path.stem}_overlays"
        links = {job: f"{folder.name}/{job}/" for job in write_run_overlays(folder, records)}
    return write_text_atomically(path, render(store, records, baseline, links))
