"""The dashboard's HTML pages: lab, runs, one run, a comparison, trends, one series.

Each page reads through :mod:`quantlab.harness.serve.data` and queries with a limit, so it
costs the same on a store of ten thousand runs as on one of ten. The run page draws the
HTML report's own sections; the trends page the ``history`` plots with their change points.
"""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from quantlab.harness.errors import UserError
from quantlab.harness.serve import data
from quantlab.harness.serve.context import Context, get_context, html_response, text_response
from quantlab.harness.serve.lab import lab_view
from quantlab.harness.serve.markup import (
    a,
    e,
    filter_form,
    nodata,
    page,
    pager,
    section,
    table,
    url,
)

router = APIRouter(include_in_schema=False)
Ctx = Annotated[Context, Depends(get_context)]
Text = Annotated[str | None, Query()]
RUN_FIELDS: tuple[tuple[str, str, str | tuple[str, ...]], ...] = (
    ("model", "model", "file, scheme or 'int8 (m.tflite)'"), ("device", "device", "device id"),
    ("delegate", "delegate", "xnnpack, gpu …"), ("tag", "tag", "nightly"),
    ("status", "status", ("running", "done", "incomplete", "interrupted")),
    ("since", "from", ""), ("until", "to", ""))
"""The run filters: (name, label, placeholder or the values to choose from)."""


def _page(ctx: Ctx, title: str, body: str, active: str, subtitle: str = "") -> Response:
    return html_response(ctx, page(title, body, active=active, location=ctx.location,
                                   auth=ctx.token is not None, subtitle=subtitle))


def run_link(run_id: str) -> str:
    """A link to a run's page."""
    return a(f"/runs/{quote(run_id)}", run_id)


# ----------------------------------------------------------------------------- lab


def _doing(d: dict[str, Any]) -> str:
    doing = d.get("doing")
    if not doing:
        return "–"
    if doing["source"] == "lab":
        return f"{e(doing['label'])} <span class=muted>({e(doing['phase'])}, " \
               f"{doing['since_s']:.0f} s)</span>"
    return f"{e(doing['label'])} <span class=muted>in {run_link(doing['run_id'])} since " \
           f"{e(doing['started_at'])}</span>"


def _state(d: dict[str, Any]) -> str:
    kind = {"idle": "up", "busy": "up", "unreachable": "down"}.get(d["state"], "muted")
    return f'<span class="{kind}">{e(d["state"])}</span>'


def lab_live(ctx: Context) -> str:
    """The lab page's live part (what the page's script fetches again every few seconds)."""
    view = lab_view(data.lab(ctx.store), ctx.live)
    out = []
    if view["cluster_error"]:
        out.append(f"<p class=bad>the lab did not answer: {e(view['cluster_error'])}</p>")
    if view["hosts"] is not None:
        out.append("<h3>Lab hosts</h3>" + table(
            ["host", "address", "state", "devices"],
            [[e(n["host"] or "(head/controller)"), e(n["ip"]),
              '<span class="up">alive</span>' if n["alive"] else '<span class="down">dead</span>',
              e(", ".join(n["devices"]) or "–")] for n in view["hosts"]], id_="lab-hosts"))
    rows = []
    for d in view["devices"]:
        where = " · ".join(str(x) for x in (d["model"] or d["name"], d["soc"],
                                            d["os_version"] and f"OS {d['os_version']}") if x)
        health = []
        if d["battery_pct"] is not None:
            health.append(f"battery {d['battery_pct']} %")
        if d["temperature_c"] is not None:
            health.append(f"{d['temperature_c']} °C")
        if d["thermal"] is not None:
            health.append(f"thermal {d['thermal']}")
        src = {"snapshot": f"at {d['snapshot_at']}", "live": "live"}.get(d["health_source"] or "")
        rows.append([e(d["device_id"]), e(d["platform"]), e(where or "–"), _state(d),
                     e(", ".join(health) or "–") + (f" <span class=muted>({e(src)})</span>"
                                                   if src and health else ""),
                     _doing(d), str(d["runs"]),
                     run_link(d["last_run"]) + f" <span class=muted>{e(d['last_seen'])}</span>"
                     if d["last_run"] else "–"])
    out.append("<h3>Devices</h3>" + (table(
        ["device", "platform", "model", "state", "health", "doing now", "runs", "last run"],
        rows, id_="lab-devices", numeric={6}) if rows else nodata("no device in the store yet "
                                                                 "(quantlab bench stores them)")))
    return "".join(out)


