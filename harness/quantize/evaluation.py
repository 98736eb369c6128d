"""What ``evaluate`` reports, as frozen records: the report, one row per variant, each gate.

:class:`Evaluation` is what :func:`quantlab.harness.quantize.evaluate.evaluate_variants`
returns; ``to_dict`` is the JSON the CLI prints (``evaluate --json``), the HTML report reads
and the store keeps per variant (a row's ``to_dict`` is its payload), with the keys in the
order they have always had. ``from_dict`` reads a row or a gate back from that JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GateVerdict:
    """One variant's accuracy gate (:func:`quantlab.harness.quantize.gate.judge`): whether it
    passed, its drop (in points where higher is better), the metric and its value, the largest
    drop allowed, the drop's 95 % interval and why, in one line. A variant the runtime refused
    has no drop: its gate is not ``judged`` (only the first six fields)."""

    passed: bool
    drop: float | None
    drop_pt: float | None
    metric: str
    value: float | None
    max_drop: float
    interval: dict[str, Any] | None = None  # the drop's paired 95 % interval
    resolved: bool | None = None  # the interval lies wholly on one side of max_drop
    decided_by: str | None = None  # "interval" (--gate-confidence) | "point estimate"
    max_mse: float | None = None  # --max-mse, when given
    mse_passed: bool | None = None
    why: str | None = None
    judged: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The gate's JSON."""
        out: dict[str, Any] = {"passed": self.passed, "drop": self.drop, "drop_pt": self.drop_pt,
                               "metric": self.metric, "value": self.value,
                               "max_drop": self.max_drop}
        if not self.judged:
            return out
        out.update(interval=self.interval, resolved=self.resolved, decided_by=self.decided_by)
        if self.max_mse is not None:
            out.update(max_mse=self.max_mse, mse_passed=self.mse_passed)
        out["why"] = self.why
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateVerdict:
        """A gate from its JSON."""
        names = ("interval", "resolved", "decided_by", "max_mse", "mse_passed", "why")
        return cls(passed=bool(data["passed"]), drop=data["drop"], drop_pt=data["drop_pt"],
                   metric=data["metric"], value=data["value"], max_drop=data["max_drop"],
                   **{k: data[k] for k in names if k in data}, judged="why" in data)


@dataclass(frozen=True)
class VariantEvaluation:
    """One variant's row: its task metrics, fidelity against fp32 (task measures and
    ``outputs``, one entry per output), confidence calibration drift, gate and edge cases, or
    the ``error`` the runtime refused it with."""

    scheme: str | None
    path: str
    sha256: str
    source_sha256: str | None
    gate: GateVerdict
    metrics: dict[str, Any] = field(default_factory=dict)
    fidelity: dict[str, Any] = field(default_factory=lambda: {"outputs": []})
    calibration: dict[str, Any] | None = None
    edge_cases: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def label(self) -> str:
        """The scheme, or the file name of a variant without one."""
        return self.scheme or Path(self.path).name

    def to_dict(self) -> dict[str, Any]:
        """The row's JSON (``accuracy`` repeats ``metrics``)."""
        head = {"scheme": self.scheme, "path": self.path, "sha256": self.sha256,
                "source_sha256": self.source_sha256}
        if self.error is not None:
            return {**head, "error": self.error, "metrics": dict(self.metrics),
                    "accuracy": dict(self.metrics), "fidelity": dict(self.fidelity),
                    "calibration": self.calibration, "edge_cases": list(self.edge_cases),
                    "gate": self.gate.to_dict()}
        return {**head, "metrics": dict(self.metrics), "accuracy": dict(self.metrics),
                "fidelity": dict(self.fidelity), "calibration": self.calibration,
                "gate": self.gate.to_dict(), "edge_cases": list(self.edge_cases)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VariantEvaluation:
        """A row from its JSON (a stored evaluation's payload)."""
        return cls(scheme=data["scheme"], path=data["path"], sha256=data["sha256"],
                   source_sha256=data.get("source_sha256"),
                   gate=GateVerdict.from_dict(data["gate"]), metrics=dict(data["metrics"]),
                   fidelity=dict(data["fidelity"]), calibration=data.get("calibration"),
                   edge_cases=list(data.get("edge_cases") or []), error=data.get("error"))


@dataclass(frozen=True)
class Evaluation:
    """Every TFLite variant of a variants folder against its fp32 variant on one data set."""

    task: dict[str, Any]  # name, why (given or inferred), decoder, metrics, labels, notes
    reference: dict[str, Any]  # the fp32 variant: scheme, path, accuracy, value
    skipped: list[dict[str, str]]  # variants evaluate cannot run (Core ML), with the reason
    metric: str  # the gated metric
    samples: int
    data: str
    warnings: list[str]
    gate_confidence: bool
    variants: list[VariantEvaluation]

    @property
    def max_drop(self) -> dict[str, float]:
        """Each variant's gate, by label."""
        return {v.label: v.gate.max_drop for v in self.variants}

    @property
    def failed(self) -> list[str]:
        """The labels of the variants that failed their gate."""
        return [v.label for v in self.variants if not v.gate.passed]

    def to_dict(self) -> dict[str, Any]:
        """The report's JSON (``quantlab evaluate --json`` prints it, with ``per_delegate``
        when asked)."""
        return {"task": self.task, "reference": self.reference, "skipped": self.skipped,
                "metric": self.metric, "max_drop": self.max_drop, "samples": self.samples,
                "data": self.data, "warnings": list(self.warnings),
                "gate_confidence": self.gate_confidence,
                "variants": [v.to_dict() for v in self.variants], "failed": self.failed}
