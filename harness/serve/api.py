"""The dashboard's JSON endpoints (``/api/…``), documented in its OpenAPI schema
(``/api/openapi.json``) and in docs/serve.md. Each gives the same document the matching
``--json`` command prints, where there is one; none writes to the store."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from quantlab.harness.serve import data
from quantlab.harness.serve.context import Context, get_context, json_response
from quantlab.harness.serve.lab import lab_view

router = APIRouter(prefix="/api", tags=["quantlab"])
Ctx = Annotated[Context, Depends(get_context)]


def _q(text: str) -> Any:
    return Query(description=text)


Model = Annotated[str | None, _q("Only jobs on this model: file name, path, sha256, scheme, "
                                 "or 'scheme (file name)' as history prints it.")]
Device = Annotated[str | None, _q("Only jobs on this device id.")]
Delegate = Annotated[str | None, _q("Only jobs on this delegate.")]
Tag = Annotated[str | None, _q("Only runs with this tag (T matches T and every T=…).")]
Status = Annotated[str | None, _q("Only runs in this state: running, done, interrupted, "
                                  "incomplete.")]
Since = Annotated[str | None, _q("Runs made at or after this date (YYYY-MM-DD) or ISO time.")]
Until = Annotated[str | None, _q("Runs made up to this date (the whole day) or ISO time.")]
Limit = Annotated[int, _q("Rows per page (1–500).")]
Offset = Annotated[int, _q("Rows to skip (the page's start).")]
Threshold = Annotated[str, _q("The slowdown that counts: 5% or 0.05.")]


def _page(rows: list[dict[str, Any]], total: int, limit: int, offset: int, key: str
          ) -> dict[str, Any]:
    return {key: rows, "total": total, "limit": limit, "offset": offset,
            "next_offset": offset + limit if offset + limit < total else None}


@router.get("/status", summary="The store and how the server is set up")
def status(ctx: Ctx) -> Response:
    """The store's location (no password), how many runs it holds, whether requests need
    the lab token and whether the lab is asked live (``--cluster``). Always read-only."""
    return json_response(ctx, {"store": ctx.location, "runs": data.run_count(ctx.store),
                               "read_only": True, "auth": "token" if ctx.token else "loopback",
                               "cluster": ctx.live is not None, "refresh_s": ctx.refresh_s})


@router.get("/lab", summary="Devices and what each is doing")
def lab(ctx: Ctx) -> Response:
    """One row per device the store has met (and, with ``--cluster``, per device in the lab):
    its newest snapshot or live health (battery %, temperature, thermal state), its state
    (idle, busy, unreachable; without ``--cluster``: last seen), the job it is running now,
    how many runs it is in and its newest run; the lab's hosts (``--cluster``); the jobs the
    store says are running."""
    return json_response(ctx, lab_view(data.lab(ctx.store), ctx.live))


@router.get("/runs", summary="Runs, newest first, filtered, one page at a time")
def runs(ctx: Ctx, model: Model = None, device: Device = None, delegate: Delegate = None,
         tag: Tag = None, status: Status = None, since: Since = None, until: Until = None,
         limit: Limit = 50, offset: Offset = 0) -> Response:
    """``quantlab runs --json``'s rows (job counts by state, models, devices, tags) of the
    runs the filters select, with ``total`` and the next page's ``next_offset``."""
    f = data.RunFilter(model=model, device=device, delegate=delegate, tag=tag, status=status,
                       since=since, until=until)
    rows, total = data.runs(ctx.store, f, limit, offset)
    return json_response(ctx, _page(rows, total, limit, offset, "runs"))


@router.get("/runs/{run_id}", summary="One run, as show --json prints it")
def run(ctx: Ctx, run_id: str) -> Response:
    """``quantlab show RUN --json`` (``run_id``: an id, a unique prefix or ``latest``), each
    raw file with the ``url`` that serves it, and ``links`` to the run's page and verdicts."""
    return json_response(ctx, data.run_json(data.record(ctx.store, run_id)))


@router.get("/runs/{run_id}/verdicts", summary="What the nightly judged the run by")
def verdicts(ctx: Ctx, run_id: str, baseline: Annotated[str | None, _q(
        "Judge against this run id or tag instead of the one the run names.")] = None
             ) -> Response:
    """The run's comparison with the baseline its plan (or ``--baseline``) named, resolved
    as it was when the run was made (a tag: its newest finished run before this one), with
    each series' drift; ``comparison`` is null for a run without a baseline. The JUnit XML
    and Markdown of the same verdicts: ``/runs/RUN/verdicts.xml`` and ``.md``."""
    v = data.verdicts(ctx.store, data.record(ctx.store, run_id), baseline)
    return json_response(ctx, {"run_id": v.record.run.run_id, "baseline": v.baseline,
                               "why": v.why, "comparison": v.comparison.as_dict()
                               if v.comparison is not None else None})


@router.get("/compare", summary="Run b against baseline a, as compare --json")
def compare(ctx: Ctx, a: Annotated[str, _q("The baseline run (id, prefix, latest).")],
            b: Annotated[str, _q("The new run.")], threshold: Threshold = "5%",
            match: Annotated[str | None, _q("Keys that pair jobs: model,scheme,device,"
                                            "delegate,threads.")] = None,
            allow_missing: Annotated[bool, _q("Baseline jobs absent from b do not fail.")]
            = False) -> Response:
    """``quantlab compare A B --json``: every pair of jobs with its verdict (faster, slower,
    no significant difference, untestable, failed), ratio and CI, p-value and test; jobs
    only in one run; ``fails`` as the CI gate decides it."""
    c = data.compare(ctx.store, a, b, threshold, match, allow_missing)
    return json_response(ctx, c.as_dict())


@router.get("/series", summary="The series of the newest runs, one page at a time")
def series(ctx: Ctx, model: Model = None, device: Device = None, delegate: Delegate = None,
           tag: Tag = None, since: Since = None, until: Until = None,
           last: Annotated[int, _q("How many of the newest matching runs (1–500).")]
           = data.DEFAULT_LAST, limit: Limit = 50, offset: Offset = 0) -> Response:
    """Each (model as history names it, device, delegate, threads) of the ``last`` newest
    runs the filters select, with how many of them it is in and its newest run;
    ``/api/history`` gives one's points and change points."""
    f = data.RunFilter(model=model, device=device, delegate=delegate, tag=tag, since=since,
                       until=until)
    rows, total = data.series(ctx.store, f, limit, offset, last)
    return json_response(ctx, _page(rows, total, limit, offset, "series"))


@router.get("/history", summary="Series across runs, as history --json")
def history(ctx: Ctx, model: Model = None, device: Device = None, delegate: Delegate = None,
            threads: Annotated[int | None, _q("Only this thread count.")] = None,
            tag: Tag = None, last: Annotated[int, _q("How many of the newest matching runs "
                                                     "(1–500).")] = data.DEFAULT_LAST,
            threshold: Threshold = "5%") -> Response:
    """``quantlab history --json``: each series' points (figure, CI, method), its change
    points with their confirmation state, and its drift."""
    found = data.history(ctx.store, model=model, device=device, delegate=delegate,
                         threads=threads, tag=tag, last=last, threshold=threshold)
    return json_response(ctx, found.as_dict())
