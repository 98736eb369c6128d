"""``plan --resolve 5%``: for each planned job, the noise of its newest stored result (same
model file content, device, delegate and threads) and the iterations and repeats it would
take to resolve that change (:mod:`quantlab.harness.stability`)."""

from __future__ import annotations

from typing import Any

from quantlab.harness.records import Job
from quantlab.harness.stability import describe, resolve, score

HISTORY_RUNS = 10
"""How many of the newest runs on a job's model, device and delegate are searched."""


def _newest(store: Any, job: Job) -> tuple[str, Any] | None:
    """The newest stored ok result of ``job``'s model content, device, delegate, threads."""
    for run_id in store.find_runs(model=job.model.path, device=job.device_id,
                                  delegate=job.delegate, limit=HISTORY_RUNS):
        for e in store.load_run(run_id).entries:
            j = e.job
            if (j.model.sha256, j.device_id, j.delegate, j.threads) == (
                    job.model.sha256, job.device_id, job.delegate, job.threads) \
                    and e.status == "ok" and e.raw is not None and score(e.raw):
                return run_id, e.raw
    return None


def resolve_rows(store: Any, jobs: list[Job], change: float) -> list[dict[str, Any]]:
    """One row per job: its stability and what resolving ``change`` takes, or why not."""
    rows = []
    for job in jobs:
        found = _newest(store, job)
        row: dict[str, Any] = {"job_id": job.job_id, "label": job.label()}
        if found is None:
            row.update(stability=None, resolve=None, from_run=None,
                       note="no stored result with two launches or more: measure it once "
                            "(bench --repeats 3), then ask again")
        else:
            run_id, raw = found
            stab = score(raw)
            assert stab is not None
            row.update(stability=stab, resolve=resolve(stab, change), from_run=run_id,
                       note=describe(stab))
        rows.append(row)
    return rows


def print_rows(rows: list[dict[str, Any]], change: float) -> None:
    """The rows as a table and their notes."""
    from quantlab.harness.cli.common import console
    from quantlab.harness.cli.tables import label_column, new_table, number_column

    table = new_table(f"To resolve a {change:.0%} change (alpha 0.05, power 80%)")
    label_column(table, "job", 40)
    for name in ("CV", "drift", "repeats", "iterations"):
        number_column(table, name)
    label_column(table, "stability", 10)
    for r in rows:
        s, need = r["stability"], r["resolve"]
        if s is None:
            table.add_row(r["label"], "–", "–", "–", "–", "unknown")
            continue
        table.add_row(r["label"], f"{s['cv_between']:.1%}",
                      f"{s['drift']:+.1%}" if s["drift"] is not None else "–",
                      str(need["repeats"]),
                      str(need["iterations"]) if need["iterations"] else "–", s["verdict"])
    console.print(table)
    for r in rows:
        where = f" (run {r['from_run']})" if r["from_run"] else ""
        console.print(f"{r['label']}{where}: {r['note']}", soft_wrap=True, markup=False,
                      highlight=False, style="dim")