@router.get("/")
def lab_page(ctx: Ctx) -> Response:
    """Lab: the devices known to the store (live from the lab with --cluster)."""
    where = "live from the lab and the store" if ctx.live else "as the store last saw them"
    body = section("lab", "Lab", f"<p>Devices {where}; refreshed every {ctx.refresh_s:g} s "
                   f"without reloading (last: <span id=refreshed>on load</span>).</p>"
                   f'<div id="lab-live" data-refresh="{ctx.refresh_s:g}">{lab_live(ctx)}</div>')
    return _page(ctx, "Lab", body, "lab")


@router.get("/lab/live")
def lab_fragment(ctx: Ctx) -> Response:
    """The lab page's live part alone."""
    return html_response(ctx, lab_live(ctx))


# ----------------------------------------------------------------------------- runs


def _filter(model: str | None, device: str | None, delegate: str | None, tag: str | None,
            status: str | None, since: str | None, until: str | None) -> data.RunFilter:
    return data.RunFilter(model=model or None, device=device or None, delegate=delegate or None,
                          tag=tag or None, status=status or None, since=since or None,
                          until=until or None)


@router.get("/runs")
def runs_page(ctx: Ctx, model: Text = None, device: Text = None, delegate: Text = None,
              tag: Text = None, status: Text = None, since: Text = None, until: Text = None,
              limit: int = 50, offset: int = 0) -> Response:
    """Runs: newest first, filtered, a page at a time; tick two to compare them."""
    f = _filter(model, device, delegate, tag, status, since, until)
    started = time.perf_counter()
    rows, total = data.runs(ctx.store, f, limit, offset)
    params = {k: getattr(f, k) for k, _, _ in RUN_FIELDS}
    form = filter_form("/runs", [(k, label, getattr(f, k), ph) for k, label, ph in RUN_FIELDS])
    out = []
    for r in rows:
        jobs = ", ".join(f"{n} {s}" for s, n in sorted(r["jobs"].items()))
        tags = "".join(f'<span class="pill">{e(t)}</span>' for t in r["tags"])
        out.append([f'<input type="checkbox" name="run" value="{e(r["run_id"])}" '
                    f'form="compare-form" aria-label="pick {e(r["run_id"])}">',
                    run_link(r["run_id"]), e(r["created_at"].replace("T", " ")[:19]),
                    e(r["status"]), e(jobs), e(", ".join(r["models"])),
                    e(", ".join(r["devices"])), tags])
    compare = ('<form id="compare-form" method="get" action="/compare">'
               '<button type="submit">Compare the two runs</button> <span class=muted>the '
               "older of the two is the baseline</span></form>")
    took = (time.perf_counter() - started) * 1000
    body = section("runs", "Runs", form + compare + pager("/runs", params, total, limit, offset,
                                                         "runs")
                   + (table(["", "run", "when (UTC)", "status", "jobs", "models", "devices",
                             "tags"], out, id_="runs-table") if out else nodata(
                       "no run matches these filters"))
                   + f"<p class=muted>queried in {took:.0f} ms</p>")
    return _page(ctx, "Runs", body, "runs", subtitle=f"{total} run(s) match")


