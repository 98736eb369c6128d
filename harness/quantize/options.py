"""Options of the int8 schemes (weight granularity, calibration size, mixed-precision limits).

Passed to :func:`harness.quantize.variants.quantize` as ``options``, carried to
the worker in the request, applied to every scheme that calibrates, and
recorded per variant in the manifest (``options``) so that two variants of
the same scheme made differently can be told apart.
"""

from __future__ import annotations

from typing import Any

from harness.errors import UserError
from harness.quantize.schemes import Scheme

GRANULARITIES = ("per-channel", "per-tensor")
DEFAULT_GRANULARITY = "per-channel"


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
    return out


def applies(scheme: Scheme) -> bool:
    """Whether the int8 options mean anything for this scheme (it calibrates int8 weights)."""
    return scheme.format == "tflite" and scheme.needs_calibration and not scheme.needs_training


def converter_settings(scheme: Scheme, options: dict[str, Any] | None) -> dict[str, Any]:
    """Settings to merge into the scheme's TF / AEQ converter settings."""
    if applies(scheme) and (options or {}).get("granularity") == "per-tensor":
        return {"per_tensor": True}
    return {}


def recorded(scheme: Scheme, options: dict[str, Any] | None, calib_samples: int | None
             ) -> dict[str, Any] | None:
    """What the manifest records for a variant (None for schemes the options do not touch)."""
    if not applies(scheme):
        return None
    opts = options or {}
    out: dict[str, Any] = {
        "granularity": opts.get("granularity", DEFAULT_GRANULARITY),
        "calibration_samples": calib_samples,
    }
    if scheme.mixed:
        for key in ("mixed_max_float_layers", "mixed_max_size_share"):
            if opts.get(key) is not None:
                out[key] = opts[key]
    return out
