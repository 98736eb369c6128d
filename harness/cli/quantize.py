"""`quantlab quantize`, `evaluate`, `sensitivity`: variants, their accuracy, layer sensitivity.

Heavy libraries load inside the commands (and the converters in a worker
process), so importing this module is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from harness.cli.common import (
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
from harness.errors import UserError

SchemesOpt = Annotated[
    str, typer.Option("--schemes", help="Comma-separated schemes, or all / tflite / coreml.")
]
CalibOpt = Annotated[
    str | None, typer.Option("--calib", help="Calibration data: .npz/.npy or DIR/<class>/*.jpg.")
]
XKeyOpt = Annotated[str, typer.Option("--x-key", help="Array name of the inputs in a .npz.")]
YKeyOpt = Annotated[str, typer.Option("--y-key", help="Array name of the labels in a .npz.")]
ImageSizeOpt = Annotated[
    str | None, typer.Option("--image-size", help="HxW for image folders (default: model input).")
]
ScaleOpt = Annotated[float, typer.Option("--scale", help="Pixel scale for image folders.")]
MeanOpt = Annotated[
    str, typer.Option("--mean", help="Per-channel mean (after scaling), comma-separated.")
]
StdOpt = Annotated[
    str, typer.Option("--std", help="Per-channel std (after scaling), comma-separated.")
]
ChannelsOpt = Annotated[str, typer.Option("--channel-order", help="rgb, bgr or gray.")]
LayoutOpt = Annotated[str, typer.Option("--layout", help="nhwc or nchw.")]
MaxDropOpt = Annotated[
    float, typer.Option("--max-drop", help="Largest allowed absolute drop of the main metric.")
]
SamplesOpt = Annotated[
    int, typer.Option("--calib-samples", help="Calibration samples drawn from the data.")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for drawing calibration samples.")]


def _image_options(
    size: str | None, scale: float, mean: str, std: str, order: str, layout: str
) -> Any:
    from harness.quantize.data import ImageOptions

    hw = None
    if size:
        try:
            h, _, w = size.lower().partition("x")
            hw = (int(h), int(w or h))
        except ValueError:
            raise UserError(f"--image-size {size!r}: expected HxW, e.g. 224x224") from None
    if order not in ("rgb", "bgr", "gray"):
        raise UserError(f"--channel-order {order!r}: expected rgb, bgr or gray")
    if layout not in ("nhwc", "nchw"):
        raise UserError(f"--layout {layout!r}: expected nhwc or nchw")
    try:
        m = tuple(float(v) for v in split_list(mean)) or (0.0,)
        s = tuple(float(v) for v in split_list(std)) or (1.0,)
    except ValueError:
        raise UserError(
            f"--mean {mean!r} / --std {std!r}: expected numbers separated by commas"
        ) from None
    return ImageOptions(hw, scale, m, s, order, layout)


def quantize_with_progress(model: str | Path, schemes: list[str], calib: str | Path | None,
                           out: str | Path, **options: Any) -> Any:
    """:func:`harness.quantize.variants.quantize` with a progress bar (one step per scheme)
    and its warnings on stderr; returns the Manifest."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from harness.quantize.schemes import resolve_schemes
    from harness.quantize.variants import quantize

    picked = resolve_schemes(schemes)
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
    task = bar.add_task("loading model", total=len(picked))

    def on_event(name: str, ev: dict[str, Any]) -> None:
        if name == "start":
            bar.update(task, description=f"quantizing {ev['scheme']}")
        elif name in ("done", "failed"):
            bar.advance(task)
        elif name == "warning":
            warn(ev["message"])

    with bar:
        return quantize(model, [s.name for s in picked], calib, out, progress=on_event,
                        **options)


