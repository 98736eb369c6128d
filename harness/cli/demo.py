"""``quantlab demo``: the whole flow on a real model, on this machine, in a few minutes.

Train a small CNN on scikit-learn's digits (shipped with the package, no
download) → quantize it with every scheme → check each TFLite variant's
accuracy against the float model → benchmark the TFLite variants on the host
simulator with a per-op profile → one table, a recommendation, and an HTML
report. Every measurement lands in the same store as ``quantlab bench``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from quantlab.harness.cli.common import (
    JsonOpt,
    ResultsOpt,
    VerboseOpt,
    console,
    err_console,
    handle_errors,
    print_json,
    results_location,
    split_list,
    warn,
)
from quantlab.harness.errors import UserError

if TYPE_CHECKING:
    from rich.table import Table

    from quantlab.harness.records import Settings
    from quantlab.session import Session


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the app."""
    app.command("demo")(demo)


def _step(text: str) -> None:
    err_console.print(f"[bold cyan]›[/] {text}")


def _train(work: Path) -> tuple[Path, Path, Path]:
    """The trained digits CNN, its held-out data (evaluation) and its training split
    (calibration: never the evaluation samples)."""
    from quantlab.harness.quantize.demo_model import build_digits_model, write_training_split

    with err_console.status("training a CNN on scikit-learn digits (8×8 images, 10 classes)"):
        keras_path, data = build_digits_model(work / "model")
    return keras_path, data, write_training_split(work / "model")


def _train_detector(work: Path) -> dict[str, Path]:
    from quantlab.harness.quantize.demo_detector import build_detector

    with err_console.status("training a small detector on generated shapes (64×64 images, "
                            "squares, circles, triangles)"):
        return build_detector(work / "model", styles=("ssd",))


DETECTION_SCHEMES = "fp32,fp16,dynamic-int8,int8,int8-io"
"""The detection demo's schemes for ``--schemes all`` (TFLite: the SSD head needs its
TFLite_Detection_PostProcess op, which Core ML has no converter for)."""


def _quantize(keras_path: Path, data: Path, out: Path, schemes: str,
              eval_data: Path | None = None) -> Any:
    from quantlab.harness.cli.quantize import quantize_with_progress

    return quantize_with_progress(keras_path, split_list(schemes) or ["all"], data, out,
                                  eval_data=eval_data or data, force=True)


def _evaluate(variants: Path, data: Path, location: str,
              labels: Path | None = None) -> dict[str, Any]:
    from quantlab.harness.cli.quantize import evaluate_with_progress
    from quantlab.harness.evaluations import save_to_store

    report = evaluate_with_progress(variants, data, labels=labels,
                                    task="detection" if labels else None)
    save_to_store(report, location)
    return report


def _bench(session: Session, variants: Path, settings: Settings, verbose: bool
           ) -> dict[str, Any]:
    """The TFLite variants on the simulator through the measurement session; the finished
    run (``bench --json``'s record)."""
    from quantlab.harness.cli.bench import dispatch_jobs
    from quantlab.harness.plan import expand_models

    refs = [r for r in expand_models([str(variants)]) if r.format == "tflite"]
    sim = session.devices(["sim"])
    plan = session.plan(refs, sim, ["xnnpack"], [1], settings=settings)
    run_id = session.start(plan, sim, settings)
    return session.finish(run_id, dispatch_jobs(session, run_id, list(plan.jobs), verbose))


