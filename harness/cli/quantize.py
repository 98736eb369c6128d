"""`quantlab quantize`, `evaluate`: variants and their accuracy (`sensitivity`: cli/sensitivity.py).

Heavy libraries load inside the commands (and the converters in a worker
process), so importing this module is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from quantlab.harness.cli.common import (
    JsonOpt,
    ResultsOpt,
    VerboseOpt,
    console,
    err_console,
    fail,
    handle_errors,
    print_json,
    results_location,
    split_list,
    warn,
)
from quantlab.harness.cli.options import DataFormat, with_options
from quantlab.harness.cli.quantize_options import (
    CalibOpt,
    CoremlKeepOpt,
    DecoderOpt,
    EpochsOpt,
    GranularityOpt,
    LabelsOpt,
    LrOpt,
    MaxDropOpt,
    QatLayersOpt,
    SamplesOpt,
    SchemesOpt,
    SeedOpt,
    TaskOpt,
    TrainOpt,
    qat_settings,
)
from quantlab.harness.errors import UserError


def quantize_with_progress(model: str | Path, schemes: list[str], calib: str | Path | None,
                           out: str | Path, **options: Any) -> Any:
    """:func:`quantlab.harness.quantize.variants.quantize` of the request these values make
    (:meth:`~quantlab.harness.quantize.requests.QuantizeRequest.create`: ``options`` are its
    keywords) with a progress bar per scheme (waiting, its step, done with its seconds, or
    failed) and its warnings on stderr; returns the Manifest."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from quantlab.harness.quantize.requests import QuantizeRequest
    from quantlab.harness.quantize.schemes import resolve_schemes
    from quantlab.harness.quantize.variants import quantize, source_kind

    picked = resolve_schemes(schemes, source_kind(Path(model)))
    request = QuantizeRequest.create(model, [s.name for s in picked], calib, out, **options)
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", style="bold"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,  # no bar (and no blank line) in logs
    )
    width = max(len(s.name) for s in picked)
    tasks = {s.name: bar.add_task(f"{s.name:<{width}}  waiting", total=1) for s in picked}

    def step(scheme: str, what: str) -> None:
        bar.update(tasks[scheme], description=f"{scheme:<{width}}  {what}")

    def on_event(name: str, ev: dict[str, Any]) -> None:
        if name == "start":
            step(ev["scheme"], "quantizing")
        elif name in ("done", "failed"):
            step(ev["scheme"], "failed" if name == "failed"
                 else f"done ({ev.get('seconds', 0.0):.1f} s)")
            bar.advance(tasks[ev["scheme"]])
        elif name == "mixed_step":
            step(ev["scheme"], f"{ev.get('float_layers', 0)} layers float, "
                 f"drop {ev.get('drop') or 0.0:.3f}")
        elif name == "qat_epoch":
            val = f", val_loss {ev['val_loss']:.4f}" if "val_loss" in ev else ""
            step(ev["scheme"], f"training: epoch {ev['epoch']}/{ev['epochs']} "
                 f"(loss {ev.get('loss', float('nan')):.4f}{val})")
        elif name == "warning":
            warn(ev["message"])

    with bar:
        return quantize(request, progress=on_event)


