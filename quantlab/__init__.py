"""quantlab from Python: quantize, evaluate, benchmark, compare, recommend, read results.

The same records and errors as the ``quantlab`` command (which calls these
functions)::

    import quantlab

    run = quantlab.bench(["model.tflite"], device="sim", iterations=20, repeats=2)
    for r in run.results:
        print(r.status, r.latency_ms.statistic, r.latency_ms.value)

Importing this package is cheap: each function loads what it needs when called.
docs/python-api.md has the full tour.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from quantlab._bench import bench, plan
    from quantlab._quantize import evaluate, quantize
    from quantlab._records import Record
    from quantlab._report import compare, recommend
    from quantlab._results import Results, open_results
    from quantlab.harness.errors import (
        DeviceFault,
        JobFailed,
        ModelError,
        QuantlabError,
        RunIncomplete,
        StoreError,
        UserError,
    )

_EXPORTS = {
    "bench": "quantlab._bench",
    "plan": "quantlab._bench",
    "quantize": "quantlab._quantize",
    "evaluate": "quantlab._quantize",
    "compare": "quantlab._report",
    "recommend": "quantlab._report",
    "open_results": "quantlab._results",
    "Results": "quantlab._results",
    "Record": "quantlab._records",
    "QuantlabError": "quantlab.harness.errors",
    "UserError": "quantlab.harness.errors",
    "ModelError": "quantlab.harness.errors",
    "StoreError": "quantlab.harness.errors",
    "RunIncomplete": "quantlab.harness.errors",
    "DeviceFault": "quantlab.harness.errors",
    "JobFailed": "quantlab.harness.errors",
}

__all__ = [
    "DeviceFault",
    "JobFailed",
    "ModelError",
    "QuantlabError",
    "Record",
    "Results",
    "RunIncomplete",
    "StoreError",
    "UserError",
    "bench",
    "compare",
    "evaluate",
    "open_results",
    "plan",
    "quantize",
    "recommend",
]


def __getattr__(name: str) -> Any:
    """Load a public name on first use (keeps ``import quantlab`` cheap)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'quantlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
