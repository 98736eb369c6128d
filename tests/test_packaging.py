"""One installed name: the wheel holds the ``quantlab`` package and nothing else beside it
(harness/, agents/, android_runner/ and ios_runner/ stay at the top of the repository and are
linked into quantlab/), and no module of the tree imports them by their bare names."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("harness", "agents", "android_runner", "ios_runner")


def _modules() -> list[Path]:
    skip = {".venv", ".git", "results", "quantlab"}  # quantlab/<folder> are the links themselves
    return [p for p in ROOT.rglob("*.py")
            if not skip.intersection(p.relative_to(ROOT).parts[:1])
            and ".venv" not in p.parts]


def test_no_module_imports_a_folder_by_its_bare_name() -> None:
    """``import harness`` works only from a checkout: installed, only quantlab exists."""
    bare = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom)
                     and not node.level else [])
            bare += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names
                     if n.split(".")[0] in FOLDERS]
    assert bare == []


def test_the_folders_are_linked_into_the_package() -> None:
    for name in FOLDERS:
        link = ROOT / "quantlab" / name
        assert link.is_symlink() and link.resolve() == ROOT / name, name


@pytest.mark.slow
def test_the_wheel_installs_one_top_level_package(tmp_path: Path) -> None:
    # built from a copy: an in-tree build leaves build/ and *.egg-info in the checkout
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "results", "build", "dist", "*.egg-info", "tests", "__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
                            str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("quantlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"quantlab", wheel.name.split("-py3")[0]
                                                + ".dist-info"}
    for shipped in ("quantlab/harness/cli/main.py", "quantlab/agents/base.py",
                    "quantlab/android_runner/sampler.sh", "quantlab/ios_runner/codec.py",
                    "quantlab/harness/planfile.schema.json"):
        assert shipped in names, shipped

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    # -S: no site processing, so no editable install's finder (a .pth) answers for the
    # folders; the dependencies come from site-packages as a plain path behind the wheel's
    site = sysconfig.get_paths()["purelib"]
    env = {"PYTHONPATH": os.pathsep.join([str(target), site]), "PATH": "/usr/bin:/bin"}
    probe = ("import importlib.util as u, quantlab.harness.records as r; "
             "print(r.__file__); print([n for n in ('harness', 'agents', 'android_runner', "
             "'ios_runner') if u.find_spec(n)])")
    out = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    where, found = out.stdout.splitlines()
    assert where.startswith(str(target)) and found == "[]"