def evaluate_with_progress(variants_dir: str | Path, data: str | Path, **options: Any
                           ) -> dict[str, Any]:
    """:func:`quantlab.harness.quantize.evaluate.evaluate` with a progress bar over the samples;
    returns the report's JSON (``Evaluation.to_dict``)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from quantlab.harness.quantize.evaluate import evaluate

    bar = Progress(
        TextColumn("evaluating {task.description}", style="bold"),
        BarColumn(bar_width=24),
        TextColumn("{task.completed}/{task.total} samples"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    task = bar.add_task("", total=None)

    def on_progress(label: str, done: int, total: int) -> None:
        bar.update(task, description=label, completed=done, total=total)

    with bar:
        return evaluate(variants_dir, data, progress=on_progress, **options).to_dict()


@handle_errors
@with_options(fmt=DataFormat)
def quantize_cmd(
    model: Annotated[
        str, typer.Argument(help="Keras .keras/.h5, SavedModel folder, float .tflite, or with "
                            "the torch extra a torch.export .pt2 or module:factory.")
    ],
    out: Annotated[str, typer.Option("--out", help="Variants folder to create.")],
    fmt: DataFormat,
    schemes: SchemesOpt = "all",
    calib: CalibOpt = None,
    eval_data: Annotated[
        str | None, typer.Option("--eval", help="Data for the mixed-int8 gate (default: --calib).")
    ] = None,
    calib_samples: SamplesOpt = 200,
    seed: SeedOpt = 0,
    max_drop: MaxDropOpt = 0.03,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Only check op support: the ops each "
                                        "scheme needs, Flex and custom ops with the runtimes "
                                        "that lack them; convert nothing.")] = False,
    train: TrainOpt = None,
    epochs: EpochsOpt = 3,
    lr: LrOpt = 1e-4,
    qat_layers: QatLayersOpt = None,
    granularity: GranularityOpt = "per-channel",
    coreml_keep: CoremlKeepOpt = None,
    jobs: Annotated[int | None, typer.Option("--jobs", min=1, help="Worker processes making "
                    "schemes side by side (default: from the idle cores and free memory).")] = None,
    input_shape: Annotated[str | None, typer.Option(
        "--input-shape", help="A PyTorch source's example input, batch first (1,3,32,32); "
        "needed for module:factory.")] = None,
    rank: Annotated[str, typer.Option("--rank", help="mixed-int8: rank the layers to keep float "
                                      "by int8 error, or by accuracy (one layer int8 at a "
                                      "time, the task metric's drop on --eval).")] = "error",
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Make one variant per scheme, with manifest.json (sizes, hashes, calibration, float ops).
    qat-int8 (quantization-aware training) runs only when named, with --train.
    The op-support check runs before every scheme; a scheme whose ops no runtime has fails
    with the list (--check: only the check)."""
    from quantlab.harness.quantize.torch_source import parse_shape

    if check:
        _check(model, split_list(schemes) or ["all"], json_out)
        return
    manifest = quantize_with_progress(
        model,
        split_list(schemes) or ["all"],
        calib,
        out,
        eval_data=eval_data,
        calib_samples=calib_samples,
        seed=seed,
        max_drop=max_drop,
        **fmt.reading(),
        force=force,
        train=train,
        qat=qat_settings(epochs, lr, qat_layers),
        options={"granularity": granularity, "mixed_rank": rank,
                 **({"coreml_keep": split_list(coreml_keep)} if coreml_keep else {})},
        jobs=jobs,
        input_shape=parse_shape(input_shape) if input_shape else None,
    )
    rows = [
        {
            "scheme": v.scheme,
            "path": str(Path(manifest.out) / v.file) if v.file else None,
            "size_bytes": v.size_bytes,
            "sha256": v.sha256,
            "status": v.status,
            "error": v.error,
        }
        for v in manifest.variants
    ]
    if json_out:
        print_json({"out": manifest.out, "variants": rows})
        return
    from rich.table import Table

    table = Table(title=f"variants of {model} → {manifest.out}")
    for col in ("scheme", "status", "size", "float ops", "note"):
        table.add_column(col, justify="right" if col == "size" else "left")
    for note in manifest.source.get("notes") or []:
        warn(note)
    for v in manifest.variants:
        note = "; ".join([v.error or "", *(v.notes or [])]).strip("; ")
        if v.mixed:
            note = f"{len(v.mixed['float_layers'])} layers float (+{v.mixed['size_cost_bytes']} B)"
        if v.qat:
            early = ", stopped early" if v.qat["stopped_early"] else ""
            note = (f"trained {v.qat['epochs_run']}/{v.qat['epochs']} epochs "
                    f"(best {v.qat['best_epoch']}{early})")
        if v.options and v.options.get("keep"):
            note = "; ".join([f"kept fp16: {', '.join(v.options['keep'])}", *(v.notes or [])])
        ops = f"{v.ops['float_ops']}/{v.ops['total_ops']}" if v.ops and "float_ops" in v.ops \
            else (f"{v.ops['delegated_ops']}/{v.ops['total_ops']} in "
                  f"{v.ops.get('delegate', 'XNNPACK')}") if v.ops else ""
        size = f"{v.size_bytes / 1024:.1f} KiB" if v.size_bytes else ""
        table.add_row(v.scheme, "ok" if v.status == "ok" else "[red]failed[/]", size, ops, note)
    console.print(table)