def _raw_section(rec: data.RunRecord, names: dict[str, str]) -> str:
    rows = []
    for entry in rec.entries:
        files = entry.raw.raw_files if entry.raw else ()
        links = " ".join(a(data.raw_url(rec.run.run_id, entry.job.job_id, f.name), f.name,
                           class_="raw") for f in files) or "–"
        rows.append([e(names[entry.job.job_id]), e(entry.job.device_id), e(entry.job.delegate),
                     str(entry.job.threads), e(entry.status), links])
    return section("raw", "Raw runner output behind every figure", table(
        ["variant", "device", "delegate", "threads", "status", "raw files"], rows,
        id_="raw-files") if rows else nodata("no jobs"))


@router.get("/runs/{run_id}")
def run_page(ctx: Ctx, run_id: str, baseline: Text = None) -> Response:
    """One run: the HTML report's sections, its raw output and its verdicts."""
    rec = data.record(ctx.store, run_id)
    rid = rec.run.run_id
    names = {en.job.job_id: data.series_name(en.job.model.scheme, en.job.model.path)
             for en in rec.entries}
    parts = data.sections(ctx.store, rec, baseline)
    nav = " · ".join(a(f"#{k}", k) for k in (*data.SECTIONS, "raw"))
    series = " · ".join(a(url("/trends/series", model=names[en.job.job_id],
                              device=en.job.device_id, delegate=en.job.delegate,
                              threads=en.job.threads),
                          f"{names[en.job.job_id]} · {en.job.device_id} · {en.job.delegate}")
                        for en in rec.entries if en.status == "ok")
    head = (f"<p>{e(rec.status)} · {e(rec.run.created_at)} · host {e(rec.run.host)} · git "
            f"{e(rec.run.git_sha)} · tags {e(', '.join(rec.tags) or 'none')}</p>"
            f"<p><code>{e(rec.run.command)}</code></p>"
            f"<p>Verdicts the nightly wrote: {a(f'/runs/{quote(rid)}/verdicts.xml', 'JUnit')} · "
            f"{a(f'/runs/{quote(rid)}/verdicts.md', 'Markdown')} · "
            f"{a(f'/api/runs/{quote(rid)}', 'JSON')}</p>"
            f'<form class="filters" method="get" action="/compare"><input type="hidden" '
            f'name="b" value="{e(rid)}"><label>compare with (baseline run)<input name="a" '
            f'placeholder="run id"></label><button type="submit">Compare</button></form>'
            f"<p>Trends: {series or '–'}</p><p>{nav}</p>")
    body = section("run", f"Run {rid}", head) + "".join(parts) + _raw_section(rec, names)
    return _page(ctx, f"Run {rid}", body, "runs")


@router.get("/runs/{run_id}/jobs/{job_id}/raw/{name}")
def raw_file(ctx: Ctx, run_id: str, job_id: str, name: str) -> Response:
    """One raw file of a job (text shown as text, anything else downloaded)."""
    rec = data.record(ctx.store, run_id)
    f, blob = data.raw_file(ctx.store, rec, job_id, name)
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        for secret in ctx.secrets:
            blob = blob.replace(secret.encode(), b"***")
        return Response(blob, media_type="application/octet-stream", headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(f.name)}"})
    return text_response(ctx, text, "text/plain; charset=utf-8")


@router.get("/runs/{run_id}/verdicts.xml")
def run_junit(ctx: Ctx, run_id: str, baseline: Text = None) -> Response:
    """The nightly's JUnit XML for the run (against its baseline when it names one)."""
    v = data.verdicts(ctx.store, data.record(ctx.store, run_id), baseline or None)
    return text_response(ctx, v.junit(), "application/xml")


@router.get("/runs/{run_id}/verdicts.md")
def run_markdown(ctx: Ctx, run_id: str, baseline: Text = None) -> Response:
    """The nightly's Markdown summary for the run."""
    v = data.verdicts(ctx.store, data.record(ctx.store, run_id), baseline or None)
    return text_response(ctx, f"<!-- {v.why} -->\n" + v.markdown(),
                         "text/markdown; charset=utf-8")


# ----------------------------------------------------------------------------- compare


