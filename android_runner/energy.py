"""Energy per inference on Android from an on-device sampler (``sampler.sh``).

The sampler prints timestamped battery-gauge readings (``current_now``,
``voltage_now``) and, where present, Pixel on-device power-monitor rails
(``iio:device*/energy_value``, cumulative µW·s per rail). quantlab samples an idle
baseline, then a sustained inference loop, and reports

    mJ per inference = (load power − baseline power) × mean latency

with the method (``odpm-rails`` or ``battery-gauge``), its comparability class
(``device-rails`` or ``battery-gauge``, see :func:`quantlab.harness.records.energy_class`), the
baseline and the sample count. Only readings inside the runner's timed loop count: the
sampler notes the size of the runner's output file at each reading, and the loop lies
between the runner's measured-run line and its results line
(:func:`timed_loop_span`); process start, delegate init and warm-up are left out, and the
window is recorded with the figure. Units and sign of the gauge vary by vendor: they are
calibrated per device from the magnitudes and the charging status. Unreadable sensors
give no figure, with the sampler's own error. A battery-gauge reading taken while the
phone was on USB/AC power (it reads charge current) gives no figure, with the reason,
unless the user asked to keep it (``bench --energy-on-usb``): then it is labelled so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, median

from quantlab.harness.records import Energy, EnergySample

SAMPLER = Path(__file__).with_name("sampler.sh")
"""The shell-loop sampler pushed to the device next to the runner."""

_ODPM = re.compile(r"CH(\d+)\(T=(\d+)\)\[([^\]]+)\],\s*(\d+)")

MEASURED_RUN_LINE = "Running benchmark for at least"
"""benchmark_model's (and benchmark_litert_model's) line before each phase of runs; the
last one printed starts the measured runs (the one before it, the warm-up)."""


def timed_loop_span(output: bytes) -> tuple[int, int] | None:
    """Byte offsets in a runner's output between which its timed loop ran: from the end of
    its last measured-run line to the start of the results line after it (``count=…``);
    None when the output holds no such pair (the loop cannot be told from start-up)."""
    at = output.rfind(MEASURED_RUN_LINE.encode())
    start = output.find(b"\n", at) + 1 if at >= 0 else 0
    results = output.find(b"count=", start) if start else -1
    if results < 0:
        return None
    return start, output.rfind(b"\n", start, results) + 1 or start


@dataclass(frozen=True)
class LoopWindow:
    """Which readings of a sampler fell inside the runner's timed loop (device uptime)."""

    start_s: float | None  # the first reading inside the loop
    end_s: float | None  # the last one
    readings: int  # readings inside the loop
    before: int  # left out: process start, delegate init, warm-up
    after: int  # left out: after the loop ended

    def as_detail(self) -> dict[str, object]:
        """The window as recorded with the figure."""
        return {"clock": "device uptime (s)", "start_s": self.start_s, "end_s": self.end_s,
                "readings": self.readings, "left_out_before": self.before,
                "left_out_after": self.after,
                "bounds": f"after the runner's '{MEASURED_RUN_LINE} …' line, before its "
                          "results line"}


@dataclass(frozen=True)
class SamplerOutput:
    """Parsed sampler lines of one phase."""

    samples: tuple[EnergySample, ...]
    status: str | None  # battery status the sampler saw (Charging, Discharging, Full …)
    error: str | None = None  # the sampler failed: its exit code and stderr, or the exception
    notes: tuple[str, ...] = ()  # what the sampler said on stderr (sensors it could not read)
    window: LoopWindow | None = None  # parsed with a loop span: the readings kept


def sampler_failed(phase: str, exc: BaseException) -> SamplerOutput:
    """The output of a sampler that never ran to the end (its thread raised ``exc``)."""
    return SamplerOutput((), None, error=f"the {phase}-phase sampler died: "
                         f"{type(exc).__name__}: {exc}")


