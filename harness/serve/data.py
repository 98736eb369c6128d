"""What the served dashboard reads and works out, from the store's read models and the
report's public functions: the one module of :mod:`quantlab.harness.serve` that imports them
(compare's statistics are moving to a module of their own: their import lines are here).

Nothing here writes to the store. Plots are drawn with pyplot, whose state is global:
whatever draws one holds :data:`PLOTS` (the server renders pages on several threads).
"""

from __future__ import annotations

import shlex
import threading
import tomllib
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from quantlab.harness.errors import UserError
from quantlab.harness.records import RawFile
from quantlab.harness.report.ci import (
    comparison_junit,
    comparison_markdown,
    run_junit,
    run_markdown,
)
from quantlab.harness.report.html import SECTIONS, history_body, report_sections
from quantlab.harness.report.html_markup import CSS
from quantlab.harness.results import run_dict
from quantlab.harness.store import JobEntry, RunRecord, Store, listing
from quantlab.harness.store.listing import RunFilter, series_name
from quantlab.harness.verdicts.compare import Comparison, compare_runs, parse_match
from quantlab.harness.verdicts.history import DEFAULT_LAST, History, build_history, with_drift
from quantlab.harness.verdicts.latency import DEFAULT_THRESHOLD, parse_threshold

__all__ = ["CSS", "DEFAULT_LAST", "DEFAULT_THRESHOLD", "PLOTS", "SECTIONS", "Comparison",
           "History", "NotFound", "RunFilter", "RunRecord", "Verdicts", "series_name"]

PLOTS = threading.Lock()
"""Held while anything draws with pyplot (its figures live in one global state)."""


class NotFound(UserError):
    """A run, job or raw file the store does not hold (HTTP 404)."""


# ----------------------------------------------------------------------------- lists


def runs(store: Store, f: RunFilter, limit: int, offset: int
         ) -> tuple[list[dict[str, Any]], int]:
    """One page of runs (newest first) and how many ``f`` selects in all."""
    with store.engine.connect() as conn:
        return listing.runs_page(conn, f, limit, offset)


def run_count(store: Store) -> int:
    """How many runs the store holds."""
    with store.engine.connect() as conn:
        return listing.count_runs(conn)


def lab(store: Store) -> dict[str, Any]:
    """The devices the store has met and the jobs it says are running now."""
    with store.engine.connect() as conn:
        return {"devices": listing.known_devices(conn), "running": listing.running_jobs(conn)}


def series(store: Store, f: RunFilter, limit: int, offset: int, last: int
           ) -> tuple[list[dict[str, Any]], int]:
    """One page of the series the jobs of the ``last`` newest selected runs make, and how
    many there are."""
    with store.engine.connect() as conn:
        return listing.series_keys(conn, f, limit, offset, last)


# ----------------------------------------------------------------------------- one run


def record(store: Store, run_id: str) -> RunRecord:
    """A stored run by id, unique prefix or ``latest`` (:class:`NotFound` otherwise)."""
    try:
        return store.load_run(run_id)
    except UserError as exc:
        if "ambiguous" in exc.message:
            raise
        raise NotFound(exc.message, hint=exc.hint) from None


def raw_url(run_id: str, job_id: str, name: str) -> str:
    """Where the dashboard serves one raw file of a job."""
    return f"/runs/{quote(run_id)}/jobs/{quote(job_id)}/raw/{quote(name, safe='')}"


def run_json(rec: RunRecord) -> dict[str, Any]:
    """``show --json``'s document of the run, each raw file with its ``url``."""
    data = run_dict(rec)
    for r in data["results"]:
        for f in r["raw_files"]:
            f["url"] = raw_url(rec.run.run_id, r["job_id"], f["name"])
    data["links"] = {"page": f"/runs/{quote(rec.run.run_id)}",
                     "junit": f"/runs/{quote(rec.run.run_id)}/verdicts.xml",
                     "markdown": f"/runs/{quote(rec.run.run_id)}/verdicts.md"}
    return data


def entry(rec: RunRecord, job_id: str) -> JobEntry:
    """The run's job with this id or unique prefix."""
    found = [e for e in rec.entries if e.job.job_id.startswith(job_id)]
    if len(found) != 1:
        raise NotFound(f"run {rec.run.run_id}: no job {job_id}" if not found else
                       f"run {rec.run.run_id}: job {job_id} is ambiguous")
    return found[0]


def raw_file(store: Store, rec: RunRecord, job_id: str, name: str) -> tuple[RawFile, bytes]:
    """One raw file of a job and its bytes, as ``show --raw JOB --file NAME`` prints them."""
    e = entry(rec, job_id)
    files = [f for f in (e.raw.raw_files if e.raw else ()) if f.name == name]
    if not files:
        raise NotFound(f"job {e.job.job_id} of run {rec.run.run_id}: no raw file {name!r}")
    return files[0], store.read_raw(files[0].sha256)


def sections(store: Store, rec: RunRecord, baseline: str | None) -> list[str]:
    """The HTML report's sections for one run."""
    if baseline:
        record(store, baseline)  # an unknown baseline is a 404, not a broken section
    with PLOTS:
        return report_sections(store, [rec], baseline)


# ----------------------------------------------------------------------------- compare


def compare(store: Store, a: str, b: str, threshold: str = "5%", match: str | None = None,
            allow_missing: bool = False) -> Comparison:
    """Run ``b`` against baseline ``a``, as ``quantlab compare A B`` judges it."""
    limit = parse_threshold(threshold)
    keys = parse_match(match)
    return compare_runs(record(store, a), record(store, b), limit, keys, allow_missing)


