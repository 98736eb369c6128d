"""Options of the int8 schemes (weight granularity, calibration size, mixed-precision limits)
and of Core ML palettization (``coreml_keep``: layers kept fp16).

Passed to :func:`quantlab.harness.quantize.variants.quantize` as ``options``, carried to
the worker in the request, applied to every scheme that calibrates (``coreml_keep``:
to the palettized Core ML scheme), and recorded per variant in the manifest
(``options``) so that two variants of the same scheme made differently can be told apart.
"""

from __future__ import annotations

from typing import Any

from quantlab.harness.errors import UserError
from quantlab.harness.quantize.schemes import Scheme

GRANULARITIES = ("per-channel", "per-tensor")
DEFAULT_GRANULARITY = "per-channel"


class OptionError(UserError):
    """An option the model contradicts, found once the worker has loaded it (a layer name
    that the model lacks): fatal for the whole request, like a bad option found up front."""


def sensitive_count(keep: list[str] | None) -> int | None:
    """N of a ``["sensitive:N"]`` layer list (the N most int8-sensitive layers), else None."""
    if keep and len(keep) == 1 and str(keep[0]).startswith("sensitive:"):
        return int(str(keep[0]).split(":", 1)[1])
    return None


def check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """The options with defaults filled in; UserError for a bad value."""
    out = dict(options or {})
    granularity = out.setdefault("granularity", DEFAULT_GRANULARITY)
    if granularity not in GRANULARITIES:
        raise UserError(f"--granularity {granularity!r}: expected per-channel or per-tensor")
    share = out.get("mixed_max_size_share")
    if share is not None and not 0 < float(share) <= 1:
        raise UserError(f"mixed size limit {share}: expected a share of the float model in (0, 1]")
    layers = out.get("mixed_max_float_layers")
    if layers is not None and int(layers) < 0:
        raise UserError(f"mixed layer limit {layers}: expected 0 or more")
    keep = out.get("coreml_keep")
    if keep is not None:
        if isinstance(keep, str) or not all(isinstance(k, str) and k.strip() for k in keep):
            raise UserError(f"--coreml-keep {keep!r}: expected a list of layer names")
        out["coreml_keep"] = keep = [k.strip() for k in keep]
        if any(k.startswith("sensitive:") for k in keep):
            count = keep[0].partition(":")[2]
            if len(keep) > 1 or not count.isdigit() or int(count) < 1:
                raise UserError(f"--coreml-keep {','.join(keep)}: expected layer names or "
                                "sensitive:N alone (N ≥ 1)")
    return out


def applies(scheme: Scheme) -> bool:
    """Whether the int8 options mean anything for this scheme (it calibrates int8 weights)."""
    return scheme.format == "tflite" and scheme.needs_calibration and not scheme.needs_training


def converter_settings(scheme: Scheme, options: dict[str, Any] | None) -> dict[str, Any]:
    """Settings to merge into the scheme's TF / AEQ converter settings."""
    if applies(scheme) and (options or {}).get("granularity") == "per-tensor":
        return {"per_tensor": True}
    return {}


def keeps_layers(scheme: Scheme) -> bool:
    """Whether ``coreml_keep`` means anything for this scheme (Core ML palettized weights)."""
    return (scheme.coreml or {}).get("compress") == "palettize4"


def recorded(scheme: Scheme, options: dict[str, Any] | None, calib_samples: int | None
             ) -> dict[str, Any] | None:
    """What the manifest records for a variant (None for schemes the options do not touch).

    A palettized Core ML variant with layers kept records the request here; the worker adds
    the layers kept and their Core ML ops (``keep``, ``keep_ops``)."""
    opts = options or {}
    if keeps_layers(scheme) and opts.get("coreml_keep"):
        keep = list(opts["coreml_keep"])
        ranked = {"calibration_samples": calib_samples} if sensitive_count(keep) else {}
        return {"palettization": "4-bit kmeans", "coreml_keep": keep, **ranked}
    if not applies(scheme):
        return None
    out: dict[str, Any] = {
        "granularity": opts.get("granularity", DEFAULT_GRANULARITY),
        "calibration_samples": calib_samples,
    }
    if scheme.mixed:
        for key in ("mixed_max_float_layers", "mixed_max_size_share"):
            if opts.get(key) is not None:
                out[key] = opts[key]
    return out