def _pair_ids(ctx: Context, a_: str | None, b_: str | None, run: list[str]) -> tuple[str, str]:
    if run:
        return data.oldest_first(ctx.store, run)
    if not a_ or not b_:
        raise UserError("compare needs two runs", hint="pick two runs in the run list, "
                             "or give ?a=BASELINE&b=NEW")
    return a_, b_


@router.get("/compare")
def compare_page(ctx: Ctx, a_: Annotated[str | None, Query(alias="a")] = None, b: Text = None,
                 run: Annotated[list[str] | None, Query()] = None, threshold: str = "5%",
                 match: Text = None, allow_missing: bool = False) -> Response:
    """Two runs compared with the verdicts ``quantlab compare`` gives."""
    base, new = _pair_ids(ctx, a_, b, run or [])
    c = data.compare(ctx.store, base, new, threshold, match, allow_missing)
    q = {"a": c.baseline, "b": c.new, "threshold": threshold, "match": match,
         "allow_missing": allow_missing}
    rows = []
    for m in c.matches:
        ratio = "–" if m.ratio is None else f"{m.ratio:.3f}" + (
            f" [{m.ratio_ci95[0]:.3f}–{m.ratio_ci95[1]:.3f}]" if m.ratio_ci95 else "")
        kind = {"slower": "bad", "failed": "bad", "faster": "good"}.get(m.verdict, "")
        raw = " ".join(a(f"/runs/{quote(rid)}#raw", side) for rid, side in
                       ((c.baseline, "baseline"), (c.new, "new")))
        rows.append([e(m.model), e(m.device), e(m.delegate), str(m.threads), e(m.method),
                     e(_ms(m.baseline_ms)), e(_ms(m.new_ms)), e(ratio),
                     "–" if m.p_value is None else f"{m.p_value:.2g}",
                     f'<span class="{kind}">{e(m.verdict)}</span>'
                     + (f" <span class=muted>{e(m.reason)}</span>" if m.reason else ""), raw])
    left = "".join(f"<p class='warn'>only in {where}: {e(u.label)} ({e(u.verdict)}: "
                   f"{e(u.reason or u.status)})</p>"
                   for where, us in (("baseline", c.only_in_baseline), ("new run", c.only_in_new))
                   for u in us)
    tests = "; ".join(f"{k}: {v}" for k, v in c.tests.items()
                      if any(m.method == k for m in c.matches))
    verdict = ("fails the gate" if c.fails else "passes the gate")
    body = section("compare", f"{c.new} against baseline {c.baseline}", (
        f"<p>{run_link(c.baseline)} (baseline) → {run_link(c.new)} · threshold "
        f"{100 * c.threshold:g} % · matched on {e(','.join(c.match_keys))} · "
        f'<b class="{"bad" if c.fails else "good"}" id="gate">{verdict}</b></p>'
        f"<p>{a(url('/compare/verdicts.xml', **q), 'JUnit')} · "
        f"{a(url('/compare/verdicts.md', **q), 'Markdown')} · "
        f"{a(url('/api/compare', **q), 'JSON')}</p>"
        + (table(["variant", "device", "delegate", "thr", "method", "baseline", "new",
                  "ratio [95% CI]", "p", "verdict", "raw output"], rows, id_="compare-table",
                 numeric={3, 5, 6, 7, 8}) if rows else nodata("no job matched between the runs"))
        + left + f"<p class=muted>{e(tests)}; {e(c.rule)}</p>"))
    return _page(ctx, "Compare", body, "runs")


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.3g} ms"


@router.get("/compare/verdicts.xml")
def compare_junit(ctx: Ctx, a_: Annotated[str, Query(alias="a")], b: str,
                  threshold: str = "5%", match: Text = None,
                  allow_missing: bool = False) -> Response:
    """JUnit XML of a comparison, as ``quantlab compare --junit`` writes it."""
    from quantlab.harness.report.ci import comparison_junit

    c = data.compare(ctx.store, a_, b, threshold, match, allow_missing)
    return text_response(ctx, comparison_junit(c), "application/xml")


