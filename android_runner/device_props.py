"""A phone's properties, battery and thermal state, read from ``getprop`` and ``dumpsys``.

Plain text in, plain dicts out: the adb agent (:mod:`quantlab.agents.android.agent`) runs the
commands, these functions read their output (every layout seen on Android 8–15).
"""

from __future__ import annotations

import re
from typing import Any

QUALCOMM_PLATFORMS = re.compile(
    r"^(msm|sdm|sm\d|qcs|apq|lito|kona|lahaina|taro|kalama|pineapple|sun|trinket|bengal|holi|"
    r"atoll|sdmmagpie|msmnile|parrot|crow|blair|khaje|monaco|cliffs|volcano)", re.I)
THERMAL_NAMES = {0: "none", 1: "light", 2: "moderate", 3: "severe", 4: "critical",
                 5: "emergency", 6: "shutdown"}
HAL_TYPES = {0: "cpu", 1: "gpu", 2: "battery", 3: "skin"}


def parse_getprop(text: str) -> dict[str, str]:
    """``getprop`` output (``[key]: [value]`` lines) as a dict."""
    return dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, re.M))


def parse_battery(text: str) -> dict[str, Any]:
    """Level, temperature (°C), voltage (mV), power source and status from ``dumpsys battery``."""
    fields = dict(re.findall(r"^\s*([A-Za-z][\w ]*?): (.*)$", text, re.M))
    out: dict[str, Any] = {}
    if "level" in fields:
        out["battery_pct"] = int(fields["level"])
    if "temperature" in fields:
        out["battery_temp_c"] = int(fields["temperature"]) / 10.0
    if "voltage" in fields:
        out["battery_mv"] = int(fields["voltage"])
    powered = [src for src in ("AC", "USB", "Wireless")
               if fields.get(f"{src} powered", "false").strip() == "true"]
    out["powered_by"] = powered
    out["usb_powered"] = "USB" in powered
    status = {"1": "unknown", "2": "charging", "3": "discharging", "4": "not charging",
              "5": "full"}
    if "status" in fields:
        out["charging_status"] = status.get(fields["status"].strip(), fields["status"].strip())
    return out


def parse_thermal(text: str) -> dict[str, Any]:
    """Thermal status and HAL temperatures by type from ``dumpsys thermalservice``."""
    out: dict[str, Any] = {}
    m = re.search(r"Thermal Status: (\d)", text)
    if m:
        out["thermal_status"] = int(m.group(1))
        out["thermal_status_name"] = THERMAL_NAMES.get(int(m.group(1)), "unknown")
    section = text.split("Current temperatures from HAL:", 1)
    body = section[1] if len(section) == 2 else text
    temps: dict[str, float] = {}
    for value, typ, name in re.findall(
            r"Temperature\{mValue=([-\d.]+), mType=(-?\d+), mName=([^,]+),", body):
        kind = HAL_TYPES.get(int(typ))
        if kind:
            temps[kind] = max(temps.get(kind, -273.0), float(value))
            temps.setdefault(f"{kind}:{name}", float(value))
    out["temperatures_c"] = {k: v for k, v in temps.items() if ":" not in k}
    return out


def is_qualcomm(props: dict[str, str]) -> bool:
    """Whether the SoC is a Qualcomm Snapdragon (Hexagon DSP / QNN HTP present)."""
    maker = (props.get("ro.soc.manufacturer") or "").lower()
    if maker:
        return maker in ("qti", "qualcomm", "qualcomm technologies, inc")
    platform = props.get("ro.board.platform", "")
    return bool(QUALCOMM_PLATFORMS.match(platform)) or props.get("ro.hardware", "") == "qcom"
