"""The demo's PyTorch model: a small CNN trained on scikit-learn's 8×8 digits in PyTorch
(``quantlab demo --source torch``), saved as a ``torch.export`` archive.

The same data and split as :mod:`quantlab.harness.quantize.demo_model` (no download), laid
out as PyTorch takes images (NCHW: N×1×8×8). Training takes seconds on two idle cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from quantlab.harness.quantize.demo_model import DIGITS_SEED, digits_arrays


def build_torch_digits(out_dir: str | os.PathLike[str], *, epochs: int = 8, width: int = 16,
                       seed: int = DIGITS_SEED) -> tuple[Path, Path, Path]:
    """Train the CNN; write ``digits.pt2`` (its ``torch.export`` archive, example input
    1×1×8×8), ``digits.npz`` (the held-out split: evaluation) and ``digits-train.npz`` (the
    training split: calibration). Returns those three paths."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = (a.transpose(0, 3, 1, 2) if a.ndim == 4 else a
                                        for a in digits_arrays(seed))
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, width, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(width * 16, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    x, y = torch.from_numpy(np.ascontiguousarray(x_train)), torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), 32):
            batch = order[i:i + 32]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
            opt.step()
    net.eval()
    pt2 = out / "digits.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(1, 1, 8, 8),)), pt2)
    np.savez(out / "digits.npz", x=x_test, y=y_test)
    np.savez(out / "digits-train.npz", x=x_train, y=y_train)
    return pt2, out / "digits.npz", out / "digits-train.npz"
