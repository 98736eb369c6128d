"""Where and with what a run was measured: host, tool versions, the project's git sha."""

from __future__ import annotations

import platform
import shlex
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from quantlab.harness import __version__
from quantlab.harness.records import Run, Settings
from quantlab.harness.store import new_run_id, utcnow

TRACKED_PACKAGES = ("ai-edge-litert", "tensorflow-cpu", "tensorflow", "ai-edge-quantizer",
                    "coremltools", "adbutils", "pymobiledevice3", "ray", "numpy")


def tool_versions() -> dict[str, str]:
    """Versions of quantlab, Python and the installed runtimes (without importing them)."""
    versions = {"quantlab": __version__, "python": platform.python_version(),
                "platform": platform.platform()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_sha() -> str | None:
    """The git commit of the quantlab checkout, when it is one."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def command_line() -> str:
    """The command that started this process, as a shell would show it."""
    return "quantlab " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def new_run(settings: Settings, command: str | None = None) -> Run:
    """A fresh Run record for this host."""
    return Run(run_id=new_run_id(), created_at=utcnow(), host=socket.gethostname(),
               tool_versions=tool_versions(), git_sha=git_sha(),
               command=command if command is not None else command_line(), settings=settings)
