"""Benchmarking from Python: plan jobs, run them on devices, get the stored run back (through
the one measurement session, :mod:`quantlab.session`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantlab.harness.errors import UserError

if TYPE_CHECKING:
    from quantlab._records import Record
    from quantlab.harness.dispatch import Reporter
    from quantlab.harness.plan import Fleet
    from quantlab.harness.records import DeviceInfo, Plan, Settings

ListArg = str | Sequence[str] | None
"""A list option: a sequence, or comma-separated text as on the command line."""


def as_list(value: ListArg) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` as a list of non-empty items."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()]


def parse_threads(value: int | str | Sequence[int | str]) -> list[int]:
    """Thread counts from ``4``, ``"1,4"`` or ``[1, 4]`` (default ``[1]``)."""
    items = [str(value)] if isinstance(value, int) else as_list(
        value if isinstance(value, str) else [str(v) for v in value])
    out = []
    for item in items:
        try:
            out.append(int(item))
        except ValueError:
            raise UserError(f"--threads {item}: not a whole number") from None
    return out or [1]


def measure_settings(*, warmup: int = 10, iterations: int = 50, min_time: float = 0.0,
                     repeats: int = 3, profile_ops: bool = False,
                     inputs: str | Path | None = None, energy: bool = False,
                     energy_on_usb: bool = False, numerics: bool = False,
                     timeout: float = 600.0, sustained: str | float | None = None,
                     window: float | None = None, throttle: str | float = "10%") -> Settings:
    """The :class:`~quantlab.harness.records.Settings` of a request; checks ``inputs`` (an .npz)
    and a sustained run's ``sustained`` duration (``90s``, ``10m``), ``window`` (s) and
    ``throttle`` threshold (``10%``); the window is 10 s unless given, at most the duration."""
    from quantlab.harness.records import Settings
    from quantlab.harness.sustained import parse_duration, parse_percent

    sustained_s = parse_duration(sustained, "--sustained") if sustained else 0.0
    if window is None:
        window = min(10.0, sustained_s) if sustained_s else 10.0
    if sustained_s and not 0 < window <= sustained_s:
        raise UserError(f"--window {window:g}: not within the --sustained duration "
                        f"({sustained_s:g}s)", hint="give a window of at most the duration")

    inputs_sha = None
    if inputs:
        from quantlab.harness.models import file_sha256

        path = Path(inputs)
        if not path.is_file():
            raise UserError(f"--inputs {inputs}: no such file", hint="give an .npz file")
        if path.suffix != ".npz":
            raise UserError(f"--inputs {inputs}: not an .npz file",
                            hint="save inputs with numpy.savez(path, input_name=array, …)")
        inputs = str(path.resolve())
        inputs_sha = file_sha256(path)
    return Settings(warmup=warmup, iterations=iterations, min_time_s=min_time, repeats=repeats,
                    profile_ops=profile_ops, inputs=str(inputs) if inputs else None,
                    inputs_sha256=inputs_sha,
                    energy=energy or energy_on_usb,  # energy on USB implies energy
                    timeout_s=timeout, energy_on_usb=energy_on_usb, numerics=numerics,
                    sustained_s=sustained_s, window_s=float(window),
                    throttle_pct=parse_percent(throttle, "--throttle"))


def make_plan(models: Sequence[str | Path], device: ListArg, delegate: ListArg,
              threads: int | str | Sequence[int | str], settings: Settings,
              cluster: str | None = None, fleet: Fleet | None = None
              ) -> tuple[Plan, Fleet, list[DeviceInfo]]:
    """(plan, fleet, chosen devices): the jobs for these models on these devices (of
    ``fleet``, else those discovered, a lab's with ``cluster``)."""
    from quantlab.harness.plan import build_plan, expand_models, select_devices
    from quantlab.session import discover

    refs = expand_models([str(m) for m in models])
    fleet = fleet or discover(cluster)
    chosen = select_devices(fleet, as_list(device))
    the_plan = build_plan(refs, chosen, fleet, as_list(delegate), parse_threads(threads),
                          settings)
    return the_plan, fleet, chosen


def plan(models: Sequence[str | Path], device: ListArg = "sim", delegate: ListArg = None,
         threads: int | str | Sequence[int] = 1, **measure: Any) -> Plan:
    """The jobs a :func:`bench` would run, and those it would skip with the reason; runs
    nothing. ``measure`` takes :func:`bench`'s measuring options."""
    return make_plan(models, device, delegate, threads, measure_settings(**measure))[0]


def bench(models: Sequence[str | Path], device: ListArg = "sim", delegate: ListArg = None,
          threads: int | str | Sequence[int] = 1, *, iterations: int = 50, repeats: int = 3,
          warmup: int = 10, min_time: float = 0.0, profile_ops: bool = False,
          inputs: str | Path | None = None, energy: bool = False, energy_on_usb: bool = False,
          numerics: bool = False, timeout: float = 600.0, sustained: str | float | None = None,
          window: float | None = None, throttle: str | float = "10%",
          tags: Iterable[str] = (),
          results: str | Path | None = None, cluster: str | None = None,
          retry_timeout: float = 120.0, reporter: Reporter | None = None) -> Record:
    """Benchmark models (files or variants folders) on devices and store every measurement.

    ``device``: ids (see ``quantlab devices``), ``"all"``, or ``None`` for the attached
    phones else the simulator. ``delegate``/``threads``: one or several (each combination
    is a job). ``results``: the store (folder or ``postgresql://`` URL; default
    ``$QUANTLAB_RESULTS`` or ``./results``). Returns the stored run, the same record as
    ``quantlab bench --json``: ``run_id``, ``status`` and ``results``, each with
    ``status``, ``latency_ms`` (``statistic``, ``value``, ``method``, ``ci95``, …),
    ``ops``, ``warnings``. A job a device cannot run is in ``results`` as ``skipped``
    with the reason in ``error``; a job that fails is ``failed`` with its error (no
    exception). Raises
    :class:`~quantlab.harness.errors.UserError` for a bad request,
    :class:`~quantlab.session.RunInterrupted` (a ``KeyboardInterrupt``) after a Ctrl-C
    (the run is then stored ``interrupted``) and
    :class:`~quantlab.harness.errors.RunIncomplete` when jobs were left unfinished (a store that
    could not write; the run is stored ``incomplete`` and ``quantlab bench --resume``
    finishes it). Ctrl-C ends the processes quantlab started, never the caller's own.
    """
    from quantlab._records import Record
    from quantlab.harness.retry import RetryPolicy
    from quantlab.harness.store import check_tags
    from quantlab.session import Session

    if isinstance(models, (str, Path)):
        models = [models]
    if not models:
        raise UserError("no models given", hint="quantlab.bench(['model.tflite'])")
    settings = measure_settings(warmup=warmup, iterations=iterations, min_time=min_time,
                                repeats=repeats, profile_ops=profile_ops, inputs=inputs,
                                energy=energy, energy_on_usb=energy_on_usb, numerics=numerics,
                                timeout=timeout, sustained=sustained, window=window,
                                throttle=throttle)
    checked_tags = check_tags(list(tags))
    with Session.open(results, cluster=cluster, retry=RetryPolicy(wait_s=retry_timeout),
                      reporter=reporter) as session:
        the_plan, _, chosen = make_plan(models, device, delegate, threads, settings,
                                        fleet=session.fleet)
        run_id = session.start(the_plan, chosen, settings, checked_tags)
        data = session.finish(run_id, session.dispatch(run_id, the_plan.jobs))
        session.check(data)
        return Record(data)
