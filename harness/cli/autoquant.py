"""``quantlab autoquant``: climb the remedy ladder until a variant passes the gate, measure the
passing candidates on the target device and choose one (see
:mod:`quantlab.harness.quantize.ladder`).

Benchmarks go through the same measurement session as ``quantlab bench``
(:mod:`quantlab.session`), so the chosen variant's latency is a stored run like any other
(an unfinished one exits 1 as bench's does), and the ladder (kept with each
step's stored evaluation) appears in the HTML report's "ladder" section.
"""

from __future__ import annotations

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
)
from quantlab.harness.cli.options import DataFormat, with_options
from quantlab.harness.cli.quantize_options import (
    EpochsOpt,
    LrOpt,
    QatLayersOpt,
    RequiredCalibOpt,
    SamplesOpt,
    SeedOpt,
    TrainOpt,
    qat_settings,
)
from quantlab.harness.errors import UserError

if TYPE_CHECKING:
    from quantlab.harness.records import Settings
    from quantlab.session import Session


def register(app: typer.Typer) -> None:
    """Add ``autoquant`` to the app."""
    app.command("autoquant")(autoquant)


def bench_candidates(session: Session, files: list[dict[str, Any]], device: str | None,
                     settings: Settings, verbose: bool
                     ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Benchmark candidate files on one device through the measurement session, as
    ``quantlab bench`` does; returns latency by file path (median, 95 % CI, device,
    delegate, run id) and the finished run (``bench --json``'s record, ``incomplete``
    when jobs were left unfinished)."""
    from quantlab.harness.cli.bench import dispatch_jobs
    from quantlab.harness.models import model_ref
    from quantlab.harness.records import ModelRef
    from quantlab.harness.results import entry_dict

    refs = []
    for f in files:
        ref = model_ref(Path(f["file"]))
        refs.append(ModelRef(ref.path, ref.sha256, ref.size_bytes, ref.format, f["scheme"]))
    chosen = session.devices([device] if device else ["sim"])[:1]
    plan = session.plan(refs, chosen, settings=settings)
    for s in plan.skipped:
        err_console.print(f"[yellow]skipped[/] {s.job.label()}: {s.reason}", soft_wrap=True)
    run_id = session.start(plan, chosen, settings, tags=["autoquant"])
    data = session.finish(run_id, dispatch_jobs(session, run_id, list(plan.jobs), verbose))
    record = session.store.load_run(run_id)
    by_sha = {r.sha256: r.path for r in refs}
    out: dict[str, dict[str, Any]] = {}
    measured = {}
    for entry in record.entries:
        res = entry_dict(record, entry)
        lat = res.get("latency_ms") or {}
        path = by_sha.get(res["model"]["sha256"])
        if path and lat.get("median") is not None:
            measured[str(path)] = entry
            out[str(path)] = {"median_ms": lat["median"], "ci95": lat.get("ci95"),
                              "device": entry.job.device_id, "delegate": entry.job.delegate,
                              "run_id": run_id, "file": str(path)}
    from quantlab.harness.verdicts.compare import latency_ties

    for path, ties in latency_ties(measured).items():  # compare's test decides the ties
        out[path]["ties"] = ties
    return out, data


def save_ladder(store: Any, result: dict[str, Any]) -> int:
    """Store every evaluated step with the ladder in its payload (read by the HTML report)."""
    from quantlab.harness.quantize.ladder import summary

    ladder = summary(result)
    count = 0
    for step in result["steps"]:
        ev = step.get("evaluation")
        if not ev:
            continue
        gate = ev["gate"]
        store.save_evaluation(
            variant_sha256=ev["sha256"], scheme=ev["scheme"], path=ev["path"],
            source_sha256=ev.get("source_sha256"), metric=step["metric"], value=gate["value"],
            reference_value=step["reference"], drop=gate["drop"], max_drop=gate["max_drop"],
            passed=gate["passed"], payload={**ev, "ladder": ladder})
        count += 1
    return count


def _fmt_step(step: dict[str, Any]) -> list[str]:
    from quantlab.harness.cli.tables import fmt_ms

    o = step.get("options") or {}
    parts = [o.get("granularity", ""),
             f"{o['calibration_samples']} calib" if o.get("calibration_samples") else "",
             f"≤{o['mixed_max_size_share']:.0%} of fp32" if o.get("mixed_max_size_share") else "",
             "ranked by accuracy" if o.get("mixed_rank") == "accuracy" else "",
             f"{step['qat']['epochs_run']} epochs" if step.get("qat") else "",
             f"fp16: {', '.join(o['keep'])}" if o.get("keep") else ""]
    opts = ", ".join(p for p in parts if p)
    size = f"{step['size_bytes'] / 1024:.1f} KiB" if step.get("size_bytes") else "–"
    value = "–" if step.get("value") is None else f"{step['value']:.4f}"
    drop = "–" if step.get("drop") is None else f"{step['drop'] * 100:+.2f} pt"
    verdict = {"pass": "[green]pass[/]", "fail": "[red]fail[/]", "error": "[red]error[/]",
               "skipped": "[dim]skipped[/]"}.get(step.get("verdict") or "", step.get("verdict")
                                                  or "–")
    lat = "–" if step.get("latency_ms") is None else fmt_ms(step["latency_ms"])
    return [step["rung"], opts, size, value, drop, verdict, lat, fmt_step_time(step),
            step.get("why_next") or step.get("accuracy_note") or ""]


def fmt_step_time(step: dict[str, Any]) -> str:
    """A step's seconds for the table: the whole step, then its scheme's calibration (and where
    it came from: ``cached`` when read from the cache), conversion and the evaluation."""
    if step.get("seconds") is None:
        return "–"
    timing = step.get("timing") or {}
    reused = (step.get("calibration") or {}).get("reused")
    parts = []
    if timing.get("calibration") is not None and step.get("calibration"):
        parts.append(f"calib {timing['calibration']:.1f}"
                     + (" cached" if reused == "cache" else " made" if reused is False else ""))
    for key, label in (("conversion", "conv"), ("evaluate", "eval")):
        if timing.get(key) is not None:
            parts.append(f"{label} {timing[key]:.1f}")
    return f"{step['seconds']:.1f} s" + (f" ({', '.join(parts)})" if parts else "")


def timing_line(timing: dict[str, Any]) -> str:
    """The climb's seconds and what reusing calibrations saved, in one line."""
    line = f"ladder: {timing['seconds']:.1f} s"
    made, reused = timing["calibrations_made"], timing["calibrations_reused"]
    if made or reused:
        line += (f"; calibration made by {made} rung(s), reused from the cache by {reused}"
                 + (f" (≈ {timing['calibration_saved_s']:.1f} s saved)" if reused else ""))
    return line


def ladder_table(result: dict[str, Any], title: str) -> Any:
    """The ladder's steps as a rich table."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("rung", "options", "size", result["steps"][0].get("metric") or "metric"
                if result["steps"] else "metric", "drop", "gate", "latency", "seconds",
                "why the ladder moved on"):
        table.add_column(col, overflow="fold")
    for step in result["steps"]:
        table.add_row(*_fmt_step(step))
    return table


@handle_errors
@with_options(fmt=DataFormat)
def autoquant(
    model: Annotated[str, typer.Argument(help="Keras .keras/.h5, SavedModel folder or float "
                                         ".tflite.")],
    calib: RequiredCalibOpt,
    data: Annotated[str, typer.Option("--data", help="Evaluation data for the gate.")],
    fmt: DataFormat,
    max_drop: Annotated[float, typer.Option("--max-drop", min=0.0, help="Largest allowed drop "
                                            "of the main metric (0.02 = 2 points).")] = 0.02,
    train: TrainOpt = None,
    device: Annotated[str | None, typer.Option("--device", help="Target device id for the "
                                               "latency measurement (default: the simulator).")]
    = None,
    explore: Annotated[bool, typer.Option("--explore", help="Try every rung, then choose.")]
    = False,
    coreml: Annotated[bool, typer.Option("--coreml", help="Also climb the Core ML ladder "
                                         "(w8 → w4 → w4 with the most sensitive layer fp16 → "
                                         "fp16).")] = False,
    out: Annotated[str | None, typer.Option("--out", help="Folder for the steps, ladder.json, "
                                            "the chosen variant and report.html.")] = None,
    epochs: EpochsOpt = 10,
    lr: LrOpt = 1e-4,
    qat_layers: QatLayersOpt = None,
    calib_samples: SamplesOpt = 200,
    seed: SeedOpt = 0,
    rank: Annotated[str, typer.Option("--rank", help="mixed-int8 rung: rank the layers to keep "
                                      "float by int8 error, or by accuracy (one layer int8 at a "
                                      "time).")] = "error",
    iterations: Annotated[int, typer.Option("--iterations", min=1, help="Measured iterations "
                                            "per repeat.")] = 50,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Process-level repeats.")]
    = 3,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Climb int8 → better calibration → mixed-int8 → int16x8 → qat-int8 (with --train) →
    fp16 until the gate passes; measure the passing variants and choose the fastest."""
    from quantlab.harness.cli.bench import exit_if_incomplete
    from quantlab.harness.quantize.ladder import LadderRequest, climb
    from quantlab.harness.report import write_report
    from quantlab.harness.retry import RetryPolicy
    from quantlab.session import Session

    for path, what in ((model, "model"), (calib, "--calib"), (data, "--data"),
                       (train, "--train")):
        if path is not None and not Path(path).exists():
            raise UserError(f"{what} {path}: no such file or folder")
    if rank not in ("error", "accuracy"):
        raise UserError(f"--rank {rank}: expected error or accuracy")
    folder = Path(out or Path("results") / "autoquant" / Path(model).stem)
    req = LadderRequest(model=model, calib=calib, data=data, out=str(folder), max_drop=max_drop,
                        train=train, explore=explore, coreml=coreml, calib_samples=calib_samples,
                        seed=seed, **fmt.reading(),
                        qat=qat_settings(epochs, lr, qat_layers), mixed_rank=rank)
    session = Session.open(results_location(results), retry=RetryPolicy(wait_s=0.0))
    store = session.store
    from quantlab.harness.records import Settings

    settings = Settings(warmup=10, iterations=iterations, min_time_s=0.0, repeats=repeats,
                        profile_ops=False, inputs=None, inputs_sha256=None, energy=False,
                        timeout_s=300.0)

    runs: list[dict[str, Any]] = []  # each measuring run, as finished

    def measure(candidates: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        latencies, run = bench_candidates(session, candidates, device, settings, verbose)
        runs.append(run)
        return latencies

    with err_console.status("climbing the ladder") as status:
        def on_event(name: str, ev: dict[str, Any]) -> None:
            if name == "ladder_rung":
                status.update(f"rung {ev['index']}: {ev['rung']}")
            elif name == "qat_epoch":
                status.update(f"rung qat-int8: epoch {ev['epoch']}/{ev['epochs']} "
                              f"(loss {ev.get('loss', float('nan')):.4f})")
            elif name == "mixed_step":
                status.update(f"rung mixed-int8: {ev['float_layers']} layer(s) float, "
                              f"drop {ev['drop'] * 100:+.2f} pt")
            elif name == "ladder_step" and not json_out:
                err_console.print(f"[bold cyan]›[/] {ev['rung']}: {ev.get('verdict')}"
                                  + (f" — {ev['why_next']}" if ev.get("why_next") else ""))
            elif name == "ladder_measure":
                status.stop()

        result = climb(req, measure, on_event)
    run_id = runs[-1]["run_id"] if runs else None
    save_ladder(store, result)
    report = write_report(store, [run_id], folder / "report.html") if run_id else None
    if json_out:
        from quantlab.harness.quantize.ladder import _jsonable

        print_json({**_jsonable(result), "run_id": run_id,
                    "report": str(report) if report else None})
    else:
        console.print(ladder_table(result, f"autoquant {model} · gate: drop ≤ "
                                   f"{max_drop * 100:g} pt"))
        console.print(f"[dim]{timing_line(result['timing'])}[/]")
        chosen = result["chosen"]
        if chosen:
            from quantlab.harness.cli.tables import fmt_ms

            lat = f", {fmt_ms(chosen['latency_ms'])}" if chosen.get("latency_ms") else ""
            console.print(f"chosen: [bold]{chosen['scheme']}[/] ({chosen['rung']}) "
                          f"{chosen['size_bytes'] / 1024:.1f} KiB, drop "
                          f"{chosen['drop'] * 100:+.2f} pt{lat} — {result['why']} → "
                          f"{chosen['file']}")
        else:
            console.print(f"[red]no variant passes the gate[/]: {result['why']}")
        if result.get("coreml"):
            cm = result["coreml"]
            console.print(ladder_table({"steps": cm["steps"]}, "Core ML ladder"))
            console.print(f"[dim]{cm['why']}[/]")
        if report:
            console.print(f"report: [bold]{report}[/]  ·  run {run_id}")
    for run in runs:  # the ladder and report are kept; an unfinished run exits as bench's
        exit_if_incomplete(run)
    if result["chosen"] is None:
        raise typer.Exit(1)


def demo_ladder(out: str, results: str | None, iterations: int, repeats: int, json_out: bool,
                verbose: bool) -> None:
    """``quantlab demo --ladder``: the digits CNN calibrated on 16 nearly black images (a poor,
    unrepresentative calibration set), then ``autoquant`` with the training split: the ladder
    fails plain int8, recalibrates on the training data, and measures what passes."""
    import numpy as np

    from quantlab.harness.quantize.demo_model import build_digits_model, write_training_split

    work = Path(out)
    work.mkdir(parents=True, exist_ok=True)
    err_console.print("[bold cyan]›[/] 1/2 train a small CNN on scikit-learn's digits")
    with err_console.status("training"):
        keras_path, data = build_digits_model(work / "model")
    train = write_training_split(work / "model", name="train")
    with np.load(train) as npz:
        x_train, y_train = npz["x"], npz["y"]
    poor = work / "model" / "poor_calib.npz"
    np.savez(poor, x=(x_train[:16] * 0.05).astype(np.float32), y=y_train[:16])
    err_console.print("[bold cyan]›[/] 2/2 autoquant with a poor calibration set "
                      "(16 images at 1/20 of the real brightness) and --train")
    autoquant(str(keras_path), str(poor), str(data), DataFormat(), max_drop=0.02,
              train=str(train),
              out=str(work / "autoquant"), iterations=iterations, repeats=repeats,
              results=results, json_out=json_out, verbose=verbose)