def _rows(record: Any, report: dict[str, Any]) -> list[dict[str, Any]]:
    from quantlab.harness.results import entry_dict

    evals = {v["sha256"]: v for v in report["variants"]}
    rows = []
    for entry in record.entries:
        res = entry_dict(record, entry)
        ev = evals.get(res["model"]["sha256"])
        lat = res["latency_ms"] or {}
        rows.append({
            "scheme": res["model"]["scheme"] or Path(res["model"]["path"]).name,
            "size_bytes": res["model"]["size_bytes"],
            "metric": report["metric"],
            "accuracy": ev["gate"]["value"] if ev else None,
            "drop": ev["gate"]["drop"] if ev else None,
            "gate": (ev["gate"]["passed"] if ev else None),
            "edge_cases_ok": (all(c.get("ok", False) for c in ev["edge_cases"]) if ev else None),
            "agreement": (ev["fidelity"].get(report["task"]["label_free_metric"])
                          if ev and isinstance(ev["fidelity"], dict) else None),
            "status": res["status"],
            "error": res["error"],
            "median_ms": lat.get("median"),
            "ci95_ms": lat.get("ci95"),
            "peak_memory_mb": res["peak_memory_mb"],
        })
    fp32 = next((r["median_ms"] for r in rows if r["scheme"] == "fp32"), None)
    for r in rows:
        r["speedup_vs_fp32"] = (fp32 / r["median_ms"]) if fp32 and r["median_ms"] else None
    return rows


def _table(rows: list[dict[str, Any]], report: dict[str, Any], sim_name: str) -> Table:
    from rich.table import Table

    from quantlab.harness.cli.tables import fmt_ms

    what = "shapes detector" if report["task"]["name"] == "detection" else "digits CNN"
    table = Table(title=f"{what} · {report['samples']} held-out images · {sim_name}, "
                  "xnnpack, 1 thread", title_justify="left")
    for col, right in (("variant", False), ("size", True), (report["metric"], True),
                       ("drop", True), ("gate", False), ("median", True), ("vs fp32", True)):
        table.add_column(col, justify="right" if right else "left")
    for r in rows:
        gate = ("–" if r["gate"] is None else "[green]pass[/]" if r["gate"] else "[red]FAIL[/]")
        if r["edge_cases_ok"] is False:
            gate += " [red](edge case failed)[/]"
        if r["status"] != "ok":
            latency, ratio = f"[red]{r['status']}[/]", "–"
        else:
            latency = fmt_ms(r["median_ms"])
            ratio = f"{r['speedup_vs_fp32']:.2f}×" if r["speedup_vs_fp32"] else "–"
        table.add_row(
            r["scheme"],
            f"{r['size_bytes'] / 1024:.1f} KiB",
            "–" if r["accuracy"] is None else f"{r['accuracy']:.4f}",
            "–" if r["drop"] is None else f"{r['drop'] * 100:+.2f} pt",
            gate,
            latency,
            ratio,
        )
    return table


