"""NPU ahead-of-time compilation of a .tflite variant for one SoC (``quantlab compile``).

Built on ai-edge-litert's AOT tooling (``ai_edge_litert.aot.aot_compile`` with the
compiler plugin of the SoC's vendor, shipped in the wheel) plus the vendor's SDK, a
separate wheel pinned to the same LiteRT version (``ai-edge-litert-sdk-qualcomm``,
``-mediatek``). The compiled model is written beside the variant as
``npu/<SOC>/<variant>.tflite`` with a ``compiled.json`` record; ``litert-npu`` jobs on
Android pick it by the phone's SoC (:func:`compiled_model_for`).

The compiler runs in a worker process (``python -m harness.npu_compile``): a vendor
compiler that crashes fails the command, never the controller.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from harness.errors import UserError

VENDORS: dict[str, tuple[str, str, str]] = {
    "SM": ("qualcomm", "ai-edge-litert-sdk-qualcomm", "ai_edge_litert_sdk_qualcomm"),
    "SA": ("qualcomm", "ai-edge-litert-sdk-qualcomm", "ai_edge_litert_sdk_qualcomm"),
    "MT": ("mediatek", "ai-edge-litert-sdk-mediatek", "ai_edge_litert_sdk_mediatek"),
}
"""SoC model prefix → (AOT vendor module, SDK wheel, SDK import name)."""


def compiled_path(variant: str | Path, soc: str) -> Path:
    """Where the model compiled for ``soc`` lies: ``npu/<SOC>/<name>`` beside the variant."""
    v = Path(variant)
    return v.resolve().parent / "npu" / soc.upper() / v.name


def compiled_model_for(variant: str | Path, soc: str | None) -> Path | None:
    """The model compiled for ``soc`` from this variant, when one was made."""
    if not soc:
        return None
    path = compiled_path(variant, soc)
    return path if path.is_file() else None


def vendor_for(soc: str) -> tuple[str, str, str]:
    """The vendor backend, SDK wheel and import name for an SoC model, or a UserError."""
    soc = soc.upper()
    for prefix, vendor in VENDORS.items():
        if soc.startswith(prefix):
            return vendor
    raise UserError(f"--target {soc}: no NPU compiler known for this SoC",
                    hint="Qualcomm SM…/SA… (e.g. SM8650) or MediaTek MT… (e.g. MT6989)")


def sdk_missing_reason(soc: str) -> str | None:
    """Why the vendor SDK for ``soc`` cannot be used here, or None when it is installed."""
    _, wheel, module = vendor_for(soc)
    try:
        have = version(wheel)
    except PackageNotFoundError:
        try:
            litert = version("ai-edge-litert")
        except PackageNotFoundError:
            litert = "<ai-edge-litert version>"
        return (f"the vendor SDK {wheel} is not installed (pip install {wheel}=={litert}; "
                "it must match ai-edge-litert's version)")
    del have
    import importlib
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return f"{wheel} is installed but its module {module} does not import"
    sdk = importlib.import_module(module)
    libs = getattr(sdk, "path_to_sdk_libs", lambda: None)()
    if libs is None:
        return (f"{wheel} is installed without its SDK files: the package fetches the vendor "
                "SDK when it is built, and that fetch did not happen here (no network)")
    return None


def compile_for_soc(variant: str, target: str, out: str | None = None) -> dict[str, Any]:
    """Compile ``variant`` for SoC ``target``; returns what was written. UserError when the
    file, the SoC or the vendor SDK is not usable, with the reason."""
    src = Path(variant)
    if not src.is_file() or src.suffix != ".tflite":
        raise UserError(f"{variant}: not a .tflite file", hint="compile a .tflite variant")
    soc = target.upper()
    vendor, wheel, _ = vendor_for(soc)
    reason = sdk_missing_reason(soc)
    if reason:
        raise UserError(f"cannot compile for {soc}: {reason}",
                        hint=f"install {wheel} where the vendor publishes it for this OS")
    dest = Path(out) / src.name if out else compiled_path(src, soc)
    dest.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "harness.npu_compile", str(src.resolve()),
                           soc, vendor, str(dest)], capture_output=True, text=True, env=env,
                          timeout=1800, check=False)
    if proc.returncode != 0 or not dest.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"NPU compilation for {soc} failed: {tail[0]}",
                        hint="run with --verbose; the vendor compiler's log is in its output")
    record = {"source": str(src.resolve()), "target": soc, "backend": vendor,
              "path": str(dest), "size_bytes": dest.stat().st_size,
              "notes": [line for line in proc.stdout.strip().splitlines() if line][-5:]}
    (dest.parent / "compiled.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _worker(src: str, soc: str, vendor: str, dest: str) -> int:
    """The compiling process: ai_edge_litert.aot for one target, one model out."""
    import importlib

    from ai_edge_litert.aot import aot_compile

    target_mod = importlib.import_module(f"ai_edge_litert.aot.vendors.{vendor}.target")
    target = target_mod.Target(target_mod.SocModel(soc))
    result = aot_compile.aot_compile(src, output_dir=str(Path(dest).parent / "_aot"),
                                     target=target, keep_going=False)
    if not result.models:
        failed = "; ".join(str(r) for _, r in result.failed_backends) or "no model produced"
        print(failed, file=sys.stderr)
        return 1
    result.models[0].save(Path(dest), export_only=True)
    print(result.compilation_report())
    return 0


if __name__ == "__main__":
    sys.exit(_worker(*sys.argv[1:5]))
