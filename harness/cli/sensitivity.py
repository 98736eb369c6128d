"""`quantlab sensitivity`: a model's layers ranked by int8 error or by accuracy drop.

The ranking runs in a quantize worker process (:func:`quantlab.harness.quantize.variants.
sensitivity`), so importing this module is cheap.
"""

from __future__ import annotations

from typing import Annotated

import typer

from quantlab.harness.cli.common import (
    JsonOpt,
    VerboseOpt,
    console,
    err_console,
    handle_errors,
    print_json,
)
from quantlab.harness.cli.options import DataFormat, with_options
from quantlab.harness.cli.quantize_options import (
    DecoderOpt,
    LabelsOpt,
    RequiredCalibOpt,
    SamplesOpt,
    SeedOpt,
    TaskOpt,
)
from quantlab.harness.errors import UserError


@handle_errors
@with_options(fmt=DataFormat)
def sensitivity_cmd(
    model: Annotated[
        str, typer.Argument(help="Keras .keras/.h5, SavedModel folder, float .tflite or .pt2.")
    ],
    calib: RequiredCalibOpt,
    fmt: DataFormat,
    data: Annotated[
        str | None, typer.Option("--data", help="--by accuracy: labelled data each layer is "
                                 "scored on (.npz x/y or DIR/<class>/*.jpg, as evaluate takes).")
    ] = None,
    by: Annotated[
        str, typer.Option("--by", help="error: int8 error per layer on --calib; accuracy: one "
                          "layer int8 at a time (the rest float), ranked by the task metric's "
                          "drop on --data.")
    ] = "error",
    top: Annotated[
        int | None, typer.Option("--top", help="--by accuracy: score only the error ranking's "
                                 "first N layers (the rest follow in its order, no drop).")
    ] = None,
    task: TaskOpt = None,
    labels: LabelsOpt = None,
    decoder: DecoderOpt = None,
    calib_samples: SamplesOpt = 200,
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Rank layers by int8 quantization error or by accuracy drop, most sensitive first.
    --by accuracy scores each model with the task as evaluate does (--task, --labels,
    --decoder): detection by mAP, segmentation by mIoU, classification by top-1."""
    from quantlab.harness.quantize.variants import sensitivity

    if by not in ("error", "accuracy"):
        raise UserError(f"--by {by}: unknown ranking", hint="use --by error or --by accuracy")
    what = "per-layer quantization error" if by == "error" else "accuracy, one layer at a time"
    with err_console.status(f"measuring {what}"):
        result = sensitivity(model, calib, calib_samples=calib_samples, seed=seed, data=data,
                             by="accuracy" if by == "accuracy" else "error", top=top,
                             task=task, labels=labels, decoder=decoder, **fmt.reading())
    rows = result["layers"]
    if json_out:
        print_json({"model": model, **result})
        return
    from rich.table import Table

    cost = ", ".join(f"{k} ranking {v:.1f} s" for k, v in result["seconds"].items())
    cost += f"; accuracy for the top {result['top']} by error" if result.get("top") else ""
    what = f"{result['metric']} ({result['task']})" if result.get("metric") else by
    table = Table(title=f"int8 sensitivity of {model} by {what} (most sensitive first)",
                  caption=cost)
    cols = ["#", "layer", "op", "error (rel.)", "MSE"]
    if by == "accuracy":
        cols[2:2] = [f"{rows[0]['metric']} drop" if rows else "drop"]
    for col in cols:
        table.add_column(col)
    for i, r in enumerate(rows, 1):
        cells = [str(i), r["layer"][:70], r.get("op") or "", f"{r['rel_error']:.4f}",
                 f"{r['mse']:.3g}"]
        if by == "accuracy":
            cells[2:2] = ["–" if r["drop"] is None else f"{r['drop']:.4f}"]
        table.add_row(*cells)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add sensitivity to the app."""
    app.command("sensitivity")(sensitivity_cmd)
