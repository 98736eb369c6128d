"""Keep benchmark_model binaries per ABI in a local cache, and push them only when needed.

Cache layout (under :func:`quantlab.harness.cache.cache_dir`: ``$QUANTLAB_CACHE`` or
``~/.cache/quantlab``)::

    android/<abi>/benchmark_model          the binary
    android/<abi>/manifest.json            {"sha256", "size", "source", "libs": {name: sha256}}
    android/<abi>/lib/*.so                 optional delegate libraries (Hexagon, QNN)

On the device everything lives under ``/data/local/tmp/quantlab/``; a file is pushed
only when the device's copy differs (``sha256sum`` on the device, else size plus a
``.sha256`` marker written next to it).
"""

from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from quantlab.harness.cache import cache_dir
from quantlab.harness.errors import UserError
from quantlab.harness.models import file_sha256

ABIS = ("arm64-v8a", "armeabi-v7a", "x86_64", "x86")
_ELF_MACHINE = {"arm64-v8a": 183, "armeabi-v7a": 40, "x86_64": 62, "x86": 3}
DOCS_HINT = ("get benchmark_model for your phone's ABI (the TensorFlow nightly "
             "android_aarch64_benchmark_model, or build it with bazel), then run "
             "`quantlab android provision --binary PATH --abi ABI`; see docs/devices.md")


RUNNERS = ("benchmark_model", "benchmark_litert_model", "executor_runner")
"""The Android runners quantlab provisions; benchmark_litert_model (LiteRT's CompiledModel
tool, delegates litert-cpu/-gpu/-npu) is cached in ``android/<abi>/litert/``, ExecuTorch's
executor_runner (``.pte`` files, et-xnnpack) in ``android/<abi>/executorch/``."""

LITERT_HINT = ("build LiteRT's benchmark_litert_model for your phone's ABI (bazel, "
               "//litert/tools:benchmark_model in google-ai-edge/LiteRT) or take it from a "
               "LiteRT release, then run `quantlab android provision --runner "
               "benchmark_litert_model --binary PATH --abi ABI [--delegate-libs DIR]` (DIR: "
               "the GPU accelerator / vendor dispatch .so files); see docs/devices.md")

EXECUTORCH_HINT = ("build ExecuTorch's executor_runner for your phone's ABI with XNNPACK and "
                   "ETDump (docs/devices.md, \"ExecuTorch on a phone\"), then run `quantlab "
                   "android provision --executorch-runner PATH --abi ABI`")


class RunnerMissing(UserError):
    """No benchmark_model provisioned for a device's ABI."""


@dataclass(frozen=True)
class RunnerBinary:
    """A provisioned benchmark_model for one ABI, with its optional delegate libraries."""

    abi: str
    path: Path
    sha256: str
    size: int
    libs: dict[str, str]  # library file name → sha256
    name: str = "benchmark_model"  # which runner (RUNNERS)
    version: str | None = None  # what the user said it was built from (executor_runner)

    @property
    def lib_dir(self) -> Path:
        """Folder of the delegate libraries in the cache."""
        return self.path.parent / "lib"


def _abi_dir(abi: str, runner: str = "benchmark_model") -> Path:
    base = cache_dir() / "android" / abi
    sub = {"benchmark_litert_model": "litert", "executor_runner": "executorch"}.get(runner)
    return base / sub if sub else base


def check_elf(binary: Path, abi: str, option: str = "--binary") -> None:
    """Refuse a file that is not an ELF executable for ``abi`` (``option``: the flag it came
    from, named in the error)."""
    try:
        head = binary.read_bytes()[:20]
    except OSError as exc:
        raise UserError(f"{option} {binary}: cannot read it ({exc.strerror})") from None
    if head[:4] != b"\x7fELF":
        raise UserError(f"{option} {binary}: not an ELF executable",
                        hint="give the runner binary built for Android")
    machine = int.from_bytes(head[18:20], "little")
    if machine != _ELF_MACHINE[abi]:
        found = next((a for a, m in _ELF_MACHINE.items() if m == machine), f"machine {machine}")
        raise UserError(f"{option} {binary}: built for {found}, not {abi}",
                        hint=f"pass --abi {found} or the {abi} build")


