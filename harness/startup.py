"""The first second of a job (``RawResult.startup``): cold and warm start, as figures.

A start is ``{load_ms, delegate_ms, first_inference_ms}`` (each null where the runtime does not
expose it); its **time to first result** is their sum over what was measured. The cold start
loads the model and initializes the delegate from nothing; the warm start does it again with
the delegate's cache (GPU/NNAPI ``--delegate_serialize_dir`` on Android). Where there is no
warm start the record says why (``warm_unavailable``).
"""

from __future__ import annotations

from typing import Any


def to_first_result(start: dict[str, Any] | None) -> float | None:
    """Load + delegate + first inference (ms), over the figures measured; None without any."""
    if not start:
        return None
    parts = [start.get(k) for k in ("load_ms", "delegate_ms", "first_inference_ms")]
    known = [float(p) for p in parts if p is not None]
    return sum(known) if known else None


def cold_and_warm(startup: dict[str, Any] | None) -> tuple[float | None, float | None]:
    """The cold and the warm start's time to first result (ms)."""
    if not startup:
        return None, None
    return to_first_result(startup.get("cold")), to_first_result(startup.get("warm"))


def describe(startup: dict[str, Any]) -> str:
    """One line: cold start, warm start and what the cache saves (or why no warm start)."""
    cold, warm = cold_and_warm(startup)
    c = startup.get("cold") or {}
    parts = [f"cold start {cold:.1f} ms" if cold is not None else "cold start not measured"]
    detail = [f"{name} {c[key]:.1f} ms" for key, name in
              (("load_ms", "load"), ("delegate_ms", "delegate"),
               ("first_inference_ms", "first inference")) if c.get(key) is not None]
    if detail:
        parts[0] += f" ({', '.join(detail)})"
    if warm is not None:
        saved = f", {1 - warm / cold:.0%} less" if cold else ""
        parts.append(f"warm start {warm:.1f} ms from the delegate's cache{saved}")
    elif startup.get("warm_unavailable"):
        parts.append(f"no warm start: {startup['warm_unavailable']}")
    return "; ".join(parts)
