"""The nightly's confirm-on-regression re-run (``[measure] confirm = N``, ``bench --confirm N``).

A job that compare judges ``slower`` than its baseline is measured again before it is
reported, in a confirmation run of its own (tagged ``confirm`` and ``confirms=RUN``, never
``nightly``, so it is no one's baseline), through the same session:

* **interleaved** where the baseline's model file is still on this host with the sha256 the
  baseline measured, and differs from tonight's: the baseline's job and tonight's run on the
  same device alternately (A B B A …, :mod:`quantlab.harness.ab`), ``max(N, 3)`` launches
  each (a paired test needs three pairs), and the verdict comes from the paired launch ratios,
  so whatever the device does tonight falls on both sides alike;
* **against the stored baseline** otherwise (the file was rebuilt in place or removed, it is
  the same file, or the baseline ran elsewhere): tonight's job with ``N`` fresh launches,
  compared with the baseline's stored figures by compare's own test.

A regression that is slower again is ``confirmed``; one that is not becomes ``not confirmed``
(a one-off slow night: reported, not failed). Either way the pair's ``confirmation`` says which
reference was used (``baseline``: ``interleaved`` or ``stored``, with ``baseline_note`` saying
why not interleaved), and so does its reason line (terminal, JUnit, Markdown).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from quantlab.harness.records import Job, Plan, RawResult
from quantlab.harness.verdicts.compare import NOT_CONFIRMED, Comparison, Match
from quantlab.harness.verdicts.latency import SLOWER

CONFIRMED = "confirmed"
MIN_PAIRS = 3


def _key(m: Any) -> tuple[str, str, str, int]:
    return (m.model, m.device, m.delegate, m.threads)


def _with_repeats(job: Job, repeats: int) -> Job:
    return dataclasses.replace(job, settings=dataclasses.replace(job.settings, repeats=repeats))


def baseline_file_note(base: Job, new: Job) -> str | None:
    """Why the baseline's model file cannot be measured beside tonight's (None: it can)."""
    from quantlab.harness.models import file_sha256

    path = Path(base.model.path)
    if base.model.sha256 == new.model.sha256:
        return "the same model file as the baseline's (nothing to interleave it with)"
    if base.device_id != new.device_id:
        return f"the baseline ran on {base.device_id}, not {new.device_id}"
    if not path.exists():
        return f"{path} (the baseline's model file) is not on this host"
    if file_sha256(path) != base.model.sha256:
        return f"{path} changed since the baseline measured it"
    return None


def _interleave(session: Any, confirm_id: str, pairs: list[tuple[Match, Job, Job]],
                launches: int, threshold: float
                ) -> tuple[dict[str, Any], list[tuple[Job, RawResult]]]:
    """Each (baseline job, tonight's job) alternately on its device: the paired verdict per
    match (by new job id) and the merged results to store."""
    from quantlab.harness.ab import merge_launches, paired_verdict, pairs_of
    from quantlab.session import RunInterrupted

    verdicts: dict[str, Any] = {}
    kept: list[tuple[Job, RawResult]] = []
    for m, base, new in pairs:
        done, interrupted = session.interleave(confirm_id, base, new, launches)
        a, b = done[base.job_id], done[new.job_id]
        note = f"confirmation interleaved A B B A: {len(a)} + {len(b)} launches"
        kept += [(j, merge_launches(j, got, note)) for j, got in ((base, a), (new, b)) if got]
        if interrupted:
            session.store_results(confirm_id, kept)
            session.finish(confirm_id, interrupted=True)
            raise RunInterrupted(confirm_id)
        failed = next((r for r in a + b if r.status != "ok"), None)
        if failed is not None or len(b) < launches:
            verdicts[m.new_job] = (f"not measured ({failed.error if failed else 'stopped'})",
                                   None, None)
            continue
        statistic, paired = pairs_of(a, b)
        result = paired_verdict(base.label(), new.label(), statistic, paired, threshold)
        verdicts[m.new_job] = (result.verdict, result.ratio, result.p_value)
    return verdicts, kept


def confirm_slower(session: Any, run_id: str, c: Comparison, launches: int,
                   threshold: float, match: tuple[str, ...]) -> Comparison:
    """``c`` with each ``slower`` pair measured again: ``confirmed`` in its
    ``confirmation``, or its verdict turned ``not confirmed`` with the reason."""
    from quantlab._report import compare_in

    slower = [m for m in c.matches if m.verdict == SLOWER]
    if launches <= 0 or not slower:
        return c
    entries = {e.job.job_id: e for e in session.store.load_run(run_id).entries}
    based = {e.job.job_id: e for e in session.store.load_run(c.baseline).entries}
    pairs: list[tuple[Match, Job, Job]] = []
    alone: list[Job] = []
    notes: dict[str, str] = {}
    paired_launches = max(launches, MIN_PAIRS)
    for m in slower:
        new = entries[m.new_job].job
        base = based[m.baseline_job].job if m.baseline_job in based else None
        why = baseline_file_note(base, new) if base is not None else "no baseline job"
        if why is None and base is not None:
            pairs.append((m, _with_repeats(base, paired_launches),
                          _with_repeats(new, paired_launches)))
        else:
            notes[m.new_job] = why or ""
            alone.append(_with_repeats(new, launches))
    jobs = [*alone, *(j for _m, b, n in pairs for j in (b, n))]
    devices = session.devices(sorted({j.device_id for j in jobs}))
    confirm_id = session.start(Plan(jobs=tuple(jobs)), devices, jobs[0].settings,
                               tags=["confirm", f"confirms={run_id}"])
    by_key: dict[tuple[str, str, str, int], Any] = {}
    accounts = []
    if alone:
        accounts = session.dispatch(confirm_id, alone)
    paired: dict[str, Any] = {}
    if pairs:
        paired, kept = _interleave(session, confirm_id, pairs, paired_launches, threshold)
        accounts += session.store_results(confirm_id, kept)
    session.finish(confirm_id, accounts)
    if alone:
        again = compare_in(session.store, c.baseline, confirm_id, threshold=threshold,
                           match=match, allow_missing=True)
        by_key = {_key(m): m for m in again.matches}
    return dataclasses.replace(c, matches=[
        m if m.verdict != SLOWER else _judged(m, confirm_id, launches, paired_launches,
                                              paired, by_key, notes)
        for m in c.matches])


def _judged(m: Match, confirm_id: str, launches: int, paired_launches: int,
            paired: dict[str, Any], by_key: dict[tuple[str, str, str, int], Any],
            notes: dict[str, str]) -> Match:
    """One slower pair with its confirmation: the paired launches' verdict, or compare's
    against the stored baseline."""
    if m.new_job in paired:
        word, ratio, p_value = paired[m.new_job]
        note: dict[str, Any] = {"run_id": confirm_id, "launches": paired_launches,
                                "verdict": word, "ratio": ratio, "p_value": p_value,
                                "baseline": "interleaved", "baseline_note": None}
        how = (f"in {paired_launches} launches interleaved with the baseline's file "
               f"(run {confirm_id})")
    else:
        r = by_key.get(_key(m))
        word = r.verdict if r is not None else "not measured"
        ratio = r.ratio if r is not None else None
        note = {"run_id": confirm_id, "launches": launches, "verdict": word, "ratio": ratio,
                "p_value": r.p_value if r is not None else None, "baseline": "stored",
                "baseline_note": notes.get(m.new_job)}
        how = (f"in {launches} confirmation launches against the stored baseline "
               f"({notes.get(m.new_job)}; run {confirm_id})")
    times = f" (×{ratio:.2f})" if ratio else ""
    if word == SLOWER:
        return dataclasses.replace(m, confirmation={**note, "state": CONFIRMED},
                                   reason=f"confirmed: slower again{times} {how}")
    return dataclasses.replace(
        m, verdict=NOT_CONFIRMED, confirmation={**note, "state": NOT_CONFIRMED},
        reason=f"slower in this run (×{m.ratio:.2f}) but {word}{times} {how}: a one-off, not "
               "reported as a regression")