@handle_errors
@with_options(fmt=DataFormat)
def evaluate_cmd(
    variants_dir: Annotated[
        str, typer.Argument(help="Variants folder made by `quantlab quantize`.")
    ],
    data: Annotated[
        str, typer.Option("--data", help="Evaluation data: .npz/.npy or DIR/<class>/*.jpg.")
    ],
    fmt: DataFormat,
    max_drop: Annotated[
        str | None,
        typer.Option("--max-drop", help="Largest allowed drop of the task's primary metric "
                     "(0.02 = 2 points): one number for every scheme and/or per scheme, e.g. "
                     "int8=0.03,fp16=0.005. Default: each scheme's own gate (fp16 0.005, "
                     "int8 0.02).")] = None,
    task: TaskOpt = None,
    labels: LabelsOpt = None,
    decoder: DecoderOpt = None,
    max_mse: Annotated[
        float | None, typer.Option("--max-mse", help="Also fail a variant whose first output's "
                                   "MSE against fp32 exceeds this (e.g. 0.01).")] = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not save the results in the "
                                           "store.")] = False,
    per_delegate: Annotated[
        bool, typer.Option("--per-delegate", help="Also gate each (variant, device, delegate) "
                           "stored in --results: the host accuracy gate AND the delegate's "
                           "numerics on the device (bench --numerics: cosine ≥ 0.99 vs the "
                           "variant itself on the host, else vs the float model; top-1 "
                           "agreement ≥ --min-top1 where an output is a class vector). Pairs "
                           "without numerics are listed with the reason.")
    ] = False,
    gate_confidence: Annotated[
        bool, typer.Option("--gate-confidence", help="Fail a variant only when the whole 95 % "
                           "interval of its drop lies beyond its gate (by default the drop "
                           "itself decides; the interval is reported either way).")
    ] = False,
    recalibrate: Annotated[
        bool, typer.Option("--recalibrate", help="With labels: fit a temperature per "
                           "classification variant on a fixed half of the samples (seed 0) "
                           "and report its ECE before/after on the other half; for "
                           "detection, the score threshold at which a variant's recall "
                           "matches fp32's at 0.5 (with --device: on its outputs).")] = False,
    min_top1: Annotated[
        float | None, typer.Option("--min-top1", min=0.0, max=1.0, help="With --per-delegate: "
                                   "the least top-1 agreement a delegate's class outputs may "
                                   "have with the variant on the host (default 0.99).")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="Evaluate on these devices (ids, comma-"
                                 "separated; sim: the host simulator): the task metric from each "
                                 "(device, delegate)'s own outputs, gated per row.")] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", help="With --device: the lab head "
                                                "HOST:PORT whose devices to use.")] = None,
    delegate: Annotated[
        str | None, typer.Option("--delegate", help="With --device: the delegates, "
                                 "comma-separated (default: the first one each device "
                                 "supports for the variant).")] = None,
    samples: Annotated[
        int | None, typer.Option("--samples", min=1, help="With --device: a fixed subset "
                                 "of N samples (the same on every run; recorded).")] = None,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Accuracy, fidelity vs fp32, calibration drift, the gate and edge cases of every TFLite
    variant (host LiteRT), scored by task (classification, detection, segmentation, regression).
    With --per-delegate, a verdict per (variant, device, delegate) from stored runs; with
    --device, the accuracy of each (variant, device, delegate) from the device's own outputs."""
    from quantlab.harness.evaluations import save_to_store
    from quantlab.harness.numerics import DEFAULT_MIN_TOP1
    from quantlab.harness.quantize.gate import parse_max_drop

    parse_max_drop(max_drop)  # a typo fails before any model runs
    alone = [f for f, v in (("--delegate", delegate), ("--samples", samples),
                            ("--cluster", cluster)) if v is not None]
    if device is None and alone:
        raise UserError(f"{alone[0]}: only used with --device",
                        hint="add --device sim (or a phone's id)")
    if device is not None:
        if per_delegate:
            raise UserError("--per-delegate reads stored numerics; --device measures accuracy "
                            "on the device itself", hint="use one of them")
        from quantlab.harness.cli.device_evaluate import run_device_evaluation

        return run_device_evaluation(
            variants_dir, data, device=device, delegate=delegate, samples=samples, cluster=cluster,
            results=None if no_store else results_location(results), json_out=json_out,
            max_drop=max_drop, task=task, labels=labels, decoder=decoder, max_mse=max_mse,
            gate_confidence=gate_confidence, recalibrate=recalibrate, **fmt.reading())
    if min_top1 is not None and not per_delegate:
        raise UserError(f"--min-top1 {min_top1:g}: only used with --per-delegate",
                        hint="add --per-delegate, or drop --min-top1")
    report = evaluate_with_progress(
        variants_dir, data, max_drop=max_drop, task=task, labels=labels, decoder=decoder,
        max_mse=max_mse, gate_confidence=gate_confidence, recalibrate=recalibrate,
        **fmt.reading()
    )
    for w in report["warnings"]:
        warn(w)
    if not no_store:
        save_to_store(report, results_location(results))
    if per_delegate:
        from quantlab.harness.delegate_gate import from_store

        report["per_delegate"] = from_store(report, results_location(results),
                                            min_top1=DEFAULT_MIN_TOP1 if min_top1 is None
                                            else min_top1)
    if json_out:
        print_json(
            {
                k: report[k]
                for k in (
                    "task",
                    "warnings",
                    "reference",
                    "metric",
                    "max_drop",
                    "samples",
                    "gate_confidence",
                    "variants",
                    "skipped",
                    "failed",
                    "per_delegate",
                )
                if k in report
            }
        )
    else:
        from quantlab.harness.cli.evaluation_tables import print_evaluation, print_per_delegate

        print_evaluation(report)
        if per_delegate:
            print_per_delegate(report["per_delegate"])
    if report["failed"]:
        raise fail("gate failed (drop beyond the scheme's max drop, or NaN/Inf outputs) for: "
                   f"{', '.join(report['failed'])}", 1)
    if per_delegate and report["per_delegate"]["failed"]:
        raise fail("gate failed on the device for: "
                   f"{', '.join(report['per_delegate']['failed'])}", 1)


def _check(model: str, schemes: list[str], json_out: bool) -> None:
    from rich.table import Table

    from quantlab.harness.quantize.variants import check

    with err_console.status("checking op support"):
        result = check(model, schemes)
    if json_out:
        print_json(result)
        return
    ops = result["ops"]
    console.print(f"{model}: {sum(ops['builtin'].values())} builtin ops "
                  f"({', '.join(sorted(ops['builtin']))}); custom: "
                  f"{', '.join(ops['custom']) or 'none'}; Flex: {', '.join(ops['flex']) or 'none'}")
    for note in result["notes"]:
        warn(note)
    table = Table(title="op support per scheme")
    for col in ("scheme", "verdict", "ops needed", "why / notes"):
        table.add_column(col)
    for r in result["schemes"]:
        verdict = ("[dim]not checked[/]" if not r["checked"] else
                   "[green]ok[/]" if r["ok"] else "[red]fails[/]")
        table.add_row(r["scheme"], verdict, ", ".join(r["ops"]),
                      r["reason"] or "; ".join(r["notes"]))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add quantize and evaluate to the app."""
    app.command("quantize")(quantize_cmd)
    app.command("evaluate")(evaluate_cmd)
