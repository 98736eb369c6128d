"""The HTML report's "ladder" section: the remedy ladder ``quantlab autoquant`` climbed.

``autoquant`` stores each evaluated step with the ladder in its evaluation
payload (``payload["ladder"]``); this section finds the ladders of the variants
the report's runs measured and shows every step with the reason the ladder
moved on, and the choice.
"""

from __future__ import annotations

from typing import Any

from quantlab.harness.store import RunRecord, Store


def ladders_of(store: Store, records: list[RunRecord]) -> list[dict[str, Any]]:
    """The ladders (newest record of each) whose variants these runs measured."""
    shas = {e.job.model.sha256 for r in records for e in r.entries}
    found: dict[str, dict[str, Any]] = {}
    for ev in store.evaluations(shas).values():
        payload = ev.get("payload") or {}
        ladder = payload.get("ladder") if isinstance(payload, dict) else None
        if isinstance(ladder, dict) and ladder.get("id"):
            found[str(ladder["id"])] = ladder
    return list(found.values())


def _pt(value: Any) -> str:
    return "–" if value is None else f"{float(value) * 100:+.2f} pt"


def ladder_section(store: Store, records: list[RunRecord]) -> str:
    """The section body (HTML)."""
    from quantlab.harness.report.html_markup import _e, _nodata, _table

    ladders = ladders_of(store, records)
    if not ladders:
        return _nodata("these runs are not autoquant runs (quantlab autoquant records the "
                       "ladder it climbed here)")
    out = []
    for ladder in ladders:
        chosen = ladder.get("chosen")
        head = (f"<p><b>{_e(ladder.get('model'))}</b> · gate: drop ≤ "
                f"{float(ladder.get('max_drop') or 0) * 100:g} pt · ")
        if chosen:
            lat = chosen.get("latency_ms")
            head += (f'chosen <b class="good">{_e(chosen.get("scheme"))}</b> '
                     f"({_e(chosen.get('rung'))}, {(chosen.get('size_bytes') or 0) / 1024:.1f} KiB"
                     f", drop {_pt(chosen.get('drop'))}"
                     + (f", {lat:.3g} ms" if lat else "") + f") — {_e(ladder.get('why'))}</p>")
        else:
            head += f'<span class="bad">no variant passed</span> — {_e(ladder.get("why"))}</p>'
        rows = []
        for i, s in enumerate(ladder.get("steps") or [], 1):
            opts = ", ".join(f"{k}={v}" for k, v in (s.get("options") or {}).items())
            rows.append([i, s.get("rung"), opts, f"{s['size_bytes'] / 1024:.1f} KiB"
                         if s.get("size_bytes") else "–",
                         "–" if s.get("value") is None else f"{s['value']:.4f}",
                         _pt(s.get("drop")), s.get("verdict"),
                         "–" if s.get("latency_ms") is None else f"{s['latency_ms']:.3g} ms",
                         s.get("why_next") or ""])
        out.append(head + _table(["#", "rung", "options", "size", "metric", "drop", "gate",
                                  "latency", "why the ladder moved on"], rows, {0, 3, 4, 5, 7}))
    return "".join(out)
