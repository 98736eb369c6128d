"""The nightly's confirm-on-regression re-run (``[measure] confirm = N``, ``bench --confirm N``).

A job that compare judges ``slower`` than its baseline is measured again before it is
reported: its job, with ``N`` fresh launches (repeats), in a confirmation run of its own
(tagged ``confirm`` and ``confirms=RUN``, never ``nightly``, so it is no one's baseline),
through the same session; that run is compared with the same baseline by the same test. A
regression that is slower again is ``confirmed``; one that is not becomes ``not confirmed``
(a one-off slow night: reported, not failed). The re-run is not interleaved with the baseline:
the baseline's stored figures are what it is compared with.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from quantlab.harness.records import Plan
from quantlab.harness.verdicts.compare import NOT_CONFIRMED, Comparison
from quantlab.harness.verdicts.latency import SLOWER

CONFIRMED = "confirmed"


def _key(m: Any) -> tuple[str, str, str, int]:
    return (m.model, m.device, m.delegate, m.threads)


def confirm_slower(session: Any, run_id: str, c: Comparison, launches: int,
                   threshold: float, match: tuple[str, ...]) -> Comparison:
    """``c`` with each ``slower`` pair measured again ``launches`` times: ``confirmed`` in
    its ``confirmation``, or its verdict turned ``not confirmed`` with the reason."""
    from quantlab._report import compare_in

    slower = [m for m in c.matches if m.verdict == SLOWER]
    if launches <= 0 or not slower:
        return c
    entries = {e.job.job_id: e for e in session.store.load_run(run_id).entries}
    jobs = []
    for m in slower:
        job = entries[m.new_job].job
        jobs.append(dataclasses.replace(job, settings=dataclasses.replace(
            job.settings, repeats=launches)))
    devices = session.devices(sorted({j.device_id for j in jobs}))
    confirm_id = session.start(Plan(jobs=tuple(jobs)), devices, jobs[0].settings,
                               tags=["confirm", f"confirms={run_id}"])
    session.finish(confirm_id, session.dispatch(confirm_id, jobs))
    again = compare_in(session.store, c.baseline, confirm_id, threshold=threshold,
                       match=match, allow_missing=True)
    by_key = {_key(m): m for m in again.matches}
    matches = []
    for m in c.matches:
        if m.verdict != SLOWER:
            matches.append(m)
            continue
        r = by_key.get(_key(m))
        word = r.verdict if r is not None else "not measured"
        note = {"run_id": confirm_id, "launches": launches, "verdict": word,
                "ratio": r.ratio if r is not None else None}
        if word == SLOWER:
            matches.append(dataclasses.replace(m, confirmation={**note, "state": CONFIRMED}))
        else:
            ratio = f" (×{r.ratio:.2f})" if r is not None and r.ratio else ""
            matches.append(dataclasses.replace(
                m, verdict=NOT_CONFIRMED, confirmation={**note, "state": NOT_CONFIRMED},
                reason=f"slower in this run (×{m.ratio:.2f}) but {word}{ratio} in {launches} "
                       f"confirmation launches (run {confirm_id}): a one-off, not reported "
                       "as a regression"))
    return dataclasses.replace(c, matches=matches)
