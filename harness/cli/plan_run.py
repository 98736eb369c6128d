"""What ``bench`` adds for the nightly lab: a plan file merged with the command line, the
accuracy gate, a baseline compared in the same command, and CI outputs.

Kept apart from :mod:`quantlab.harness.cli.bench` so the bench command itself only calls in here.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from quantlab.harness.cli.common import console, err_console, warn
from quantlab.harness.errors import UserError
from quantlab.harness.planfile import PlanFile

MEASURE_OPTIONS = ("warmup", "iterations", "min_time", "repeats", "profile_ops", "inputs",
                   "energy", "energy_on_usb", "numerics", "timeout", "retry_timeout", "confirm",
                   "sustained", "window", "throttle")
"""bench options a plan file's [measure] table sets (same names)."""


def given_on_command_line(ctx: typer.Context) -> set[str]:
    """Names of the parameters the user gave (command line or environment), not defaults."""
    given: set[str] = set()
    for name in ctx.params:
        # compared by name: typer may bring its own copy of click's ParameterSource enum
        source = getattr(ctx.get_parameter_source(name), "name", None)
        if source in ("COMMANDLINE", "ENVIRONMENT"):
            given.add(name)
    return given


def merged_options(plan: PlanFile | None, params: dict[str, Any], given: set[str]
                   ) -> dict[str, Any]:
    """bench's parameters with the plan's values where the command line gave none.

    Lists (models, devices, delegates, threads) become the comma-separated text the
    options take; ``models`` becomes a list of paths.
    """
    out = dict(params)
    if plan is None:
        return out
    for name in MEASURE_OPTIONS:
        if name not in given and name in plan.measure:
            out[name] = plan.measure[name]
    if "models" not in given or not params.get("models"):
        out["models"] = list(plan.models)
    if "delegate" not in given and plan.delegates:
        out["delegate"] = ",".join(plan.delegates)
    if "threads" not in given and plan.threads:
        out["threads"] = ",".join(str(n) for n in plan.threads)
    return out


def plan_devices(plan: PlanFile | None, given: set[str], fleet: Any) -> list[Any] | None:
    """The plan's devices from the fleet, unless --device was given (then None)."""
    if plan is None or "device" in given or not plan.devices:
        return None
    return plan.select_devices(fleet.devices)


def plan_jobs(plan: PlanFile, opts: dict[str, Any], given: set[str], settings: Any,
              fleet: Any) -> tuple[Any, list[Any]]:
    """(Plan, chosen devices) of a plan file merged with the command line, on ``fleet``
    (the measuring session's devices); runs nothing (``bench`` runs the accuracy gate with
    :func:`run_gate` afterwards, ``plan`` only shows it)."""
    from quantlab._bench import parse_threads
    from quantlab.harness.cli.common import split_list
    from quantlab.harness.plan import build_plan, expand_models, known_delegates, select_devices

    if "delegate" not in given:
        plan.check_delegates(known_delegates(fleet))
    chosen = plan_devices(plan, given, fleet)
    if chosen is None:
        chosen = select_devices(fleet, split_list(opts["device"]))
    the_plan = build_plan(expand_models(opts["models"]), chosen, fleet,
                          split_list(opts["delegate"]), parse_threads(opts["threads"]), settings)
    return the_plan, chosen


def gate_folders(models: list[str]) -> list[str]:
    """The variants folders (those with a manifest.json) among ``models``: what the gate
    evaluates."""
    return [m for m in models if (Path(m) / "manifest.json").is_file()]


def plan_summary(plan: PlanFile, models: list[str]) -> dict[str, Any]:
    """What a plan file adds beyond the jobs (for ``quantlab plan --plan``): its hash, tags,
    the gate it would run and its compare rules."""
    gate = None
    if plan.gate and plan.gate.get("data"):
        gate = {**plan.gate, "folders": gate_folders(models)}
    placed = {k: plan.gate[k] for k in ("min_delegated", "no_fallback")
              if plan.gate and k in plan.gate}
    return {"path": str(plan.path), "sha256": plan.sha256, "tags": list(plan.tags),
            "gate": gate, "placement_gate": placed or None, "compare": dict(plan.compare)}


