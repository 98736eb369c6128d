"""Evaluations kept with the runs: ``quantlab evaluate``'s report saved in the store.

Each variant's accuracy is one stored row keyed by the variant's sha256 (its metric,
value, the reference's, its drop and gate, and the variant's whole report entry), which
``recommend`` and the HTML report (accuracy, calibration, autoquant's ladder) read back
through :meth:`quantlab.harness.store.Store.evaluations`. Evaluating
(``harness/quantize/evaluate.py``) measures and never writes to the store; saving is this
layer's, where runs are owned. ``evaluate --device`` rows (accuracy from a device's own
outputs) are stored the same way, each naming its device, delegate, runtime and sample set
(:meth:`~quantlab.harness.store.Store.device_evaluations` reads them back).
"""

from __future__ import annotations

from typing import Any


def save_to_store(report: dict[str, Any], location: str) -> int:
    """Save each variant's evaluation in the store (keyed by variant sha256); returns how many."""
    from quantlab.harness.store import Store

    store = Store.open(location)
    try:
        for v in report["variants"]:
            store.save_evaluation(
                variant_sha256=v["sha256"],
                scheme=v["scheme"],
                path=v["path"],
                source_sha256=v["source_sha256"],
                metric=report["metric"],
                value=v["gate"]["value"],
                reference_value=report["reference"]["value"],
                drop=v["gate"]["drop"],
                max_drop=v["gate"]["max_drop"],
                passed=v["gate"]["passed"],
                payload=v,
            )
    finally:
        store.close()
    return len(report["variants"])


def save_device_rows(report: dict[str, Any], location: str) -> int:
    """Save each (variant, device, delegate) row of ``quantlab evaluate --device``
    (:func:`quantlab.harness.device_eval.evaluate_on_devices`) in the store: the stored
    evaluation names the device, delegate, runtime and its version and the sample set;
    returns how many."""
    from quantlab.harness.store import Store

    store = Store.open(location)
    try:
        for row in report["rows"]:
            gate = row["gate"]
            store.save_evaluation(
                variant_sha256=row["sha256"], scheme=row["scheme"], path=row["path"],
                source_sha256=None, metric=report["metric"], value=gate["value"],
                reference_value=report["reference"]["value"], drop=gate["drop"],
                max_drop=gate["max_drop"], passed=gate["passed"],
                payload={**row, "task": report["task"], "sample_set_record":
                         report["sample_set"]},
                where={"device": row["device"], "delegate": row["delegate"],
                       "runtime": row["runtime"], "runtime_version": row["runtime_version"],
                       "sample_set": row["sample_set"]})
    finally:
        store.close()
    return len(report["rows"])
