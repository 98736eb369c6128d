"""CPU package energy from Linux powercap RAPL counters, idle baseline subtracted.

Read by the runner's ``measure`` mode (:mod:`.measure`) around its timed loop, on this host or
on a gateway (the runner package is shipped there whole; stdlib only).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

RAPL_ROOT_ENV = "QUANTLAB_RAPL_ROOT"
DEFAULT_RAPL_ROOT = "/sys/class/powercap"
RAPL_IDLE_S = 0.5
"""Seconds of idle package power measured just before the load (the baseline subtracted)."""
RAPL_LABEL = ("CPU package energy (RAPL, whole host), idle baseline measured just before the "
              "load subtracted; other processes' activity during the load still counts")



def _rapl_domains(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("intel-rapl:*") if re.fullmatch(r"intel-rapl:\d+", p.name))


class Rapl:
    """CPU package energy counters (Linux powercap RAPL), summed over packages."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.domains: list[Path] = []
        self.reason: str | None = None
        if not root.exists():
            self.reason = f"RAPL not readable: {root} does not exist"
            return
        domains = _rapl_domains(root)
        if not domains:
            self.reason = f"RAPL not readable: no intel-rapl:N package domain under {root}"
            return
        try:
            for d in domains:
                int((d / "energy_uj").read_text())
        except (OSError, ValueError) as exc:
            self.reason = f"RAPL not readable: {exc}"
            return
        self.domains = domains

    def read(self) -> list[int]:
        return [int((d / "energy_uj").read_text()) for d in self.domains]

    def delta_uj(self, before: list[int], after: list[int]) -> float:
        total = 0.0
        for d, b, a in zip(self.domains, before, after, strict=True):
            if a < b:  # counter wrapped around
                try:
                    span = int((d / "max_energy_range_uj").read_text())
                except (OSError, ValueError):
                    span = 0
                a += span
            total += a - b
        return total


def rapl_energy(idle_uj: float, idle_s: float, load_uj: float, load_s: float,
                samples: int) -> tuple[dict[str, Any] | None, str | None]:
    """Energy per inference above the idle baseline, or None and the reason.

    The package counter covers the whole host: its idle power (measured over ``idle_s``
    just before the load) is subtracted over the load's duration, so the figure is what
    the inferences added, and ``baseline_mw`` records what was taken off.
    """
    if idle_s <= 0 or load_s <= 0 or samples <= 0:
        return None, "RAPL: no idle window or no load to measure"
    baseline_mw = idle_uj / idle_s / 1000.0  # µJ/s = µW → mW
    load_mw = load_uj / load_s / 1000.0
    net_uj = load_uj - idle_uj / idle_s * load_s
    if net_uj <= 0:
        return None, (f"RAPL: package power during inference ({load_mw:.0f} mW) was not above "
                      f"the idle baseline ({baseline_mw:.0f} mW) measured just before; the "
                      "counter is too coarse for this model, or the host was busier while idle")
    return {
        "method": "rapl",
        "mj_per_inference": net_uj / 1000 / samples,
        "baseline_mw": baseline_mw,
        "samples": samples,
        "label": RAPL_LABEL,
        "detail": {"load_mw": load_mw, "idle_s": idle_s, "load_s": load_s,
                   "total_uj": load_uj, "idle_uj": idle_uj},
    }, None