@handle_errors
def demo(
    out: Annotated[str, typer.Option("--out", help="Folder for the demo's model, variants and "
                                     "report.")] = "results/demo",
    schemes: Annotated[str, typer.Option("--schemes", help="Comma-separated schemes, or all.")]
    = "all",
    iterations: Annotated[int, typer.Option("--iterations", min=1, help="Measured iterations "
                                            "per repeat.")] = 100,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Process-level repeats.")] = 3,
    task: Annotated[str, typer.Option("--task", help="classification (digits CNN) or detection "
                                      "(a small detector on generated shapes: mAP, agreement, "
                                      "calibration).")] = "classification",
    ladder: Annotated[bool, typer.Option("--ladder", help="Show the remedy ladder instead: "
                                         "autoquant on the digits CNN with a poor calibration "
                                         "set, climbing until a variant passes.")] = False,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Train a small model, quantize it every way, check accuracy, benchmark on the simulator,
    and write an HTML report: the whole flow on this machine. --ladder: the remedy ladder."""
    if ladder:
        from quantlab.harness.cli.autoquant import demo_ladder

        return demo_ladder(out, results, iterations, repeats, json_out, verbose)
    from quantlab.harness.cli.bench import exit_if_incomplete
    from quantlab.harness.cli.tables import fmt_ms
    from quantlab.harness.quantize.schemes import resolve_schemes
    from quantlab.harness.report import write_report
    from quantlab.harness.report.recommend import recommend
    from quantlab.harness.retry import RetryPolicy
    from quantlab.session import Session

    started = time.monotonic()
    if task not in ("classification", "detection"):
        raise UserError(f"--task {task!r}: the demo has classification and detection")
    if task == "detection" and schemes == "all":
        schemes = DETECTION_SCHEMES
    # a typo fails now, not later; a Keras source: every scheme but the ExecuTorch ones
    picked = resolve_schemes(split_list(schemes) or ["all"], source_kind="keras")
    work = Path(out)
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create it ({exc.strerror})",
                        hint="pass --out with a writable folder") from None
    location = results_location(results)
    session = Session.open(location, retry=RetryPolicy(wait_s=0.0))
    store = session.store

    labels: Path | None = None
    if task == "detection":
        _step("1/4 train a small detector on generated shapes (boxes known)")
        paths = _train_detector(work)
        keras_path, data, labels = paths["ssd"], paths["eval"], paths["labels"]
        _step(f"2/4 quantize it: {', '.join(s.name for s in picked)}")
        manifest = _quantize(keras_path, paths["calib"], work / "variants", schemes, data)
    else:
        _step("1/4 train a small CNN on scikit-learn's digits")
        keras_path, data, calib = _train(work)
        _step(f"2/4 quantize it: {', '.join(s.name for s in picked)}")
        manifest = _quantize(keras_path, calib, work / "variants", schemes, data)
    failed = [v for v in manifest.variants if v.status != "ok"]
    for v in failed:
        warn(f"scheme {v.scheme} failed: {v.error}")
    _step("3/4 check each TFLite variant's accuracy against fp32")
    report = _evaluate(work / "variants", data, location, labels)
    _step("4/4 benchmark the TFLite variants on the host simulator (LiteRT, per-op profile)")
    from quantlab.harness.records import Settings

    settings = Settings(warmup=10, iterations=iterations, min_time_s=0.0, repeats=repeats,
                        profile_ops=True, inputs=None, inputs_sha256=None, energy=False,
                        timeout_s=300.0)
    run = _bench(session, work / "variants", settings, verbose)
    run_id = run["run_id"]
    record = store.load_run(run_id)
    rows = _rows(record, report)
    evals = store.evaluations({e.job.model.sha256 for e in record.entries})
    recs = recommend(record, evals)
    html = write_report(store, [run_id], work / "report.html")
    elapsed = time.monotonic() - started
    others = [v.scheme for v in manifest.variants if v.status == "ok" and v.file
              and not v.file.endswith(".tflite")]
    if json_out:
        print_json({"run_id": run_id, "variants": rows, "report": str(html),
                    "recommendation": [{"device": r.device, "best": r.best.scheme if r.best
                                        else None, "note": r.note, "excluded": r.excluded}
                                       for r in recs],
                    "task": report["task"]["name"], "seconds": round(elapsed, 1)})
        exit_if_incomplete(run)  # what was measured is shown and kept; then exit as bench
        return
    sim_name = next(iter(record.devices.values())).name if record.devices else "sim"
    console.print(_table(rows, report, sim_name))
    for r in recs:
        if r.best:
            console.print(f"recommended on {r.device}: [bold]{r.best.scheme or r.best.model}[/] "
                          f"({fmt_ms(r.best.latency_ms)} {r.best.latency_statistic}; {r.note})")
            if r.gives_up:
                console.print(f"  runner-up {r.runner_up.scheme if r.runner_up else ''}: "
                              f"{r.gives_up}")
        else:
            console.print(f"no recommendation on {r.device}: {r.note}")
        for why in r.excluded:
            console.print(f"  [yellow]left out[/] {why}", soft_wrap=True)
    if others:
        console.print(f"[dim]also made (phones only): {', '.join(others)}[/]")
    console.print(f"report: [bold]{html}[/]  ·  run {run_id} in {store.location}  ·  "
                  f"{elapsed:.0f} s")
    console.print("[dim]next: quantlab show latest · quantlab recommend · "
                  "quantlab bench YOUR_MODEL.tflite[/]")
    exit_if_incomplete(run)
