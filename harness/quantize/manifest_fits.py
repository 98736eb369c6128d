"""Fitted recalibrations travel with their variant: ``evaluate --recalibrate`` writes each
variant's fitted values into its entry of the variants folder's ``manifest.json``.

Each entry's ``recalibration`` maps where the values were fitted (``host``, or ``DEVICE ·
DELEGATE`` for a device's own outputs) to the fitted values (the temperature, or detection's
score threshold, with the figures that judge it and the split; the reliability diagram's
points stay in the JSON and the store). A re-run overwrites what it fits again and keeps the
rest. The manifest is rewritten whole or not at all (:mod:`quantlab.harness.atomic`); a folder
that cannot be written gives a one-line warning and leaves the manifest as it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from quantlab.harness.atomic import write_text_atomically
from quantlab.harness.errors import UserError
from quantlab.harness.quantize.manifest import MANIFEST

KEPT = ("method", "temperature", "ece_before", "ece_after", "threshold", "reference_threshold",
        "reference_recall", "recall", "recall_at_reference_threshold", "held_out", "split")
"""The fitted values and their figures that go into the manifest."""


def fitted(rec: dict[str, Any], data: str, samples: int) -> dict[str, Any]:
    """A recalibration record as the manifest keeps it: :data:`KEPT`, the data and samples."""
    return {**{k: rec[k] for k in KEPT if k in rec}, "data": data, "samples": samples}


def fits_of(rows: Iterable[dict[str, Any]], data: str, samples: int, on_device: bool
            ) -> list[tuple[str, str, dict[str, Any]]]:
    """The (variant path, where, values) of every evaluated row with a recalibration:
    ``evaluate``'s variants (fitted on the ``host``) or ``evaluate --device``'s rows (fitted
    on ``DEVICE · DELEGATE``)."""
    out = []
    for r in rows:
        rec = (r.get("calibration") or {}).get("recalibration")
        if rec:
            where = f"{r['device']} · {r['delegate']}" if on_device else "host"
            out.append((str(r["path"]), where, fitted(rec, data, samples)))
    return out


def record_fits(folder: str | Path, fits: Iterable[tuple[str, str, dict[str, Any]]]
                ) -> str | None:
    """Write ``fits`` (variant path, where fitted, :func:`fitted` values) into the entries of
    ``folder``'s manifest whose file is the variant's; returns a one-line warning instead
    when there is no manifest or it cannot be written, else None."""
    path = Path(folder) / MANIFEST
    todo = list(fits)
    if not todo:
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return (f"{path}: the fitted recalibration was not written into the manifest "
                f"({getattr(exc, 'strerror', None) or exc}); it is in --json and the store")
    by_file = {e.get("file"): e for e in manifest.get("variants", []) if e.get("file")}
    for variant, where, values in todo:
        entry = by_file.get(Path(variant).name)
        if entry is not None:
            entry["recalibration"] = {**(entry.get("recalibration") or {}), where: values}
    try:
        write_text_atomically(path, json.dumps(manifest, indent=2, default=str) + "\n")
    except (OSError, UserError) as exc:
        why = exc.one_line() if isinstance(exc, UserError) else exc.strerror or str(exc)
        return (f"{path}: the fitted recalibration was not written into the manifest "
                f"({why}); it is in --json and the store")
    return None


def keep_fits(folder: str | Path, rows: Iterable[dict[str, Any]], data: str, samples: int,
              on_device: bool = False) -> list[str]:
    """:func:`record_fits` of :func:`fits_of` ``rows``: the warnings to print (none or one)."""
    warning = record_fits(folder, fits_of(rows, data, samples, on_device))
    return [warning] if warning else []
