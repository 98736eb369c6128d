"""Verdict statistics: whether one measurement is slower, faster or no different from another.

Below the reports (which show verdicts) and the CLI, above the store (whose read models
they judge): ``latency.py`` is the test on two sets of latency figures, its verdict words,
alpha, the default threshold and ``parse_threshold``. An interleaved A/B, a plan file's
threshold and every report take their statistics from here, none from a report.
"""
