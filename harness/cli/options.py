"""Option records: groups of options several commands share, declared once.

A group is a frozen dataclass whose fields carry their typer ``Annotated`` option.
:func:`with_options` expands the record's fields into the command's signature (so
typer sees ordinary options) and hands the command one record instead of a dozen
parameters::

    @handle_errors
    @with_options(measure=MeasureOptions)
    def plan(models: ..., measure: MeasureOptions, json_out: JsonOpt = False) -> None:
        settings = measure.settings()
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

TRAILING = ("results", "json_out", "verbose")
"""Parameters that stay last in a command's help, after the records' options."""


def with_options(**groups: type) -> Callable[[F], F]:
    """Replace each ``name=Record`` parameter of the command by the record's options.

    The record's field names become option parameters (they must not clash with the
    command's own); the command is called with ``name=Record(**those values)``.
    """

    def decorate(func: F) -> F:
        sig = inspect.signature(func, eval_str=True)
        params = [p for p in sig.parameters.values() if p.name not in groups]
        fields: dict[str, list[str]] = {}
        expanded: list[inspect.Parameter] = []
        for group, record in groups.items():
            hints = typing.get_type_hints(record, include_extras=True)
            names = []
            for f in dataclasses.fields(record):
                if f.name in sig.parameters:
                    raise TypeError(f"{func.__name__}: option {f.name} given twice")
                expanded.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                                  default=f.default, annotation=hints[f.name]))
                names.append(f.name)
            fields[group] = names
        # the records' options go before the command's trailing ones (--results, --json);
        # from there on every parameter is keyword-only (typer passes them all by name)
        split = next((i for i, p in enumerate(params) if p.name in TRAILING), len(params))
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if i >= split else p
               for i, p in enumerate(params)]
        new_params = own[:split] + expanded + own[split:]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for group, names in fields.items():
                if group not in kwargs:  # called from Python with the record itself
                    kwargs[group] = groups[group](**{n: kwargs.pop(n) for n in names})
            return func(*args, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=new_params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in new_params}
        return wrapper  # type: ignore[return-value]

    return decorate


# ---------------------------------------------------------------------------- measuring


@dataclasses.dataclass(frozen=True)
class MeasureOptions:
    """How each job measures (bench, plan): warm-up, iterations, repeats, extras."""

    warmup: Annotated[int, typer.Option("--warmup", min=0,
                                        help="Warm-up iterations per repeat.")] = 10
    iterations: Annotated[int, typer.Option("--iterations", min=1, help="Measured iterations "
                                            "per repeat (at least).")] = 50
    min_time: Annotated[float, typer.Option("--min-time", min=0.0, help="Keep measuring until "
                                            "this many seconds passed.")] = 0.0
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Process-level repeats "
                                         "(each a fresh process).")] = 3
    profile_ops: Annotated[bool, typer.Option("--profile-ops",
                                              help="Per-operator latency profile.")] = False
    inputs: Annotated[str | None, typer.Option("--inputs",
                                               help=".npz with one array per input.")] = None
    energy: Annotated[bool, typer.Option("--energy", help="Measure energy where a sensor "
                                         "exists.")] = False
    energy_on_usb: Annotated[bool, typer.Option(
        "--energy-on-usb", help="Keep a battery-gauge energy figure taken while the phone is on "
        "USB/AC power (it includes charge current; labelled so). Without it such a figure is "
        "null with the reason.")] = False
    numerics: Annotated[bool, typer.Option(
        "--numerics", help="Run fixed inputs (--inputs, or seeded random) through each delegate "
        "and compare the outputs with the float model's on the host (cosine, SQNR, max abs, "
        "top-1). The simulator also does it with --profile-ops.")] = False
    timeout: Annotated[float, typer.Option("--timeout", min=1.0,
                                           help="Seconds per job attempt.")] = 600.0
    sustained: Annotated[str | None, typer.Option(
        "--sustained", metavar="DURATION", help="Run each job without a pause for DURATION "
        "(e.g. 90s, 10m) instead of repeats, and record per window latency (median, p90), "
        "thermal state, temperatures, CPU frequencies and battery where readable; reports "
        "peak vs sustained throughput and the throttling point.")] = None
    window: Annotated[float | None, typer.Option(
        "--window", min=0.01, help="Seconds per window of a --sustained run (default 10, at "
        "most the duration).")] = None
    throttle: Annotated[str, typer.Option(
        "--throttle", help="A --sustained run is throttled from the window where latency "
        "starts to stay more than this above the first window's (e.g. 10%).")] = "10%"

    def as_kwargs(self) -> dict[str, Any]:
        """The fields by name (the keyword arguments of :func:`quantlab.bench`)."""
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------- CI outputs


@dataclasses.dataclass(frozen=True)
class GateOptions:
    """How a comparison with a baseline judges and reports (compare, bench --baseline)."""

    threshold: Annotated[str | None, typer.Option(
        "--threshold", help="Slowdown that fails, e.g. 5% (default 5%).")] = None
    match: Annotated[str | None, typer.Option(
        "--match", help="Keys that pair jobs: model,scheme,device,delegate,threads "
        "(default model,device,delegate,threads).")] = None
    fail_untestable: Annotated[bool, typer.Option(
        "--fail-untestable", help="Exit 1 when a pair cannot be tested.")] = False
    allow_missing: Annotated[bool, typer.Option(
        "--allow-missing", help="Accept jobs of the baseline that are not in the new run (a "
        "phone not attached, a model removed); without it they are 'missing' and exit 1.")] \
        = False
    junit: Annotated[str | None, typer.Option(
        "--junit", help="Write JUnit XML here: one test case per compared pair (slower or "
        "failed: a failure with the numbers; untestable: skipped with the reason) and per "
        "missing or newly failing job (a failure).")] = None
    markdown: Annotated[str | None, typer.Option(
        "--markdown", help="Write a Markdown summary here (CI job summary, PR comment).")] = None


# ---------------------------------------------------------------------------- data files


@dataclasses.dataclass(frozen=True)
class DataFormat:
    """How data files are read (quantize, evaluate, sensitivity, autoquant): the array
    names in an .npz, and the preprocessing of an image folder (``DIR/<class>/*.jpg``)."""

    x_key: Annotated[str, typer.Option("--x-key", help="Array name of the inputs in a "
                                       ".npz.")] = "x"
    y_key: Annotated[str, typer.Option("--y-key", help="Array name of the labels in a "
                                       ".npz.")] = "y"
    image_size: Annotated[str | None, typer.Option(
        "--image-size", help="HxW for image folders (default: model input).")] = None
    scale: Annotated[float, typer.Option("--scale", help="Pixel scale for image "
                                         "folders.")] = 1 / 255
    mean: Annotated[str, typer.Option("--mean", help="Per-channel mean (after scaling), "
                                      "comma-separated.")] = "0"
    std: Annotated[str, typer.Option("--std", help="Per-channel std (after scaling), "
                                     "comma-separated.")] = "1"
    channel_order: Annotated[str, typer.Option("--channel-order",
                                               help="rgb, bgr or gray.")] = "rgb"
    layout: Annotated[str, typer.Option("--layout", help="nhwc or nchw.")] = "nhwc"

    def image(self) -> Any:
        """The :class:`~quantlab.harness.quantize.data.ImageOptions` these options give; a
        UserError names the option that is malformed."""
        from quantlab.harness.cli.common import split_list
        from quantlab.harness.errors import UserError
        from quantlab.harness.quantize.data import ImageOptions

        hw = None
        if self.image_size:
            try:
                h, _, w = self.image_size.lower().partition("x")
                hw = (int(h), int(w or h))
            except ValueError:
                raise UserError(f"--image-size {self.image_size!r}: expected HxW, e.g. "
                                "224x224") from None
        if self.channel_order not in ("rgb", "bgr", "gray"):
            raise UserError(f"--channel-order {self.channel_order!r}: expected rgb, bgr or "
                            "gray")
        if self.layout not in ("nhwc", "nchw"):
            raise UserError(f"--layout {self.layout!r}: expected nhwc or nchw")
        try:
            m = tuple(float(v) for v in split_list(self.mean)) or (0.0,)
            s = tuple(float(v) for v in split_list(self.std)) or (1.0,)
        except ValueError:
            raise UserError(f"--mean {self.mean!r} / --std {self.std!r}: expected numbers "
                            "separated by commas") from None
        return ImageOptions(hw, self.scale, m, s, self.channel_order, self.layout)

    def reading(self) -> dict[str, Any]:
        """``x_key``, ``y_key`` and ``image``: the data-reading keyword arguments of
        quantize, evaluate, sensitivity and autoquant."""
        return {"x_key": self.x_key, "y_key": self.y_key, "image": self.image()}
