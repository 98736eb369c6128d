"""Options of the commands that make variants (`quantize`, `evaluate`, `sensitivity`,
`autoquant`), declared once so each reads and helps the same everywhere."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from quantlab.harness.cli.common import split_list

SchemesOpt = Annotated[
    str, typer.Option("--schemes", help="Comma-separated schemes, or all / tflite / coreml / "
                      "pte (ExecuTorch).")
]
CALIB_HELP = "Calibration data: .npz/.npy or DIR/<class>/*.jpg."
CalibOpt = Annotated[str | None, typer.Option("--calib", help=CALIB_HELP)]
RequiredCalibOpt = Annotated[str, typer.Option("--calib", help=CALIB_HELP)]
MaxDropOpt = Annotated[
    float, typer.Option("--max-drop", help="Largest allowed absolute drop of the main metric.")
]
SamplesOpt = Annotated[
    int, typer.Option("--calib-samples", help="Calibration samples drawn from the data.")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for drawing calibration samples.")]
TaskOpt = Annotated[
    str | None, typer.Option("--task", help="classification, detection, segmentation or "
                             "regression (default: inferred from the outputs and labels).")]
LabelsOpt = Annotated[
    str | None, typer.Option("--labels", help="Ground truth beside --data: COCO annotations "
                             "JSON for detection (its images, in order, are the inputs of "
                             "--data).")]
DecoderOpt = Annotated[
    str | None, typer.Option("--decoder", help="Detection outputs: ssd (boxes, classes, "
                             "scores, count), yolo (raw [1,4+C,N], host NMS) or blazeface (raw "
                             "anchors). Default: inferred from the output shapes.")]
TrainOpt = Annotated[
    str | None,
    typer.Option("--train", help="Labelled training data for qat-int8: .npz (x, y) or "
                 "DIR/<class>/*.jpg."),
]
EpochsOpt = Annotated[int, typer.Option("--epochs", min=1, help="qat-int8: most fine-tuning "
                                        "epochs (early stop on a held-out split).")]
LrOpt = Annotated[float, typer.Option("--lr", min=0.0, help="qat-int8: learning rate (Adam).")]
QatLayersOpt = Annotated[
    str | None,
    typer.Option("--qat-layers", help="qat-int8: quantize only these Keras layers "
                 "(comma-separated), or sensitive:N for the N most sensitive; default all."),
]
GranularityOpt = Annotated[
    str, typer.Option("--granularity", help="int8 weights: per-channel or per-tensor.")
]
CoremlKeepOpt = Annotated[
    str | None,
    typer.Option("--coreml-keep", help="coreml-w4: leave these Keras layers' weights fp16 "
                 "(comma-separated), or sensitive:N for the N most int8-sensitive (ranked on "
                 "--calib)."),
]


def qat_settings(epochs: int, lr: float, qat_layers: str | None) -> dict[str, Any]:
    """The ``qat`` settings of a quantize request from CLI options."""
    return {"epochs": epochs, "lr": lr, "layers": split_list(qat_layers) or None}
