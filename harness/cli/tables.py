"""Tables and lines the commands print, sized for an 80-column terminal.

Every table keeps one line per row: labels are shortened (the middle of a long
name gives way to "…"), a 95 % CI is written as ± its half-width, a column that
holds one value for every row moves into the title, and label columns give up
width first. ``rich`` loads only when a table is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

LABEL_WIDTH = 18
"""Longest model label in a table (longer names lose their middle)."""


def fmt_ms(value: float | None) -> str:
    """Milliseconds with a unit and sensible precision."""
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    if value < 0.1:
        return f"{value * 1000:.3g} µs"
    return f"{value:.3g} ms"


def shorten(text: str, width: int = LABEL_WIDTH) -> str:
    """``text`` in at most ``width`` characters: its middle replaced by "…" when longer."""
    if len(text) <= width:
        return text
    head = width // 2
    tail = width - 1 - head
    return f"{text[:head]}…{text[len(text) - tail:]}" if tail else text[:width - 1] + "…"


def model_label(model: dict[str, Any], width: int = LABEL_WIDTH) -> str:
    """A short, space-free name for a result's model: the file's stem, with the scheme
    when the stem does not already say it."""
    stem = Path(model["path"]).name.removesuffix(".tflite")
    scheme = model.get("scheme")
    label = stem if not scheme or scheme in stem else f"{stem}·{scheme}"
    return shorten(label.replace(" ", "_"), width)


def new_table(title: str, **kwargs: Any) -> Table:
    from rich import box
    from rich.table import Table

    # as wide as its title (within the terminal), so the title stays on one line
    # one space of padding right of each cell (the box adds one): two between columns
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                 padding=(0, 1, 0, 0), min_width=len(title), **kwargs)


def label_column(table: Table, name: str, max_width: int) -> None:
    # wrappable (so rich narrows it first) but labels have no spaces: it truncates instead
    table.add_column(name, overflow="ellipsis", max_width=max_width)


def number_column(table: Table, name: str) -> None:
    table.add_column(name, justify="right", no_wrap=True)


def _one_value(values: Sequence[Any]) -> Any:
    """The value every item has, else None."""
    distinct = set(values)
    return next(iter(distinct)) if len(distinct) == 1 else None


def latency_text(lat: dict[str, Any], with_statistic: bool = True) -> str:
    """``median 1.23 ms ±0.04`` (± the half-width of the 95 % CI; ``*`` when the figure is
    not from per-iteration samples)."""
    text = fmt_ms(lat.get("value"))
    if with_statistic:
        text = f"{lat.get('statistic', '')} {text}".strip()
    ci = lat.get("ci95")
    if ci:
        text += f" ±{plus_minus((ci[1] - ci[0]) / 2, lat.get('value'))}"
    if lat.get("method") and lat["method"] != "per-iteration":
        text += "*"
    return text


def terminal_width() -> int:
    """The width of the terminal stdout goes to (80 when it is not a terminal)."""
    from quantlab.harness.cli.common import console

    return console.width


def plus_minus(half_ms: float, value_ms: float | None) -> str:
    """A CI half-width in the unit :func:`fmt_ms` gives the value (µs below 0.1 ms)."""
    if value_ms is not None and value_ms < 0.1:
        return f"{half_ms * 1000:.2g}"
    return f"{half_ms:.2g}"


def results_table(results: list[dict[str, Any]], title: str = "Results",
                  width: int | None = None) -> Table:
    """The summary table of a run: one line per job (init times only when ``width``, the
    terminal's by default, has room for them)."""
    wide = (width or terminal_width()) >= 100
    devices = _one_value([r["device"]["id"] for r in results]) if results else None
    stat = _one_value([(r.get("latency_ms") or {}).get("statistic") for r in results
                       if r.get("latency_ms")])
    if devices:
        title += f" · on {devices}"
    table = new_table(title)
    label_column(table, "model", LABEL_WIDTH)
    if not devices:
        label_column(table, "device", 12)
    label_column(table, "delegate", 12)
    number_column(table, f"{stat or 'latency'} ±CI")
    number_column(table, "p90")
    if wide:
        number_column(table, "init")
    number_column(table, "mem")
    table.add_column("status", no_wrap=True)
    for r in results:
        lat = r.get("latency_ms") or {}
        cell = latency_text(lat, with_statistic=not stat) if r["status"] == "ok" and lat else "–"
        status = {"ok": "[green]ok[/]", "failed": "[red]failed[/]",
                  "skipped": "[yellow]skipped[/]"}.get(r["status"], r["status"])
        if r.get("warnings"):
            status += f" [yellow]⚠{len(r['warnings'])}[/]"
        mem = r.get("peak_memory_mb")
        row = [model_label(r["model"])]
        if not devices:
            row.append(r["device"]["id"])
        row += [f"{r['delegate']}/{r['threads']}t", cell, fmt_ms(lat.get("p90")) if lat else "–",
                *([fmt_ms(r.get("init_ms"))] if wide else []), f"{mem:.0f} MB" if mem else "–",
                status]
        table.add_row(*row)
    if any((r.get("latency_ms") or {}).get("method") not in (None, "per-iteration")
           for r in results):
        table.caption = "* not from per-iteration samples (see show --json: latency_ms.method)"
        table.caption_justify = "left"
    return table


def energy_lines(results: list[dict[str, Any]]) -> list[str]:
    """One line per energy figure with its comparability class, method and label (empty
    when no job has one). Figures of different classes are not comparable."""
    lines = []
    for r in results:
        e = r.get("energy")
        if not e:
            continue
        what = f" · {e['label']}" if e.get("label") else ""
        if e.get("baseline_mw") is not None:
            what += f" · idle {e['baseline_mw']:.0f} mW subtracted"
        lines.append(f"energy {model_label(r['model'])} · {r['device']['id']} · "
                     f"{r['delegate']}: {e['mj_per_inference']:.3g} mJ/inference · "
                     f"{e.get('comparability') or '?'} ({e['method']}){what}")
    if lines:
        lines.insert(0, "[bold]Energy per inference[/] [dim](compare only within one class on "
                        "one device)[/]")
    return lines


def ops_table(result: dict[str, Any], top: int = 15) -> Table:
    """Top ops of one result by time, with coverage (op sum vs whole model)."""
    ops = sorted(result["ops"], key=lambda o: -o["avg_ms"])[:top]
    cover = ""
    if result.get("ops_sum_ms") and result.get("ops_model_ms"):
        cover = (f" · op sum {fmt_ms(result['ops_sum_ms'])} of "
                 f"{fmt_ms(result['ops_model_ms'])} "
                 f"({100 * result['ops_sum_ms'] / result['ops_model_ms']:.0f}%)")
    table = new_table(f"Top ops: {model_label(result['model'])} · {result['device']['id']} · "
                   f"{result['delegate']}{cover}")
    number_column(table, "#")
    label_column(table, "op type", 20)
    label_column(table, "kernel", 28)
    label_column(table, "delegate", 10)
    number_column(table, "avg")
    number_column(table, "%")
    for o in ops:
        avg = fmt_ms(o["avg_ms"]) if o["unit"] == "ms" else f"{o['avg_ms']:.0f} {o['unit']}"
        table.add_row(str(o["index"]), o["op_type"] or "?", o["kernel"], o["delegate"] or "CPU",
                      avg, f"{o['pct']:.1f}" if o["pct"] is not None else "–")
    return table


def _sensor_text(window: dict[str, Any]) -> tuple[str, str, str]:
    """A window's thermal state and hottest temperature, CPU frequencies and battery."""
    temps = window.get("temperatures_c") or {}
    state = window.get("thermal_status_name") or ""
    hottest = f"{max(temps.values()):.1f}°C" if temps else ""
    thermal = " ".join(x for x in (state, hottest) if x) or "–"
    freqs = window.get("cpu_freq_khz") or {}
    freq = (f"{min(freqs.values()) / 1e6:.2f}–{max(freqs.values()) / 1e6:.2f} GHz"
            if freqs else "–")
    battery = f"{window['battery_pct']}%" if window.get("battery_pct") is not None else "–"
    return thermal, freq, battery


def sustained_table(result: dict[str, Any]) -> Table:
    """A sustained run's windows: time, latency median and p90, throughput, thermal state,
    CPU frequencies, battery; the throttling window marked."""
    s = result["sustained"]
    table = new_table(f"Sustained: {model_label(result['model'])} · {result['device']['id']} · "
                      f"{result['delegate']} · {s['duration_s']:g}s in {s['window_s']:g}s windows")
    for name in ("from", "median", "p90", "/s"):
        number_column(table, name)
    label_column(table, "thermal", 16)
    label_column(table, "CPU freq", 16)
    number_column(table, "battery")
    throttled = (s.get("throttle") or {}).get("window")
    for i, w in enumerate(s["windows"]):
        mark = " ◀ throttled" if i == throttled else ""
        table.add_row(f"{w['start_s']:.1f}s", fmt_ms(w.get("median_ms")) + mark,
                      fmt_ms(w.get("p90_ms")), f"{w.get('throughput_ips') or 0:.1f}",
                      *_sensor_text(w))
    return table


def startup_table(results: list[dict[str, Any]]) -> Table:
    """The first second of each job: model load, delegate, first inference, the cold and
    the warm start's time to first result (warm: from the delegate's cache)."""
    from quantlab.harness.startup import cold_and_warm

    table = new_table("First second: cold and warm start")
    label_column(table, "model", LABEL_WIDTH)
    label_column(table, "delegate", 12)
    for name in ("load", "delegate", "1st inf", "cold", "warm"):
        number_column(table, name)
    for r in results:
        start = r.get("startup")
        if not start:
            continue
        c = start.get("cold") or {}
        cold, warm = cold_and_warm(start)
        table.add_row(model_label(r["model"]), f"{r['delegate']}/{r['threads']}t",
                      fmt_ms(c.get("load_ms")), fmt_ms(c.get("delegate_ms")),
                      fmt_ms(c.get("first_inference_ms")), fmt_ms(cold), fmt_ms(warm))
    return table


def accounts_line(accounts: list[Any]) -> str:
    """One line per device: ok / failed / skipped / interrupted / retries."""
    parts = []
    for a in accounts:
        where = f" on {a.host}" if a.host else ""
        parts.append(f"{a.device_id}{where}: {a.ok} ok, {a.failed} failed"
                     + (f", {a.skipped} skipped" if a.skipped else "")
                     + (f", {a.retries} retried" if a.retries else "")
                     + (f", {a.interrupted} interrupted" if a.interrupted else ""))
    return "per device — " + "; ".join(parts)


def short_tags(tags: list[str], most: int = 3, width: int = 14) -> str:
    """A run's tags for a table cell: plain tags before ``key=value`` ones, hashes cut to
    7 characters, each tag to ``width``, at most ``most`` of them then ``+N`` (``runs
    --json`` has them in full)."""
    out = []
    tags = sorted(tags, key=lambda tag: "=" in tag)
    for tag in tags[:most]:
        key, eq, value = tag.partition("=")
        if eq and len(value) > 7 and all(c in "0123456789abcdef" for c in value.lower()):
            tag = f"{key}={value[:7]}"
        out.append(tag if len(tag) <= width else tag[:width - 1] + "…")
    more = f",+{len(tags) - most}" if len(tags) > most else ""
    return ",".join(out) + more


def runs_table(rows: list[dict[str, Any]], location: str) -> Table:
    """Stored runs, one line each: id, when, status, job counts, tags (when any run has
    some), models and devices."""
    from rich.markup import escape

    table = new_table(f"Runs in {location}")
    table.add_column("run", no_wrap=True)
    table.add_column("UTC", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("jobs", no_wrap=True)
    tagged = any(r.get("tags") for r in rows)
    if tagged:
        label_column(table, "tags", 24)
    label_column(table, "models · devices", 40)
    for r in rows:
        jobs = " ".join(f"{n} {s}" for s, n in sorted(r["jobs"].items()))
        models = [m.removesuffix(".tflite") for m in r["models"]]
        what = ",".join(models[:2]) + (f",+{len(models) - 2}" if len(models) > 2 else "")
        what += "·" + ",".join(r["devices"])
        when = r["created_at"].replace("T", " ")[5:16]  # MM-DD HH:MM
        tags = [escape(short_tags(r.get("tags") or []))] if tagged else []
        table.add_row(r["run_id"], when, r["status"], jobs, *tags, what.replace(" ", "_"))
    return table


def comparison_table(c: Any) -> Table:
    """``compare``'s verdicts, one line per pair (ratio new/base with ± its CI)."""
    from quantlab.harness.verdicts.latency import FAILED, SAME, UNTESTABLE

    stats = {m.statistic for m in c.matches if m.statistic}
    methods = {m.method for m in c.matches if m.method}
    one_stat = next(iter(stats)) if len(stats) == 1 else None
    device = _one_value([m.device for m in c.matches]) if c.matches else None
    title = (f"{c.new} vs {c.baseline} (threshold {100 * c.threshold:g}%"
             f"{', ' + one_stat + 's' if one_stat else ''}{', on ' + device if device else ''})")
    table = new_table(title)
    label_column(table, "variant", LABEL_WIDTH)
    if not device:
        label_column(table, "device", 10)
    label_column(table, "delegate", 12)
    number_column(table, "base")
    number_column(table, "new")
    number_column(table, "ratio ±CI")
    table.add_column("verdict", no_wrap=True)
    colors = {"slower": "red", "faster": "green", FAILED: "red", UNTESTABLE: "yellow"}
    words = {SAME: "same"}
    for m in c.matches:
        col = colors.get(m.verdict, "dim")
        stat = f"{m.statistic} " if m.statistic and not one_stat else ""
        ratio = f"×{m.ratio:.3f}" if m.ratio is not None else "–"
        if m.ratio_ci95:
            ratio += f" ±{(m.ratio_ci95[1] - m.ratio_ci95[0]) / 2:.2g}"
        how = "*" if m.method and len(methods) > 1 and m.method != "per-iteration" else ""
        row = [shorten(Path(m.model).name.removesuffix(".tflite").replace(" ", "_"))]
        if not device:
            row.append(m.device)
        row += [f"{m.delegate}/{m.threads}t", stat + fmt_ms(m.baseline_ms),
                stat + fmt_ms(m.new_ms), ratio,
                f"[{col}]{words.get(m.verdict, m.verdict)}[/]{how}"]
        table.add_row(*row)
    if SAME in {m.verdict for m in c.matches}:
        table.caption = "same: no significant difference"
        table.caption_justify = "left"
    return table


def recommendation_table(run_id: str, by: str, recs: list[Any]) -> Table:
    """``recommend``'s pick per device, one line each (what the runner-up gives up is
    printed below the table)."""
    table = new_table(f"Recommendation for run {run_id} (by {by})")
    label_column(table, "device", 12)
    label_column(table, "best", LABEL_WIDTH)
    label_column(table, "delegate", 12)
    number_column(table, "latency")
    label_column(table, "accuracy", 16)
    label_column(table, "runner-up", LABEL_WIDTH)
    for r in recs:
        if r.best is None:
            table.add_row(r.device, "[red]none[/]", "–", "–", "–", "–")
            continue
        b = r.best
        acc = b.accuracy if b.drop is None else f"{b.accuracy} ({b.drop:+.3g})"
        if acc.startswith("accuracy not"):
            acc = "not evaluated"
        runner = shorten(f"{_name(r.runner_up.model)}/{r.runner_up.delegate}") \
            if r.runner_up else "–"
        table.add_row(r.device, f"[bold]{shorten(_name(b.model))}[/]",
                      f"{b.delegate}/{b.threads}t",
                      f"{b.latency_statistic} {fmt_ms(b.latency_ms)}", acc, runner)
    return table


def _name(model: str) -> str:
    return Path(model).name.removesuffix(".tflite").replace(" ", "_")
