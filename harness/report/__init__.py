"""Reports on stored runs: HTML (with plots), comparisons, recommendations and flat exports.

Each module is one step of the data flow after the store: ``ci`` (a comparison →
JUnit and Markdown), ``recommend`` (a run + evaluations → a variant per device),
``export`` (a run → flat files), ``plots`` + ``html`` (runs → one self-contained HTML
file). The verdicts they show (compare, history, drift) are computed in
:mod:`quantlab.harness.verdicts`.
"""

from __future__ import annotations

from quantlab.harness.report.html import write_report

__all__ = ["write_report"]
