"""A fixed, recorded subset of an evaluation set (``evaluate --samples N``).

The same N samples are drawn for the same data and seed on every run and every device, so
accuracies measured on phones on different days compare on the same samples; the record says
how many, of how many, how they were drawn and which (their indices' sha256, and the first
few), so a stored figure names its sample set.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from quantlab.harness.errors import UserError

SEED = 0
"""The default seed of the draw."""


def pick_samples(total: int, count: int | None, seed: int = SEED
                 ) -> tuple[np.ndarray, dict[str, Any]]:
    """The indices of ``count`` samples of ``total`` (sorted; every sample when ``count`` is
    None or at least ``total``) and the sample set's record."""
    if count is not None and count < 1:
        raise UserError(f"--samples {count}: give a number of samples of at least 1")
    if count is None or count >= total:
        index = np.arange(total)
        method = "every sample"
    else:
        index = np.sort(np.random.default_rng(seed).choice(total, count, replace=False))
        method = f"{count} of {total} drawn without replacement (numpy default_rng({seed}))"
    digest = hashlib.sha256(index.astype("<i8").tobytes()).hexdigest()
    return index, {"count": len(index), "of": total, "seed": seed if count else None,
                   "method": method, "indices_sha256": digest,
                   "first": [int(i) for i in index[:10]]}
