"""NPU ahead-of-time compilation of a .tflite variant for one SoC (``quantlab compile``).

Built on ai-edge-litert's AOT tooling (``ai_edge_litert.aot.aot_compile`` with the
compiler plugin of the SoC's vendor, shipped in the wheel) plus the vendor's SDK, a
separate wheel pinned to the same LiteRT version (``ai-edge-litert-sdk-qualcomm``,
``-mediatek``). The compiled model is written beside the variant as
``npu/<SOC>/<variant>.tflite`` (or into ``compile --out``) with a record of its own
(``<name>.compiled.json``: the source's sha256, the compiler's versions, its own sha256),
also listed in the cache by the source's sha256. ``litert-npu`` jobs on Android use it
only when that record matches the variant and this host's compiler
(:func:`find_compiled`); otherwise they are refused with the reason.

The compiler runs in a worker process (``python -m quantlab.agents.android.npu_compile``): a vendor
compiler that crashes fails the command, never the controller.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from quantlab.harness.atomic import write_text_atomically
from quantlab.harness.cache import cache_dir
from quantlab.harness.errors import UserError
from quantlab.harness.models import file_sha256

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


def record_path(compiled: str | Path) -> Path:
    """The record beside a compiled model: ``<name>.compiled.json``."""
    c = Path(compiled)
    return c.with_name(c.name + ".compiled.json")


def _index_path(source_sha256: str, soc: str) -> Path:
    """The cache's entry for the model compiled from a source for an SoC (``--out`` too)."""
    return cache_dir() / "npu" / f"{source_sha256}-{soc.upper()}.json"


def _installed(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def compiler_versions(soc: str) -> dict[str, str | None]:
    """The compiler this host uses for ``soc``: ai-edge-litert (the AOT tooling and the
    vendor plugin ship in it) and the vendor SDK wheel (None where not installed)."""
    _, wheel, _ = vendor_for(soc)
    return {"ai-edge-litert": _installed("ai-edge-litert"), wheel: _installed(wheel)}


def record_compiled(source: Path, compiled: Path, soc: str,
                    notes: list[str] | None = None) -> dict[str, Any]:
    """Record what ``compiled`` was made from (the compiler has just written it): beside it
    and in the cache index, so ``find_compiled`` finds it wherever ``--out`` put it."""
    soc = soc.upper()
    record = {"source": str(source.resolve()), "source_sha256": file_sha256(source),
              "target": soc, "backend": vendor_for(soc)[0], "compiler": compiler_versions(soc),
              "path": str(compiled.resolve()), "sha256": file_sha256(compiled),
              "size_bytes": compiled.stat().st_size, "notes": list(notes or [])}
    text = json.dumps(record, indent=2) + "\n"
    write_text_atomically(record_path(compiled), text)
    index = _index_path(str(record["source_sha256"]), soc)
    index.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(index, text)
    return record


@dataclass(frozen=True)
class CompiledModel:
    """The compiled model a ``litert-npu`` job may use, or why there is none."""

    path: Path | None
    record: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


def _versions(versions: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v or '(not installed)'}" for k, v in sorted(versions.items()))


def _mismatch(path: Path, source_sha256: str, soc: str) -> tuple[str | None, dict[str, Any]]:
    """Why the compiled model at ``path`` is not this variant's for ``soc`` on this host."""
    try:
        record: dict[str, Any] = json.loads(record_path(path).read_text())
    except FileNotFoundError:
        return ("no record of its source and compiler (not written by this quantlab's "
                "compile)"), {}
    except (OSError, ValueError) as exc:
        return f"its record {record_path(path).name} is unreadable ({exc})", {}
    made_from = str(record.get("source_sha256") or "?")
    if made_from != source_sha256:
        return (f"compiled from a different source (sha256 {made_from[:12]}…; this variant "
                f"is {source_sha256[:12]}…)"), record
    if str(record.get("target", "")).upper() != soc.upper():
        return f"compiled for {record.get('target')}, not {soc.upper()}", record
    here = compiler_versions(soc)
    if record.get("compiler") != here:
        return (f"compiled by {_versions(record.get('compiler') or {})}; this host's compiler "
                f"is {_versions(here)}"), record
    if file_sha256(path) != record.get("sha256"):
        return "the file changed after it was compiled (its sha256 differs from its record)", \
            record
    return None, record


def find_compiled(variant: str | Path, source_sha256: str, soc: str | None) -> CompiledModel:
    """The model compiled for ``soc`` from this variant (beside it, or wherever ``compile
    --out`` put it), used only when its record names the variant's sha256 and this host's
    compiler versions and its own sha256 still holds; else none, with the reason."""
    if not soc:
        return CompiledModel(None, reason="the phone's SoC is unknown")
    try:
        vendor_for(soc)
    except UserError as exc:
        return CompiledModel(None, reason=exc.message)
    candidates = [compiled_path(variant, soc)]
    try:
        listed = json.loads(_index_path(source_sha256, soc).read_text()).get("path")
    except (OSError, ValueError, AttributeError):
        listed = None
    if listed:
        candidates.append(Path(listed))
    problems = []
    for path in dict.fromkeys(candidates):
        if not path.is_file():
            if path != candidates[0]:
                problems.append(f"{path}: listed as compiled from this variant, but gone")
            continue
        why, record = _mismatch(path, source_sha256, soc)
        if why is None:
            return CompiledModel(path, record)
        problems.append(f"{path}: {why}")
    return CompiledModel(None, reason="; ".join(problems) or
                         f"no model compiled for SoC {soc.upper()}")


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
    record_path(dest).unlink(missing_ok=True)  # the old record no longer describes dest
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = str(Path(__file__).resolve().parents[2])  # the folder holding quantlab/
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", __spec__.name, str(src.resolve()), soc,
                           vendor, str(dest)], capture_output=True, text=True, env=env,
                          timeout=1800, check=False)
    if proc.returncode != 0 or not dest.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"NPU compilation for {soc} failed: {tail[0]}",
                        hint="run with --verbose; the vendor compiler's log is in its output")
    return record_compiled(src, dest, soc,
                           [line for line in proc.stdout.strip().splitlines() if line][-5:])


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