@router.get("/compare/verdicts.md")
def compare_markdown(ctx: Ctx, a_: Annotated[str, Query(alias="a")], b: str,
                     threshold: str = "5%", match: Text = None,
                     allow_missing: bool = False) -> Response:
    """Markdown summary of a comparison, as ``quantlab compare --markdown`` writes it."""
    from quantlab.harness.report.ci import comparison_markdown

    c = data.compare(ctx.store, a_, b, threshold, match, allow_missing)
    return text_response(ctx, comparison_markdown(c), "text/markdown; charset=utf-8")


# ----------------------------------------------------------------------------- trends


@router.get("/trends")
def trends_page(ctx: Ctx, model: Text = None, device: Text = None, delegate: Text = None,
                tag: Text = None, since: Text = None, until: Text = None,
                last: int = data.DEFAULT_LAST, limit: int = 50, offset: int = 0) -> Response:
    """Trends: the series of the newest runs, each linking to its plot."""
    f = _filter(model, device, delegate, tag, None, since, until)
    rows, total = data.series(ctx.store, f, limit, offset, last)
    params = {"model": f.model, "device": f.device, "delegate": f.delegate, "tag": f.tag,
              "since": f.since, "until": f.until, "last": last}
    out = [[a(url("/trends/series", model=s["model"], device=s["device"],
                  delegate=s["delegate"], threads=s["threads"], tag=f.tag, last=last),
              s["model"], class_="series"), e(s["device"]), e(s["delegate"]), str(s["threads"]),
            str(s["runs"]), e(s["last_seen"].replace("T", " ")[:19])] for s in rows]
    form = filter_form("/trends", [(k, label, getattr(f, k), ph) for k, label, ph in RUN_FIELDS
                                   if k in params] + [("last", "newest runs", str(last), "")])
    body = section("trends", "Trends", (
        f"<p>The series (model × device × delegate × threads) of the {last} newest runs "
        "that match (the dates reach further back). A series' page plots its own "
        f"{last} newest runs with the change points <code>quantlab history</code> finds "
        "(dotted while unconfirmed) and the slow drift against a fixed reference.</p>" + form
        + pager("/trends", params, total, limit, offset, "series")
        + (table(["series (model)", "device", "delegate", "threads", f"of the {last} runs",
                  "last run (UTC)"],
                 out, id_="series-table", numeric={3, 4}) if out else
           nodata("no series matches these filters"))))
    return _page(ctx, "Trends", body, "trends")


@router.get("/trends/series")
def series_page(ctx: Ctx, model: str, device: str, delegate: str, threads: int,
                tag: Text = None, last: int = data.DEFAULT_LAST,
                threshold: str = "5%") -> Response:
    """One series: its plot with change points and their confirmation, and each run's
    verdicts."""
    found = data.history(ctx.store, model=model, device=device, delegate=delegate,
                         threads=threads, tag=tag or None, last=last, threshold=threshold)
    body = data.history_html(found)
    rows = []
    for s in found.series:
        for p in reversed(s.points):
            fig = "–" if p.value_ms is None else f"{p.statistic} {_ms(p.value_ms)}"
            rows.append([run_link(p.run_id), e(p.created_at.replace("T", " ")[:19]),
                         e(p.status), e(fig), e(p.method),
                         f"{a(f'/runs/{quote(p.run_id)}/verdicts.xml', 'JUnit')} · "
                         f"{a(f'/runs/{quote(p.run_id)}/verdicts.md', 'Markdown')}"])
    title = f"{model} · {device} · {delegate} · {threads}t"
    api = url("/api/history", model=model, device=device, delegate=delegate, threads=threads,
              tag=tag, last=last, threshold=threshold)
    body = section("history", title, body + f"<p>{a(api, 'JSON')}</p>") + section(
        "points", "Runs of this series, newest first, with the nightly's verdicts",
        table(["run", "when (UTC)", "status", "figure", "method", "verdicts"], rows,
              id_="points-table") if rows else nodata("no run has this series"))
    return _page(ctx, title, body, "trends")