def parse_sampler(text: str, stderr: str = "", returncode: int | None = 0,
                  phase: str | None = None, span: tuple[int, int] | None = None
                  ) -> SamplerOutput:
    """Read sampler output into raw samples (values as the sensors print them).

    ``stderr`` and ``returncode`` are the sampler's own: a non-zero exit (or none, when
    ``returncode`` is None: it never finished) is kept as ``error`` with what the sampler
    printed on stderr, so the reason for a missing figure is the phone's, not a guess.
    With ``span`` (:func:`timed_loop_span`) only the readings whose ``log.bytes`` line
    shows the runner's output inside it are kept; ``window`` says which and how many.
    """
    samples: list[EnergySample] = []
    tick: list[EnergySample] = []  # the readings of one tick, until its log.bytes line
    kept: list[float] = []
    before = after = 0
    status = None
    t0: float | None = None
    for line in text.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 4:
            continue
        try:
            t = float(parts[0])
        except ValueError:
            continue
        t0 = t if t0 is None else t0
        phase, channel, value = parts[1], parts[2], parts[3].strip()
        if channel == "battery.status":
            status = value
            continue
        if channel == "log.bytes" and span is not None:
            sizes = [int(x) for x in value.split() if x.isdigit()]
            if len(sizes) == 2 and span[0] <= sizes[0] and sizes[1] <= span[1]:
                samples.extend(tick)
                kept.append(t)
            elif sizes and sizes[0] < span[0]:
                before += 1
            else:
                after += 1
            tick = []
            continue
        if channel == "odpm":
            m = _ODPM.search(value)
            if m:
                # the rail's own timestamp (ms) is more precise than the sampler's
                tick.append(EnergySample(phase, int(m.group(2)) / 1000.0,
                                         f"odpm.{m.group(3)}", float(m.group(4)), "uWs"))
            continue
        try:
            number = float(value)
        except ValueError:
            continue
        tick.append(EnergySample(phase, t - t0, channel, number, "raw"))
    if span is None:
        samples.extend(tick)
    window = None if span is None else LoopWindow(
        kept[0] if kept else None, kept[-1] if kept else None, len(kept), before, after)
    notes = tuple(line.strip() for line in stderr.splitlines() if line.strip())
    error = None
    where = f"the {phase}-phase sampler" if phase else "the sampler"
    if returncode is None:
        error = f"{where} did not finish"
    elif returncode != 0:
        error = f"{where} exited with code {returncode}"
    if error is not None:
        error += ": " + ("; ".join(notes[-3:]) if notes else "no message on stderr")
    return SamplerOutput(tuple(samples), status, error, notes, window)


def current_scale(values: list[float]) -> float:
    """Factor that turns the gauge's current into µA (some vendors print mA)."""
    typical = median(abs(v) for v in values) if values else 0.0
    return 1000.0 if 0 < typical < 20_000 else 1.0


def voltage_scale(values: list[float]) -> float:
    """Factor that turns the gauge's voltage into µV (µV, mV or V in the wild)."""
    typical = median(abs(v) for v in values) if values else 0.0
    if typical < 100:
        return 1e6
    if typical < 100_000:
        return 1e3
    return 1.0


def discharge_sign(values: list[float], status: str | None) -> float:
    """+1 when the gauge already reports discharge as positive, else −1.

    Android's convention is positive = into the battery; some vendors flip it. A
    discharging phone must draw current out of the battery, a charging one must take
    current in: the sign of the readings against the status tells which convention
    the device uses.
    """
    typical = median(values) if values else 0.0
    charging = (status or "").lower() in ("charging", "full")
    if charging:
        return -1.0 if typical > 0 else 1.0
    return 1.0 if typical > 0 else -1.0


def _gauge_mw(samples: list[EnergySample], status: str | None, calib: tuple[float, float, float]
              ) -> tuple[float | None, int]:
    cur = [s for s in samples if s.channel == "battery.current"]
    vol = [s for s in samples if s.channel == "battery.voltage"]
    if not cur or not vol:
        return None, 0
    c_scale, v_scale, sign = calib
    v_uv = mean(s.value for s in vol) * v_scale
    i_ua = mean(s.value for s in cur) * c_scale * sign
    return i_ua * v_uv / 1e9, len(cur)  # µA·µV = 1e-12 W = 1e-9 mW


def _odpm_mw(samples: list[EnergySample]) -> tuple[float | None, int]:
    rails: dict[str, list[EnergySample]] = {}
    for s in samples:
        if s.channel.startswith("odpm."):
            rails.setdefault(s.channel, []).append(s)
    total = 0.0
    n = 0
    for series in rails.values():
        series.sort(key=lambda s: s.t_s)
        dt = series[-1].t_s - series[0].t_s
        if dt <= 0:
            return None, 0
        total += (series[-1].value - series[0].value) / dt / 1000.0  # µW·s/s = µW → mW
        n += len(series)
    return (total, n) if rails else (None, 0)


@dataclass(frozen=True)
class EnergyOutcome:
    """An energy figure or the reason there is none, plus warnings for the result."""

    energy: Energy | None
    samples: tuple[EnergySample, ...]
    reason: str | None
    warnings: tuple[str, ...] = ()


ON_POWER_HINT = ("unplug it and measure on battery (adb over Wi-Fi), use a phone with "
                 "power-monitor rails (Pixel 6 and later), or pass bench --energy-on-usb to keep "
                 "the figure, labelled as taken on USB power")


