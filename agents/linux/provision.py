"""Provisioning a gateway: the measuring worker's Python dependencies, checked or installed.

``quantlab gateway provision NAME [--install]`` (through
:meth:`quantlab.agents.linux.agent.SshAgent.provision`):
probe the gateway's Python, and with ``--install`` make a venv in its work folder and
pip-install what the worker needs, pinned as in quantlab's own metadata (``--wheels DIR``
for an offline gateway); ``--executorch`` adds the ``torch`` extra's pins (torch's CPU
build, ExecuTorch) for ``.pte`` jobs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quantlab.agents.linux.hosts import Gateway
from quantlab.agents.linux.results import missing_deps
from quantlab.agents.linux.session import DEFAULT_PYTHON, PythonMissing, Session

FALLBACK_REQUIREMENTS = ("numpy>=1.26", "ai-edge-litert==2.3.0")
FALLBACK_EXECUTORCH = ("torch==2.13.0", "executorch==1.5.1")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
"""Where torch's CPU build comes from (PyPI's Linux wheel is the CUDA build, several GB)."""


def worker_requirements() -> tuple[str, ...]:
    """What the worker needs on a gateway, as pinned in quantlab's own metadata."""
    try:
        from importlib.metadata import requires

        reqs = requires("quantlab") or []
    except Exception:
        return FALLBACK_REQUIREMENTS
    picked = []
    for want in ("numpy", "ai-edge-litert"):
        spec = next((r.split(";")[0].strip() for r in reqs
                     if re.match(rf"{re.escape(want)}\s*([<>=!~]|$)", r)
                     and "extra ==" not in r), None)
        picked.append(spec.replace(" ", "") if spec else
                      next(f for f in FALLBACK_REQUIREMENTS if f.startswith(want)))
    return tuple(picked)



def executorch_requirements() -> tuple[str, ...]:
    """What a ``.pte`` job needs on a gateway: the ``torch`` extra's pins (torch, executorch)."""
    try:
        from importlib.metadata import requires

        reqs = requires("quantlab") or []
    except Exception:
        return FALLBACK_EXECUTORCH
    picked = tuple(r.split(";")[0].replace(" ", "") for r in reqs
                   if re.search(r"extra\s*==\s*['\"]torch['\"]", r))
    return picked or FALLBACK_EXECUTORCH


async def provision_gateway(gw: Gateway, install: bool, wheels: Path | None,
                            index_url: str | None, progress: Callable[[str], None],
                            executorch: bool = False) -> dict[str, Any]:
    """Check (and with ``install`` pip-install into ``WORKDIR/venv``) the worker's Python
    dependencies on a gateway, with ``executorch`` also the torch extra's pins for ``.pte``
    jobs; returns what is present and what is missing."""
    requirements = worker_requirements()
    extra = executorch_requirements() if executorch else ()
    session = await Session.open(gw)
    notes: list[str] = []
    try:
        python = session.python
        try:
            facts: dict[str, Any] | None = await session.probe()
        except PythonMissing as exc:
            facts, python_error = None, exc.one_line()
        if install and (facts is None or _missing(facts, executorch)):
            facts, more = await _install(session, gw, facts, wheels, index_url,
                                         requirements, progress, extra)
            notes.extend(more)
            python = facts["python_path"] if facts else python
    finally:
        await session.close()
    if facts is None:
        return {"gateway": gw.name, "device": gw.device_id, "python": python,
                "ready": False, "missing": ["python>=3.10"], "deps": {},
                "requirements": list(requirements), "notes": [python_error, *notes]}
    missing = _missing(facts, executorch)
    if missing and not install:
        notes.append(f"install them with: quantlab gateway provision {gw.name} --install "
                     f"(pip into {session.venv_python.rsplit('/bin/', 1)[0]}; "
                     "--wheels DIR for an offline gateway)")
    if gw.python and gw.python != facts["python_path"]:
        notes.append(f"the hosts file sets python = {gw.python}; point it at "
                     f"{facts['python_path']} to use the venv")
    return {"gateway": gw.name, "device": gw.device_id, "python": facts["python_path"],
            "python_version": facts.get("python"), "arch": facts.get("arch"),
            "os": facts.get("os"), "ready": not missing, "missing": missing,
            "deps": facts.get("deps"), "executorch": facts.get("executorch"),
            "requirements": [*requirements, *extra], "notes": notes}


def _missing(facts: dict[str, Any], executorch: bool) -> list[str]:
    missing = missing_deps(facts)
    return [*missing, "executorch"] if executorch and not facts.get("executorch") else missing

async def _install(session: Session, gw: Gateway, facts: dict[str, Any] | None,
                   wheels: Path | None, index_url: str | None,
                   requirements: tuple[str, ...], progress: Callable[[str], None],
                   extra: tuple[str, ...] = ()) -> tuple[dict[str, Any] | None, list[str]]:
    notes: list[str] = []
    base = gw.python or DEFAULT_PYTHON
    venv_python = session.venv_python
    venv = venv_python.rsplit("/bin/", 1)[0]
    if not await session.sftp.exists(venv_python):
        base_facts = facts if facts and facts["python_path"] == base else None
        if base_facts is None:
            try:
                base_facts = await session.probe(base)
            except PythonMissing as exc:
                return None, [exc.one_line()]
        if not base_facts.get("venv_module"):
            return facts, [f"{base} has no venv/ensurepip module: install python3-venv "
                           "on the gateway (sudo apt install python3-venv)"]
        progress(f"creating {venv}")
        res = await session.run([base, "-m", "venv", venv], timeout=600)
        if res.exit_status != 0:
            return facts, [f"python -m venv failed: {_last_line(res)}"]
    pip = [venv_python, "-m", "pip", "install", "--disable-pip-version-check",
           "--no-input", "-q"]
    if wheels is not None:
        remote = f"{session.workdir}/wheels"
        await session.sftp.makedirs(remote, exist_ok=True)
        for whl in sorted(wheels.glob("*.whl")):
            progress(f"pushing {whl.name}")
            await session.sftp.put(str(whl), f"{remote}/{whl.name}")
        pip += ["--no-index", "--find-links", remote]
    if index_url:
        pip += ["--index-url", index_url]
    progress(f"pip install {' '.join(requirements)}")
    res = await session.run([*pip, *requirements], timeout=1800)
    if res.exit_status != 0:
        notes.append(f"pip install failed: {_last_line(res)}")
    elif extra:  # torch's CPU build, from its own index unless told where wheels are
        cpu = [] if wheels is not None or index_url else ["--extra-index-url", TORCH_CPU_INDEX]
        progress(f"pip install {' '.join(extra)} (about 1 GB installed)")
        res = await session.run([*pip, *cpu, *extra], timeout=3600)
        if res.exit_status != 0:
            notes.append(f"pip install {' '.join(extra)} failed: {_last_line(res)}")
    session.python = venv_python
    try:
        return await session.probe(venv_python), notes
    except PythonMissing as exc:
        return None, [*notes, exc.one_line()]


def _last_line(res: Any) -> str:
    text = f"{res.stdout or ''}\n{res.stderr or ''}"
    return next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "no output")