def provision_binary(binary: Path, abi: str = "arm64-v8a",
                     delegate_libs: Path | None = None,
                     runner: str = "benchmark_model", version: str | None = None
                     ) -> RunnerBinary:
    """Copy ``binary`` (and ``*.so`` from ``delegate_libs``) into the cache for ``abi``
    as ``runner`` (one of :data:`RUNNERS`); ``version``: what it was built from, recorded."""
    if runner not in RUNNERS:
        raise UserError(f"--runner {runner}: unknown runner", hint=f"one of {', '.join(RUNNERS)}")
    if abi not in ABIS:
        raise UserError(f"--abi {abi}: unknown ABI", hint=f"one of {', '.join(ABIS)}")
    option = "--executorch-runner" if runner == "executor_runner" else "--binary"
    if not binary.is_file():
        raise UserError(f"{option} {binary}: no such file",
                        hint=EXECUTORCH_HINT if runner == "executor_runner" else DOCS_HINT)
    check_elf(binary, abi, option)
    target = _abi_dir(abi, runner)
    target.mkdir(parents=True, exist_ok=True)
    dest = target / runner
    shutil.copyfile(binary, dest)
    dest.chmod(0o755)
    libs: dict[str, str] = {}
    if delegate_libs is not None:
        if not delegate_libs.is_dir():
            raise UserError(f"--delegate-libs {delegate_libs}: not a folder",
                            hint="give the folder holding libhexagon_*.so / libQnn*.so")
        lib_dir = target / "lib"
        lib_dir.mkdir(exist_ok=True)
        for so in sorted(delegate_libs.glob("*.so")):
            shutil.copyfile(so, lib_dir / so.name)
            libs[so.name] = file_sha256(so)
        if not libs:
            raise UserError(f"--delegate-libs {delegate_libs}: no .so files in it")
    else:
        old = cached_binary(abi, runner)
        libs = old.libs if old else {}
    sha, size = file_sha256(dest), dest.stat().st_size
    manifest = {"sha256": sha, "size": size, "source": str(binary.resolve()), "libs": libs,
                "version": version}
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return RunnerBinary(abi, dest, sha, size, libs, runner, version)


def cached_binary(abi: str, runner: str = "benchmark_model") -> RunnerBinary | None:
    """The provisioned ``runner`` for ``abi``, or None."""
    target = _abi_dir(abi, runner)
    manifest = target / "manifest.json"
    binary = target / runner
    if not (manifest.is_file() and binary.is_file()):
        return None
    try:
        data = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return RunnerBinary(abi, binary, str(data["sha256"]), int(data["size"]),
                        dict(data.get("libs", {})), runner, data.get("version"))


def provisioned_abis() -> list[str]:
    """ABIs with a runner in the cache."""
    return [abi for abi in ABIS if cached_binary(abi)]


def require_binary(abi: str | None, runner: str = "benchmark_model") -> RunnerBinary:
    """The runner for ``abi``, or a :class:`RunnerMissing` saying how to get one."""
    found = cached_binary(abi, runner) if abi else None
    if found is None:
        have = ", ".join(a for a in ABIS if cached_binary(a, runner)) or "none"
        raise RunnerMissing(f"no {runner} provisioned for ABI {abi or 'unknown'} "
                            f"(provisioned: {have})",
                            hint={"benchmark_litert_model": LITERT_HINT,
                                  "executor_runner": EXECUTORCH_HINT}.get(runner, DOCS_HINT))
    return found


class ShellDevice(Protocol):
    """What pushing needs from an adbutils device."""

    def shell2(self, cmdargs: str, timeout: float | None = ..., encoding: str | None = ...,
               rstrip: bool = ..., v2: bool = ...) -> Any: ...

    @property
    def sync(self) -> Any: ...


def remote_sha256(device: ShellDevice, remote: str) -> str | None:
    """sha256 of a device file (``sha256sum``, else the ``.sha256`` marker when sizes agree)."""
    res = device.shell2(f"sha256sum {shlex.quote(remote)}", timeout=60, v2=True)
    if res.returncode == 0 and res.stdout.strip():
        return str(res.stdout.split()[0])
    return None


def ensure_file(device: ShellDevice, local: Path, remote: str, sha256: str,
                mode: int = 0o644) -> bool:
    """Push ``local`` to ``remote`` unless the device already has the same bytes.

    Returns True when it pushed. Devices without ``sha256sum`` fall back to size plus
    a ``REMOTE.sha256`` marker that quantlab writes after each push. Every device path
    is shell-quoted: a file named with a space or ``$(…)`` is pushed and used literally.
    """
    q_remote, q_marker = shlex.quote(remote), shlex.quote(f"{remote}.sha256")
    current = remote_sha256(device, remote)
    if current is None:
        marker = device.shell2(f"cat {q_marker}", timeout=30, v2=True)
        try:
            size = device.sync.stat(remote).size
        except Exception:
            size = -1
        if marker.returncode == 0 and marker.stdout.strip() == sha256 \
                and size == local.stat().st_size:
            return False
    elif current == sha256:
        return False
    parent = remote.rsplit("/", 1)[0]
    device.shell2(f"mkdir -p {shlex.quote(parent)}", timeout=30, v2=True)
    device.sync.push(str(local), remote, mode=mode)
    device.shell2(f"chmod {mode:o} {q_remote} && echo {shlex.quote(sha256)} > {q_marker}",
                  timeout=30, v2=True)
    return True
