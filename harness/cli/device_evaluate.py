"""``quantlab evaluate VARIANTS --data D --device DEV[,…] --delegate D[,…] [--samples N]``:
accuracy from each device's own outputs (:mod:`quantlab.harness.device_eval`), printed as a
table or ``--json`` (``{"rows": [...]}``), stored with the device, delegate, runtime and
sample set, and exit 1 when a (variant, device, delegate) fails its gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape

from quantlab.harness.cli.common import console, err_console, fail, print_json, split_list, warn
from quantlab.harness.cli.tables import label_column, new_table, number_column, shorten

PASS, FAIL = "[green]pass[/]", "[red]FAIL[/]"


def run_device_evaluation(variants_dir: str, data: str, *, device: str, delegate: str | None,
                          samples: int | None, results: str | None, json_out: bool,
                          **options: Any) -> None:
    """Discover and pick the devices, evaluate on each (device, delegate), store the rows
    (``results``: a store location, None: not stored), print them; exit 1 on a failed gate."""
    from quantlab.harness.device_eval import evaluate_on_devices, parse_delegates
    from quantlab.harness.plan import select_devices
    from quantlab.session import discover

    delegates = parse_delegates(delegate)
    fleet = discover()
    devices = select_devices(fleet, split_list(device))
    with err_console.status("evaluating on the devices") as status:
        report = evaluate_on_devices(
            fleet, devices, variants_dir, data, delegates=delegates, samples=samples,
            note=warn, progress=lambda text: status.update(f"evaluating: {escape(text)}"),
            **options)
    if not report["rows"]:  # every (variant, device, delegate) was refused: say why
        why = "; ".join(sorted({s["reason"] for s in report["skipped"]}))
        raise fail(f"--device {device}: nothing to evaluate: {why}", 2)
    if results is not None:
        from quantlab.harness.evaluations import save_device_rows

        save_device_rows(report, results)
    if json_out:
        print_json(report)
    else:
        print_device_rows(report)
    if report["failed"]:
        raise fail(f"gate failed on the device for: {', '.join(report['failed'])}", 1)


def _pt(value: float | None, lower: bool) -> str:
    if value is None:
        return "–"
    return f"{value:+.4g}" if lower else f"{100 * value:+.2f}"


def print_device_rows(report: dict[str, Any]) -> None:
    """The rows as a table (metric, drop vs the float model on the host with its interval,
    drop vs the same variant on the host, gate); below it, the reasons and the samples."""
    metric = report["metric"]
    table = new_table(f"Accuracy on the device ({report['task']['name']}, {metric}; float "
                      f"model on the host: {report['reference']['value']:.4g})")
    label_column(table, "variant", 14)
    label_column(table, "device", 14)
    label_column(table, "delegate", 10)
    number_column(table, metric)
    number_column(table, "drop pt")
    number_column(table, "95% interval")
    number_column(table, "vs host pt")
    table.add_column("gate", no_wrap=True)
    notes = []
    for r in report["rows"]:
        name = r["scheme"] or Path(r["path"]).name
        gate, vs = r["gate"], r["vs_host"]
        lower = metric in ("mse", "mae", "rmse")
        iv = gate.get("interval") or {}
        span = "–" if not iv else f"{_pt(iv['low'], lower)} … {_pt(iv['high'], lower)}"
        table.add_row(name, r["device"], r["delegate"],
                      "–" if r["value"] is None else f"{r['value']:.4g}",
                      _pt(gate["drop"], lower), span, _pt(vs.get("drop"), lower),
                      PASS if gate["passed"] else FAIL)
        if r["error"] or not gate["passed"]:
            notes.append(f"{name} on {r['device']} · {r['delegate']}: "
                         f"{r['error'] or gate.get('why')}")
        elif vs.get("error"):
            notes.append(f"{name} on {r['device']} · {r['delegate']}: no host figure "
                         f"({vs['error']})")
    console.print(table)
    for n in notes:
        console.print(f"  {escape(shorten(n, 300))}")
    for s in report["skipped"]:
        console.print(f"  skipped {escape(Path(s['path']).name)} on {s['device']} · "
                      f"{s['delegate']}: {escape(s['reason'])}")
    ss = report["sample_set"] or {}
    console.print(f"  {report['samples']} samples ({escape(ss.get('method', 'every sample'))}; "
                  f"set {str(ss.get('indices_sha256', ''))[:12]})")
    seen = set()
    for r in report["rows"]:
        run = r["run"]
        key = (r["device"], r["delegate"], run["runner"])
        if key in seen or run.get("error"):
            continue
        seen.add(key)
        per = run.get("ms_per_sample")
        console.print(f"  {r['device']} · {r['delegate']}: {escape(run['runner'])}"
                      + (f" ({escape(run['runner_detail'])})" if run.get("runner_detail") else "")
                      + f"; {run['launches']} launch(es), transfers "
                      f"{run['transfers'].get('push', 0)} push / "
                      f"{run['transfers'].get('pull', 0)} pull"
                      + (f", {per:.2f} ms per sample" if per is not None else ""))
