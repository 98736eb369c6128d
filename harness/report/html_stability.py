"""The HTML report's stability section (the served dashboard's run page draws the same): per
job, the stability score :mod:`quantlab.harness.stability` computes from its stored launches
(CV between launches, CV and drift within a launch, stable / noisy / unstable) and what
resolving a 5 % change would take at that noise (launches per side, iterations per launch),
an unstable job flagged in red and named above the table."""

from __future__ import annotations

from quantlab.harness.report.html_markup import _e, _name, _nodata, _ok
from quantlab.harness.store import RunRecord

CHANGE = 0.05
"""The change the section says how to resolve (as ``plan --resolve 5%``)."""
_CLASS = {"stable": "good", "noisy": "warn", "unstable": "bad"}


def _pct(value: float | None, signed: bool = False) -> str:
    return "–" if value is None else f"{value:+.1%}" if signed else f"{value:.1%}"


def stability_section(records: list[RunRecord]) -> str:
    """One row per finished job with two launches or more; jobs with one launch are named."""
    from quantlab.harness.stability import resolve, score

    rows, unstable, single = [], [], []
    for _r, e in _ok(records):
        label = f"{_name(e)} · {e.job.device_id} · {e.job.delegate} · {e.job.threads}t"
        s = score(e.raw)
        if s is None:
            single.append(label)
            continue
        need = resolve(s, CHANGE)
        verdict = s["verdict"]
        if verdict == "unstable":
            unstable.append(_name(e))
        iterations = need["iterations"]
        rows.append(
            f'<tr data-verdict="{verdict}" data-repeats="{need["repeats"]}"><td>{_e(label)}</td>'
            f'<td class="n">{s["launches"]}</td><td class="n">{_pct(s["cv_between"])}</td>'
            f'<td class="n">{_pct(s["cv_within"])}</td>'
            f'<td class="n">{_pct(s["drift"], signed=True)}</td>'
            f'<td class="{_CLASS[verdict]}">{_e(verdict)}</td>'
            f'<td class="n">{need["repeats"]}</td>'
            f'<td class="n">{_e(iterations)}</td></tr>')
    if not rows and not single:
        return _nodata("no finished job")
    out = ("<p>From each job's stored launches: the coefficient of variation between launches "
           "(each launch's median), the typical CV within a launch, the largest drift from a "
           "launch's first third to its last; stable = CV ≤ 2 % and drift ≤ 3 %, noisy = CV ≤ "
           f"5 %, else unstable. To resolve a {CHANGE:.0%} change: launches per side (two-sided, "
           "alpha 0.05, power 80 %) and iterations per launch, as <code>plan --resolve "
           f"{CHANGE:.0%}</code> prints them.</p>")
    if unstable:
        out += (f'<p class="bad">{len(unstable)} of {len(rows)} scored jobs unstable: '
                f"{_e(', '.join(unstable))} — a change smaller than its spread between launches "
                "is noise here.</p>")
    if rows:
        head = "".join(f"<th>{_e(h)}</th>" for h in (
            "job", "launches", "CV between launches", "CV within a launch",
            "drift within a launch", "verdict", f"launches to resolve {CHANGE:.0%}",
            "iterations per launch"))
        out += f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    else:
        out += _nodata("no job was measured in two launches or more (bench --repeats 2+)")
    out += "".join(f"<p class=\"nodata\">{_e(label)}: one launch, no score (nothing to compare "
                   "between launches)</p>" for label in single)
    return out
