"""Verdict statistics: whether one measurement is slower, faster or no different from another.

Below the reports (which show verdicts) and the CLI, above the store (whose read models
they judge):

* ``latency.py``: the test on two sets of latency figures, its verdict words, alpha, the
  default threshold and ``parse_threshold``;
* ``pairing.py``: which job of one run is which job of the other;
* ``compare.py``: two runs job by job, every pair a verdict or why not (``compare_runs``),
  one pair (``compare_entries``) and autoquant's latency ties;
* ``drift.py``: the slow-drift rule, its trend and the ``Drift`` record;
* ``history.py``: series across runs, their change points and drift.

An interleaved A/B, a plan file's threshold, the nightly's baseline and every report take
their statistics from here, none from a report.
"""
