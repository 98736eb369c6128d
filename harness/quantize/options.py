"""Options of the int8 schemes (weight granularity, calibration size, mixed-precision limits)
and of Core ML palettization (``coreml_keep``: layers kept fp16).

Given as a mapping (``quantlab.quantize``'s ``granularity``/``coreml_keep``, the CLI's options,
the ladder's rungs), checked once into :class:`QuantizeOptions` by :func:`check_options`,
carried to the worker in its request, applied to every scheme that calibrates
(``coreml_keep``: to the palettized Core ML scheme), and recorded per variant in the manifest
(``options``) so that two variants of the same scheme made differently can be told apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from quantlab.harness.errors import UserError
from quantlab.harness.quantize.schemes import Scheme

GRANULARITIES = ("per-channel", "per-tensor")
DEFAULT_GRANULARITY = "per-channel"


@dataclass(frozen=True)
class QuantizeOptions:
    """The checked options of one quantize request (see :func:`check_options`)."""

    granularity: str = DEFAULT_GRANULARITY  # int8 weights: per-channel | per-tensor
    mixed_max_float_layers: int | None = None  # mixed-int8: most layers kept float
    mixed_max_size_share: float | None = None  # mixed-int8: largest size, share of the float
    coreml_keep: tuple[str, ...] | None = None  # coreml-w4: layers kept fp16, or sensitive:N
    mixed_rank: str = "error"  # mixed-int8: layers ranked by int8 error or by accuracy drop


class OptionError(UserError):
    """An option the model contradicts, found once the worker has loaded it (a layer name
    that the model lacks): fatal for the whole request, like a bad option found up front."""


def sensitive_count(keep: list[str] | tuple[str, ...] | None) -> int | None:
    """N of a ``["sensitive:N"]`` layer list (the N most int8-sensitive layers), else None."""
    if keep and len(keep) == 1 and str(keep[0]).startswith("sensitive:"):
        return int(str(keep[0]).split(":", 1)[1])
    return None


def check_options(options: Mapping[str, Any] | QuantizeOptions | None) -> QuantizeOptions:
    """The options with defaults filled in; UserError for a bad value (unknown keys are
    ignored)."""
    out = asdict(options) if isinstance(options, QuantizeOptions) else dict(options or {})
    granularity = out.setdefault("granularity", DEFAULT_GRANULARITY)
    if granularity not in GRANULARITIES:
        raise UserError(f"--granularity {granularity!r}: expected per-channel or per-tensor")
    share = out.get("mixed_max_size_share")
    if share is not None and not 0 < float(share) <= 1:
        raise UserError(f"mixed size limit {share}: expected a share of the float model in (0, 1]")
    layers = out.get("mixed_max_float_layers")
    if layers is not None and int(layers) < 0:
        raise UserError(f"mixed layer limit {layers}: expected 0 or more")
    rank = out.get("mixed_rank") or "error"
    if rank not in ("error", "accuracy"):
        raise UserError(f"--rank {rank}: expected error or accuracy")
    keep = out.get("coreml_keep")
    if keep is not None:
        if isinstance(keep, str) or not all(isinstance(k, str) and k.strip() for k in keep):
            raise UserError(f"--coreml-keep {keep!r}: expected a list of layer names")
        keep = [k.strip() for k in keep]
        if any(k.startswith("sensitive:") for k in keep):
            count = keep[0].partition(":")[2]
            if len(keep) > 1 or not count.isdigit() or int(count) < 1:
                raise UserError(f"--coreml-keep {','.join(keep)}: expected layer names or "
                                "sensitive:N alone (N ≥ 1)")
    return QuantizeOptions(granularity=granularity, mixed_max_float_layers=layers,
                           mixed_max_size_share=share, mixed_rank=rank,
                           coreml_keep=None if keep is None else tuple(keep))


def applies(scheme: Scheme) -> bool:
    """Whether the int8 options mean anything for this scheme (it calibrates int8 weights)."""
    return scheme.format in ("tflite", "pte") and scheme.needs_calibration \
        and not scheme.needs_training


def converter_settings(scheme: Scheme, options: QuantizeOptions | None) -> dict[str, Any]:
    """Settings to merge into the scheme's TF / AEQ converter settings."""
    if applies(scheme) and options is not None and options.granularity == "per-tensor":
        return {"per_tensor": True}
    return {}


def keeps_layers(scheme: Scheme) -> bool:
    """Whether ``coreml_keep`` means anything for this scheme (Core ML palettized weights)."""
    return scheme.format == "coreml" and scheme.tf_settings.get("compress") == "palettize4"


def recorded(scheme: Scheme, options: QuantizeOptions | None, calib_samples: int | None
             ) -> dict[str, Any] | None:
    """What the manifest records for a variant (None for schemes the options do not touch).

    A palettized Core ML variant with layers kept records the request here; the worker adds
    the layers kept and their Core ML ops (``keep``, ``keep_ops``)."""
    opts = options or QuantizeOptions()
    if keeps_layers(scheme) and opts.coreml_keep:
        keep = list(opts.coreml_keep)
        ranked = {"calibration_samples": calib_samples} if sensitive_count(keep) else {}
        return {"palettization": "4-bit kmeans", "coreml_keep": keep, **ranked}
    if not applies(scheme):
        return None
    out: dict[str, Any] = {
        "granularity": opts.granularity,
        "calibration_samples": calib_samples,
    }
    if scheme.mixed:
        out["mixed_rank"] = opts.mixed_rank
        for key in ("mixed_max_float_layers", "mixed_max_size_share"):
            if getattr(opts, key) is not None:
                out[key] = getattr(opts, key)
    return out