def on_power_reason(source: str) -> str:
    """Why a battery-gauge reading on external power gives no figure."""
    return (f"the phone was on {source} power: the gauge reads charge current, not the power "
            f"the model draws; {ON_POWER_HINT}")


def compute_energy(baseline: SamplerOutput, load: SamplerOutput, latency_ms: float | None,
                   usb_powered: bool, *, power_source: str | None = None,
                   keep_on_usb: bool = False) -> EnergyOutcome:
    """mJ per inference from an idle baseline and a sustained inference loop.

    ``usb_powered`` (or ``power_source``, e.g. ``"USB"``/``"AC"``, or a charging status
    seen by the sampler) marks a phone on external power: a battery-gauge figure is then
    null with the reason, unless ``keep_on_usb`` (``bench --energy-on-usb``) keeps it,
    labelled as taken on that power. Rails are read on the SoC side and stay valid.
    """
    samples = baseline.samples + load.samples
    warnings: list[str] = []
    for out in (baseline, load):
        if out.error:
            return EnergyOutcome(None, samples, f"energy sampler failed: {out.error}",
                                 tuple(warnings))
    source = power_source or ("USB" if usb_powered else None)
    if source is None and any((o.status or "").lower() == "charging" for o in (baseline, load)):
        source = "external"  # the sampler saw the battery charging
    if not latency_ms:
        return EnergyOutcome(None, samples, "no inference latency to divide by", tuple(warnings))
    if load.window is not None and load.window.readings < 2:
        w = load.window
        return EnergyOutcome(None, samples, f"the sampler took {w.readings} reading(s) inside "
                             f"the runner's timed loop ({w.before} before it, {w.after} after "
                             "it); at least 2 are needed: lengthen the loop (energy_load_s)",
                             tuple(warnings))
    base_odpm, n_b = _odpm_mw(list(baseline.samples))
    load_odpm, n_l = _odpm_mw(list(load.samples))
    if base_odpm is not None and load_odpm is not None:
        method, base_mw, load_mw, count = "odpm-rails", base_odpm, load_odpm, n_b + n_l
        label = "sum of on-device power-monitor rails, idle baseline subtracted"
        detail: dict[str, object] = {"power_source": source} if source else {}
    else:
        cur = [s.value for s in samples if s.channel == "battery.current"]
        vol = [s.value for s in samples if s.channel == "battery.voltage"]
        if not cur or not vol:
            said = "; ".join(dict.fromkeys(baseline.notes + load.notes))
            return EnergyOutcome(None, samples, "no readable battery current_now/voltage_now or "
                                 "power-monitor rails on this device"
                                 + (f" (the sampler said: {said})" if said else ""),
                                 tuple(warnings))
        if source is not None and not keep_on_usb:
            return EnergyOutcome(None, samples, on_power_reason(source), tuple(warnings))
        calib = (current_scale(cur), voltage_scale(vol),
                 discharge_sign([s.value for s in baseline.samples
                                 if s.channel == "battery.current"] or cur,
                                baseline.status))
        b, n_b = _gauge_mw(list(baseline.samples), baseline.status, calib)
        ld, n_l = _gauge_mw(list(load.samples), load.status, calib)
        if b is None or ld is None:
            return EnergyOutcome(None, samples, "the battery gauge gave no readings in one of "
                                 "the phases", tuple(warnings))
        method, base_mw, load_mw, count = "battery-gauge", b, ld, n_b + n_l
        label = "battery gauge (whole phone), idle baseline subtracted"
        detail = {"current_scale_to_uA": calib[0], "voltage_scale_to_uV": calib[1],
                  "discharge_sign": calib[2], "status": baseline.status}
        if source is not None:  # kept on the user's request (--energy-on-usb)
            label += (f"; taken on {source} power (kept by --energy-on-usb): the gauge "
                      "includes charge current")
            detail.update(on_external_power=True, power_source=source)
            warnings.append(f"energy: the phone was on {source} power; the battery-gauge figure "
                            "includes charge current (kept because --energy-on-usb was given)")
    delta = load_mw - base_mw
    if delta <= 0:
        return EnergyOutcome(None, samples, f"{method}: power during inference ({load_mw:.0f} "
                             f"mW) was not above the idle baseline ({base_mw:.0f} mW); the "
                             "sensor is too coarse for this model", tuple(warnings))
    if load.window is not None:
        detail["window"] = load.window.as_detail()
    energy = Energy(method=method, mj_per_inference=delta * latency_ms / 1000.0,
                    baseline_mw=base_mw, samples=count, label=label,
                    detail={**detail, "load_mw": load_mw, "latency_ms": latency_ms})
    return EnergyOutcome(energy, samples, None, tuple(warnings))