def run_gate(plan: PlanFile, models: list[str], results: str) -> dict[str, Any] | None:
    """Evaluate every variants folder among ``models`` on the plan's gate data (as
    ``quantlab evaluate`` does) and store the evaluations, which ``quantlab recommend``
    reads. Returns ``{"data", "variants": [{folder, scheme, path, sha256, metric, value,
    drop, max_drop, passed}], "failed": ["int8 (FOLDER)", …]}``, None when no model is a
    variants folder. A failing variant is warned about here; it is still measured, and
    bench exits 1 at the end (:func:`gate_exit_code`)."""
    from quantlab.harness.cli.quantize import evaluate_with_progress
    from quantlab.harness.evaluations import save_to_store

    assert plan.gate is not None
    folders = gate_folders(models)
    if not folders:
        warn(f"{plan.path}: [gate] is set but no model is a variants folder; nothing evaluated")
        return None
    options = {k: plan.gate[k] for k in ("max_drop", "x_key", "y_key", "gate_confidence")
               if k in plan.gate}
    out: dict[str, Any] = {"data": plan.gate["data"], "variants": [], "failed": [],
                           "gate_confidence": bool(options.get("gate_confidence", False))}
    for folder in folders:
        report = evaluate_with_progress(folder, plan.gate["data"], **options)
        for w in report["warnings"]:
            warn(f"{folder}: {w}")
        save_to_store(report, results)
        for v in report["variants"]:
            g = v["gate"]
            label = f"{v['scheme'] or Path(v['path']).name} ({folder})"
            out["variants"].append({
                "folder": folder, "scheme": v["scheme"], "path": v["path"],
                "sha256": v["sha256"], "metric": g["metric"], "value": g["value"],
                "drop": g["drop"], "max_drop": g["max_drop"], "passed": g["passed"],
                "interval": g.get("interval")})
            if not g["passed"]:
                out["failed"].append(label)
                warn(f"accuracy gate failed for {label}: {_drop_text(v)}; it is measured "
                     "all the same, and bench exits 1")
    return out


def _drop_text(v: dict[str, Any]) -> str:
    g = v["gate"]
    if g["drop"] is None:
        return v.get("error") or "the runtime refused it"
    from quantlab.harness.quantize.gate import drop_text

    return f"{g['metric']} {drop_text(g['metric'], g['drop'], g['max_drop'], False)}"


def gate_exit_code(gate: dict[str, Any] | None, data: dict[str, Any], json_out: bool) -> int:
    """1 when a variant failed the accuracy gate (said again at the end, or put under
    ``"gate"`` in the JSON), else 0."""
    from rich.markup import escape

    if gate is None:
        return 0
    data["gate"] = gate
    if gate["failed"] and not json_out:
        err_console.print(f"[red]accuracy gate failed[/] for {escape(', '.join(gate['failed']))}"
                          "; the evaluations are stored (quantlab recommend "
                          f"{data.get('run_id', 'RUN')} ranks only variants within its "
                          "--max-drop)", soft_wrap=True)
    return 1 if gate["failed"] else 0


@dataclass(frozen=True)
class CompareRules:
    """How ``bench --baseline`` compares: baseline, threshold, match keys."""

    baseline: str | None
    threshold: str
    match: str | None
    fail_untestable: bool
    allow_missing: bool = False


def compare_rules(plan_compare: dict[str, Any], params: dict[str, Any],
                  given: set[str]) -> CompareRules:
    """The command line's compare options, else the plan's [compare] table, else defaults."""
    def pick(name: str) -> Any:
        return params.get(name) if name in given else plan_compare.get(name, params.get(name))

    match = pick("match")
    return CompareRules(
        baseline=params.get("baseline") or plan_compare.get("baseline"),
        threshold=str(pick("threshold") or "5%"),
        match=",".join(match) if isinstance(match, list) else match,
        fail_untestable=bool(params.get("fail_untestable")
                             or plan_compare.get("fail_untestable", False)),
        allow_missing=bool(params.get("allow_missing")
                           or plan_compare.get("allow_missing", False)))


def stored_plan_compare(store: Any, run_id: str) -> dict[str, Any]:
    """The [compare] table of the plan file a stored run was made from ({} without one); a
    UserError naming the run and the reason when the stored plan cannot be read, rather
    than compare rules that silently fall back to the defaults."""
    text = store.run_plan_text(run_id)
    if not text:
        return {}
    hint = "resume with --plan PLAN.toml (the plan file the run was made from)"
    try:
        table = tomllib.loads(text).get("compare", {})
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"run {run_id}: its stored plan file cannot be read ({exc})",
                        hint=hint) from None
    if not isinstance(table, dict):
        raise UserError(f"run {run_id}: its stored plan file's compare is not a table "
                        f"({type(table).__name__})", hint=hint)
    return table