def oldest_first(store: Store, ids: list[str]) -> tuple[str, str]:
    """Two runs picked in the run list as (baseline, new): the older one is the baseline."""
    if len(ids) != 2:
        raise UserError(f"{len(ids)} run(s) picked", hint="pick exactly two runs to compare")
    a, b = (record(store, i) for i in ids)
    if (a.run.created_at, a.run.run_id) > (b.run.created_at, b.run.run_id):
        a, b = b, a
    return a.run.run_id, b.run.run_id


# ----------------------------------------------------------------------------- trends


def history(store: Store, *, model: str | None, device: str | None, delegate: str | None,
            threads: int | None, tag: str | None, last: int, threshold: str) -> History:
    """``quantlab history``'s series of the ``last`` newest matching runs, with change points
    and drift (``threads`` narrows it to one series)."""
    limit = parse_threshold(threshold)
    if not 1 <= last <= listing.MAX_PAGE:
        raise UserError(f"last {last}: out of range", hint=f"give 1 to {listing.MAX_PAGE}")
    ids = store.find_runs(tag=tag, model=model, device=device, delegate=delegate, limit=last)
    records = [store.load_run(i) for i in reversed(ids)]
    return build_history(records, limit, model=model, device=device, delegate=delegate,
                         threads=threads)


def history_html(found: History) -> str:
    """The trends section's content (plots drawn under :data:`PLOTS`)."""
    with PLOTS:
        return history_body(found)


# ----------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdicts:
    """What the nightly judged a run by: its comparison with its baseline (with each
    series' drift over the tag's runs before it), or the run alone without a baseline."""

    record: RunRecord
    comparison: Comparison | None
    baseline: str | None  # the tag or run id the run was compared with, as given
    why: str  # where the baseline came from, or why there is none

    def junit(self) -> str:
        """The JUnit XML ``bench --junit`` wrote for this run."""
        return (comparison_junit(self.comparison) if self.comparison is not None
                else run_junit(self.record))

    def markdown(self) -> str:
        """The Markdown summary ``bench --markdown`` wrote for this run."""
        return (comparison_markdown(self.comparison) if self.comparison is not None
                else run_markdown(self.record))


def _rules(store: Store, rec: RunRecord) -> dict[str, Any]:
    """The compare rules a run was made with: its plan file's [compare] table, else a
    ``--baseline`` (and ``--threshold``, ``--match``) on its stored command line."""
    text = store.run_plan_text(rec.run.run_id)
    if text:
        try:
            table = tomllib.loads(text).get("compare", {})
        except tomllib.TOMLDecodeError:
            table = {}
        if isinstance(table, dict) and table.get("baseline"):
            return table
    try:
        words = shlex.split(rec.run.command or "")
    except ValueError:
        return {}
    flags = {"--baseline": "baseline", "--threshold": "threshold", "--match": "match"}
    found: dict[str, Any] = {"allow_missing": "--allow-missing" in words}
    for k, word in enumerate(words[:-1]):
        if word in flags:
            found[flags[word]] = words[k + 1]
    return found if found.get("baseline") else {}


def _series_key(e: JobEntry) -> tuple[str, str, str, int]:
    return (series_name(e.job.model.scheme, e.job.model.path), e.job.device_id, e.job.delegate,
            e.job.threads)


def verdicts(store: Store, rec: RunRecord, baseline: str | None = None) -> Verdicts:
    """The nightly's verdicts on ``rec``: against ``baseline`` when given, else the
    baseline its plan (or command line) named, resolved as ``bench --baseline`` did
    when the run was made (a tag: its newest finished run before this one)."""
    rules = _rules(store, rec) if baseline is None else {"baseline": baseline}
    wanted = rules.get("baseline")
    if not wanted:
        return Verdicts(rec, None, None, "the run names no baseline (bench --baseline, or a "
                        "plan's [compare] baseline): its own results")
    with store.engine.connect() as conn:
        window = listing.earlier_runs(conn, str(wanted), rec.run.created_at, DEFAULT_LAST)
    tagged = any(t == wanted or t.startswith(f"{wanted}=") for t in rec.tags)
    if not window and (tagged or store.find_runs(tag=str(wanted), limit=1)):
        return Verdicts(rec, None, str(wanted), f"no finished run tagged {wanted} before this "
                        "one (nothing was compared): its own results")
    base_id = window[0] if window else record(store, str(wanted)).run.run_id
    if base_id == rec.run.run_id:
        return Verdicts(rec, None, str(wanted), f"baseline {wanted} is this run itself")
    match = rules.get("match")
    c = compare_runs(record(store, base_id), rec,
                     parse_threshold(str(rules.get("threshold") or "5%")),
                     parse_match(",".join(match) if isinstance(match, list) else match),
                     bool(rules.get("allow_missing", False)))
    if window:  # a tag: each series' drift over the tag's runs before this one
        keys = {_series_key(e) for e in rec.entries}  # only this run's series get a drift
        records = [replace(r, entries=tuple(e for e in r.entries if _series_key(e) in keys))
                   for r in (store.load_run(i) for i in reversed(window))]
        c = with_drift(c, build_history([*records, rec], c.threshold))
    return Verdicts(rec, c, str(wanted), f"baseline {wanted} → run {base_id}")
