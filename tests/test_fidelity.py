"""Per-output fidelity of a variant that overflows: figures, never a crash of evaluate."""

from __future__ import annotations

import numpy as np

from quantlab.harness.quantize.fidelity import fidelity


def test_an_output_that_overflows_to_inf_gets_figures_not_a_crash() -> None:
    """A mutated detector in the fault campaign gave an output of ±inf beside finite float
    ones: the MSE is inf, signal / MSE is 0, and log10(0) raised 'math domain error' out of
    quantlab evaluate (a traceback). The SQNR of such an output is -inf dB: no figure."""
    rng = np.random.default_rng(0)
    ref = rng.random((20, 10)).astype(np.float32)
    out = ref.copy()
    out[3, 4] = np.inf
    row = fidelity([ref], [out])[0]
    assert row["sqnr_db"] is None and row["mse"] == np.inf
    assert row["max_abs_err"] == np.inf
    nan = ref.copy()
    nan[0, 0] = np.nan
    assert fidelity([ref], [nan])[0]["sqnr_db"] is None