def check_output_paths(junit: str | None, markdown: str | None) -> None:
    """Refuse CI output paths that cannot be files, before anything is measured."""
    for flag, value in (("--junit", junit), ("--markdown", markdown)):
        if value and Path(value).is_dir():
            raise UserError(f"{flag} {value}: is a folder", hint="give a file path")


def resolve_baseline(store: Any, rules: CompareRules, exclude: list[str],
                     own_tags: list[str]) -> str | None:
    """The baseline's run id, checked before anything is measured (with the threshold and
    match keys). A tag of this very run that no stored run carries yet (the first night
    of ``--tag nightly --baseline nightly``) is a warning and None: the run is measured
    and nothing compared. Any other unknown baseline is a UserError."""
    from quantlab.harness.verdicts.compare import parse_match
    from quantlab.harness.verdicts.latency import parse_threshold

    parse_threshold(rules.threshold)
    parse_match(rules.match)
    if not rules.baseline:
        return None
    found = store.find_runs(tag=rules.baseline, status=("done",), limit=1, exclude=exclude)
    if found:
        return str(found[0])
    try:
        base_id = str(store.resolve_run_id(rules.baseline))
    except UserError:
        if store.find_runs(tag=rules.baseline, limit=1, exclude=exclude):
            raise UserError(f"baseline {rules.baseline}: no run with this tag has finished",
                            hint="finish one with quantlab bench --resume RUN_ID") from None
        if not any(t == rules.baseline or t.startswith(f"{rules.baseline}=")
                   for t in own_tags):
            raise UserError(f"--baseline {rules.baseline}: no run has this tag or id",
                            hint="see quantlab runs (tags are listed with --json)") from None
        warn(f"baseline {rules.baseline}: no run has this tag or id yet; this run is measured "
             "and stored, and nothing is compared (the next run can use it)")
        return None
    if base_id in exclude:
        raise UserError(f"--baseline {rules.baseline}: is the run itself",
                        hint="name an earlier run or a tag of earlier runs")
    return base_id


def drift_in(store: Any, c: Any, record: Any, baseline: str | None) -> Any:
    """``c`` with each pair's drift over the newest finished runs tagged ``baseline`` (as
    many as ``history`` shows by default) and this run: the previous night alone, the
    reference of ``--baseline nightly``, moves every night and never sees a slow drift.
    A baseline that is a run id, not a tag, gives no window: ``c`` as it is."""
    from quantlab.harness.verdicts.history import DEFAULT_LAST, build_history, with_drift

    if not baseline:
        return c
    ids = store.find_runs(tag=baseline, status=("done",), limit=DEFAULT_LAST,
                          exclude=[record.run.run_id])
    if not ids:
        return c
    records = [store.load_run(i) for i in reversed(ids)] + [record]
    return with_drift(c, build_history(records, c.threshold))


def finish_with_baseline(store: Any, run_id: str, base_id: str | None, rules: CompareRules,
                         junit: str | None, markdown: str | None, data: dict[str, Any],
                         json_out: bool, accuracy: dict[str, Any] | None = None,
                         confirm: Callable[[Any], Any] | None = None) -> int:
    """Compare the finished run with its baseline (when there is one), re-measure its slower
    jobs with ``confirm`` (``[measure] confirm``), write the CI outputs (with the accuracy
    gate's result when it ran), print the comparison; returns compare's exit code (0 without
    a baseline)."""
    from quantlab._report import compare_in
    from quantlab.harness.report.ci import write_outputs

    outputs = {"junit": junit, "markdown": markdown}
    record = store.load_run(run_id)
    if base_id is None:
        for path in write_outputs(outputs, record=record, accuracy=accuracy):
            err_console.print(f"[dim]written {path}[/]")
        return 0
    c = compare_in(store, base_id, record, threshold=rules.threshold, match=rules.match,
                   allow_missing=rules.allow_missing)
    c = drift_in(store, c, record, rules.baseline)
    if confirm is not None:
        c = confirm(c)
    for path in write_outputs(outputs, comparison=c, accuracy=accuracy):
        err_console.print(f"[dim]written {path}[/]")
    data["comparison"] = c.as_dict()
    if not json_out:
        from quantlab.harness.cli.report import print_comparison

        print_comparison(c)
        console.print(f"[dim]baseline {rules.baseline} → run {base_id}[/]")
    return 1 if c.fails or (rules.fail_untestable and c.untestable) else 0
