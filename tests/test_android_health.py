"""Reading phone facts: getprop, dumpsys battery/thermalservice, Qualcomm detection."""

from __future__ import annotations

from fakes.adbd import load_profile

from quantlab.android_runner.device_props import (
    is_qualcomm,
    parse_battery,
    parse_getprop,
    parse_thermal,
)


def test_getprop_lines() -> None:
    text = "[ro.product.model]: [Pixel 5]\n[ro.build.version.sdk]: [33]\n[empty]: []\n"
    assert parse_getprop(text) == {"ro.product.model": "Pixel 5", "ro.build.version.sdk": "33",
                                   "empty": ""}


def test_battery_and_thermal_from_profiles() -> None:
    pixel = load_profile("pixel5_snapdragon")["dumpsys"]
    battery = parse_battery(pixel["battery"])
    assert battery == {"battery_pct": 87, "battery_temp_c": 29.1, "battery_mv": 4312,
                       "powered_by": ["USB"], "usb_powered": True, "charging_status": "charging"}
    thermal = parse_thermal(pixel["thermalservice"])
    assert thermal["thermal_status"] == 0 and thermal["thermal_status_name"] == "none"
    # the live HAL readings win over the cached ones
    assert thermal["temperatures_c"] == {"cpu": 31.5, "gpu": 33.0, "battery": 29.1,
                                         "skin": 30.4}
    exynos = parse_thermal(load_profile("galaxy_s21_exynos")["dumpsys"]["thermalservice"])
    assert exynos["thermal_status_name"] == "light" and exynos["temperatures_c"]["cpu"] == 38.5


def test_qualcomm_detection() -> None:
    assert is_qualcomm({"ro.soc.manufacturer": "QTI", "ro.soc.model": "SM8550"})
    assert not is_qualcomm({"ro.soc.manufacturer": "Samsung", "ro.board.platform": "exynos2100"})
    assert not is_qualcomm({"ro.soc.manufacturer": "Mediatek", "ro.board.platform": "mt6983"})
    # Android 11 and older have no ro.soc.*: the board platform tells
    assert is_qualcomm({"ro.board.platform": "kona"})
    assert is_qualcomm({"ro.board.platform": "msm8998"})
    assert not is_qualcomm({"ro.board.platform": "gs101"})  # Google Tensor
