"""The small ExecuTorch programs the ``.pte`` tests share, built once per test session: one
conv net lowered to XNNPACK (``small_pte``) and the same net with no partitioner, ExecuTorch's
portable kernels alone (``portable_pte``). ``tests/conftest.py`` registers the fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


def small_net() -> object:
    """The conv net (3×8×8 in, 4 scores out) every shared program is lowered from."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(8 * 6 * 6, 4)).eval()


def lower(path: Path, xnnpack: bool) -> Path:
    """:func:`small_net` exported and lowered to ``path`` (XNNPACK-partitioned or not)."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = torch.export.export(small_net(), (torch.zeros(1, 3, 8, 8),))
    partitioner = [XnnpackPartitioner()] if xnnpack else None
    path.write_bytes(to_edge_transform_and_lower(program, partitioner=partitioner)
                     .to_executorch().buffer)
    return path


@pytest.fixture(scope="session")
def pte_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the shared programs (skips without ExecuTorch)."""
    pytest.importorskip("executorch")
    return tmp_path_factory.mktemp("pte")


@pytest.fixture(scope="session")
def small_pte(pte_dir: Path) -> Path:
    """The small conv net lowered to XNNPACK: ``net.pte``."""
    return lower(pte_dir / "net.pte", xnnpack=True)


@pytest.fixture(scope="session")
def portable_pte(pte_dir: Path) -> Path:
    """The same net with no partitioner (portable kernels only): ``portable.pte``."""
    return lower(pte_dir / "portable.pte", xnnpack=False)


@pytest.fixture(scope="session")
def pte_with_source(pte_dir: Path, small_pte: Path) -> Path:
    """``small_pte`` in a folder of its own beside the ``.pt2`` it was lowered from and the
    ``manifest.json`` keys a float reference is found by (what ``quantize`` writes there):
    ``with-source/net.pte``."""
    import json
    import shutil

    import torch

    folder = pte_dir / "with-source"
    folder.mkdir()
    torch.export.save(torch.export.export(small_net(), (torch.zeros(1, 3, 8, 8),)),
                      folder / "net.pt2")
    shutil.copy(small_pte, folder / "net.pte")
    (folder / "manifest.json").write_text(json.dumps({
        "source": {"kind": "torch-export", "path": str(folder / "net.pt2")},
        "input": {"shape": [1, 3, 8, 8]},
        "variants": [{"scheme": "et-fp32", "file": "net.pte", "format": "pte",
                      "status": "ok"}]}))
    return folder / "net.pte"
