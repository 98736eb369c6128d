"""quantlab's host controller: quantize, evaluate, plan, dispatch, store, report."""

__version__ = "0.1.0"