def evaluate_with_progress(variants_dir: str | Path, data: str | Path, **options: Any
                           ) -> dict[str, Any]:
    """:func:`harness.quantize.evaluate.evaluate` with a progress bar over the samples."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from harness.quantize.evaluate import evaluate

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
        return evaluate(variants_dir, data, progress=on_progress, **options)


@handle_errors
def quantize_cmd(
    model: Annotated[
        str, typer.Argument(help="Keras .keras/.h5, SavedModel folder or float .tflite.")
    ],
    out: Annotated[str, typer.Option("--out", help="Variants folder to create.")],
    schemes: SchemesOpt = "all",
    calib: CalibOpt = None,
    eval_data: Annotated[
        str | None, typer.Option("--eval", help="Data for the mixed-int8 gate (default: --calib).")
    ] = None,
    calib_samples: SamplesOpt = 200,
    seed: SeedOpt = 0,
    max_drop: MaxDropOpt = 0.03,
    x_key: XKeyOpt = "x",
    y_key: YKeyOpt = "y",
    image_size: ImageSizeOpt = None,
    scale: ScaleOpt = 1 / 255,
    mean: MeanOpt = "0",
    std: StdOpt = "1",
    channel_order: ChannelsOpt = "rgb",
    layout: LayoutOpt = "nhwc",
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Make one variant per scheme, with manifest.json (sizes, hashes, calibration, float ops)."""
    image = _image_options(image_size, scale, mean, std, channel_order, layout)
    manifest = quantize_with_progress(
        model,
        split_list(schemes) or ["all"],
        calib,
        out,
        eval_data=eval_data,
        calib_samples=calib_samples,
        seed=seed,
        max_drop=max_drop,
        x_key=x_key,
        y_key=y_key,
        image=image,
        force=force,
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
    for v in manifest.variants:
        note = v.error or ""
        if v.mixed:
            note = f"{len(v.mixed['float_layers'])} layers float (+{v.mixed['size_cost_bytes']} B)"
        ops = f"{v.ops['float_ops']}/{v.ops['total_ops']}" if v.ops else ""
        size = f"{v.size_bytes / 1024:.1f} KiB" if v.size_bytes else ""
        table.add_row(v.scheme, "ok" if v.status == "ok" else "[red]failed[/]", size, ops, note)
    console.print(table)


@handle_errors
def evaluate_cmd(
    variants_dir: Annotated[
        str, typer.Argument(help="Variants folder made by `quantlab quantize`.")
    ],
    data: Annotated[
        str, typer.Option("--data", help="Evaluation data: .npz/.npy or DIR/<class>/*.jpg.")
    ],
    max_drop: MaxDropOpt = 0.03,
    x_key: XKeyOpt = "x",
    y_key: YKeyOpt = "y",
    image_size: ImageSizeOpt = None,
    scale: ScaleOpt = 1 / 255,
    mean: MeanOpt = "0",
    std: StdOpt = "1",
    channel_order: ChannelsOpt = "rgb",
    layout: LayoutOpt = "nhwc",
    no_store: Annotated[
        bool, typer.Option("--no-store", help="Do not save the results in the store.")
    ] = False,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Accuracy, fidelity vs fp32, the gate and edge cases of every TFLite variant (host LiteRT)."""
    from harness.quantize.evaluate import save_to_store

    image = _image_options(image_size, scale, mean, std, channel_order, layout)
    report = evaluate_with_progress(
        variants_dir, data, max_drop=max_drop, x_key=x_key, y_key=y_key, image=image
    )
    if not no_store:
        save_to_store(report, results_location(results))
    if json_out:
        print_json(
            {
                k: report[k]
                for k in (
                    "reference",
                    "metric",
                    "max_drop",
                    "samples",
                    "variants",
                    "skipped",
                    "failed",
                )
            }
        )
    else:
        _print_report(report)
    if report["failed"]:
        raise fail(f"gate failed (drop > {max_drop}) for: {', '.join(report['failed'])}", 1)


def _print_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    metric = report["metric"]
    table = Table(
        title=f"accuracy on {report['samples']} samples (reference fp32 {metric} = "
        f"{report['reference']['value']:.4f})"
    )
    for col in ("scheme", metric, "drop", "gate", "SQNR dB", "cosine", "top-1 agree", "edge cases"):
        table.add_column(col)
    for v in report["variants"]:
        f0 = v["fidelity"][0]
        bad = [e["case"] for e in v["edge_cases"] if not e["ok"]]
        sat = [e["case"] for e in v["edge_cases"] if e.get("saturated")]
        edge = (
            ("[red]" + ", ".join(bad) + "[/]")
            if bad
            else ("saturated: " + ", ".join(sat) if sat else "ok")
        )
        table.add_row(
            v["scheme"] or v["path"],
            f"{v['gate']['value']:.4f}",
            f"{v['gate']['drop']:+.4f}",
            "[green]pass[/]" if v["gate"]["passed"] else "[red]FAIL[/]",
            "∞" if f0["sqnr_db"] is None else f"{f0['sqnr_db']:.1f}",
            f"{f0['cosine']:.4f}",
            "" if f0["top1_agreement"] is None else f"{f0['top1_agreement']:.3f}",
            edge,
        )
    console.print(table)
    for s in report.get("skipped", []):
        console.print(f"[dim]not evaluated: {s['scheme']} ({s['reason']})[/]")


@handle_errors
def sensitivity_cmd(
    model: Annotated[
        str, typer.Argument(help="Keras .keras/.h5, SavedModel folder or float .tflite.")
    ],
    calib: Annotated[
        str, typer.Option("--calib", help="Calibration data: .npz/.npy or DIR/<class>/*.jpg.")
    ],
    calib_samples: SamplesOpt = 200,
    seed: SeedOpt = 0,
    x_key: XKeyOpt = "x",
    y_key: YKeyOpt = "y",
    image_size: ImageSizeOpt = None,
    scale: ScaleOpt = 1 / 255,
    mean: MeanOpt = "0",
    std: StdOpt = "1",
    channel_order: ChannelsOpt = "rgb",
    layout: LayoutOpt = "nhwc",
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Rank layers by int8 quantization error, most sensitive first."""
    from harness.quantize.variants import sensitivity

    image = _image_options(image_size, scale, mean, std, channel_order, layout)
    with err_console.status("measuring per-layer quantization error"):
        rows = sensitivity(
            model,
            calib,
            calib_samples=calib_samples,
            seed=seed,
            x_key=x_key,
            y_key=y_key,
            image=image,
        )
    if json_out:
        print_json({"model": model, "layers": rows})
        return
    from rich.table import Table

    table = Table(title=f"int8 sensitivity of {model} (most sensitive first)")
    for col in ("#", "layer", "op", "error (rel.)", "MSE"):
        table.add_column(col)
    for i, r in enumerate(rows, 1):
        table.add_row(
            str(i), r["layer"][:70], r.get("op") or "", f"{r['rel_error']:.4f}", f"{r['mse']:.3g}"
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add quantize, evaluate and sensitivity to the app."""
    app.command("quantize")(quantize_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("sensitivity")(sensitivity_cmd)
