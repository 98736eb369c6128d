"""Compare two stored runs job by job: ratio of medians with a CI and a rank-test verdict.

Jobs are matched by (model, device, delegate, threads), where the model is its
sha256, or — for jobs whose file changed between the runs — its scheme plus file
name. The verdict comes from a two-sided Mann–Whitney U test on the raw samples
with every process-level repeat of a job pooled into one sample, never from two
means.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.store import JobEntry, RunRecord

ALPHA = 0.05
DEFAULT_THRESHOLD = 0.05
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Match:
    """One job present in both runs, with its verdict."""

    model: str
    device: str
    delegate: str
    threads: int
    baseline_median_ms: float
    new_median_ms: float
    ratio: float  # new / baseline median; > 1 means slower
    ratio_ci95: tuple[float, float]
    p_value: float
    verdict: str  # "faster" | "slower" | "no significant difference"
    baseline_job: str
    new_job: str


@dataclass(frozen=True)
class Comparison:
    """The result of comparing run ``new`` against run ``baseline``."""

    baseline: str
    new: str
    threshold: float
    matches: list[Match] = field(default_factory=list)
    only_in_baseline: list[str] = field(default_factory=list)
    only_in_new: list[str] = field(default_factory=list)
    test: str = ("two-sided Mann-Whitney U on raw samples, all repeats of a job pooled; "
                 f"alpha {ALPHA}; slower/faster also needs the ratio beyond the threshold "
                 "and its 95% CI (two-level bootstrap: repeats, then samples) clear of 1")

    @property
    def regressed(self) -> bool:
        """True when any match is significantly slower by more than the threshold."""
        return any(m.verdict == "slower" for m in self.matches)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (with ``regressed``)."""
        out = asdict(self)
        out["regressed"] = self.regressed
        for m in out["matches"]:
            m["ratio_ci95"] = list(m["ratio_ci95"])
        return out


def _repeats(entry: JobEntry) -> list[np.ndarray]:
    assert entry.raw is not None
    return [np.asarray(r, dtype=float) for r in entry.raw.samples_ms if len(r)]


def _pooled(entry: JobEntry) -> np.ndarray:
    parts = _repeats(entry)
    return np.concatenate(parts) if parts else np.empty(0)


def _model_name(entry: JobEntry) -> str:
    name = Path(entry.job.model.path).name
    return f"{entry.job.model.scheme} ({name})" if entry.job.model.scheme else name


def _keys(entry: JobEntry) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    j = entry.job
    rest = (j.device_id, j.delegate, j.threads)
    return (j.model.sha256, *rest), (j.model.scheme, Path(j.model.path).name, *rest)


def ratio_ci(base: list[np.ndarray], new: list[np.ndarray],
             resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap CI of median(new) / median(base), each side resampled on its own at
    two levels (repeats, then samples within a repeat), so a shift between processes
    of one run widens the interval instead of passing for a difference between runs."""
    from harness.stats import bootstrap_medians

    rng = np.random.default_rng(seed)
    ratios = bootstrap_medians(new, rng, resamples) / bootstrap_medians(base, rng, resamples)
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def verdict(base: np.ndarray, new: np.ndarray, threshold: float,
            ci: tuple[float, float] | None = None) -> tuple[str, float, float]:
    """(verdict, p-value, ratio of medians) for two pooled sample arrays.

    "slower" only when the rank test is significant, the ratio exceeds
    1 + threshold, and the ratio's 95 % CI (``ci``, computed when not given) lies
    wholly above 1; "faster" mirrors it (ratio below 1 / (1 + threshold), CI below 1).
    The CI condition keeps a shift the bootstrap cannot tell from noise (e.g.
    between-repeat variance) from failing a CI gate.
    """
    from scipy.stats import mannwhitneyu

    ratio = float(np.median(new) / np.median(base))
    p = float(mannwhitneyu(new, base, alternative="two-sided").pvalue)
    lo, hi = ci if ci is not None else ratio_ci([base], [new])
    if p < ALPHA and ratio > 1 + threshold and lo > 1:
        return "slower", p, ratio
    if p < ALPHA and ratio < 1 / (1 + threshold) and hi < 1:
        return "faster", p, ratio
    return "no significant difference", p, ratio


def _usable(entry: JobEntry) -> bool:
    return entry.status == "ok" and entry.raw is not None and _pooled(entry).size >= 2


def compare_runs(baseline: RunRecord, new: RunRecord,
                 threshold: float = DEFAULT_THRESHOLD) -> Comparison:
    """Match the jobs of two runs and give each match a verdict."""
    base_entries = [e for e in baseline.entries if _usable(e)]
    new_entries = [e for e in new.entries if _usable(e)]
    by_sha = {_keys(e)[0]: e for e in base_entries}
    by_name = {_keys(e)[1]: e for e in base_entries}
    used: set[str] = set()
    matches: list[Match] = []
    only_new: list[str] = []
    for e in new_entries:
        k_sha, k_name = _keys(e)
        b = by_sha.get(k_sha)
        if b is None or b.job.job_id in used:
            b = by_name.get(k_name)
        if b is None or b.job.job_id in used:
            only_new.append(e.job.label())
            continue
        used.add(b.job.job_id)
        xb, xn = _pooled(b), _pooled(e)
        ci = ratio_ci(_repeats(b), _repeats(e))
        word, p, ratio = verdict(xb, xn, threshold, ci)
        matches.append(Match(
            model=_model_name(e), device=e.job.device_id, delegate=e.job.delegate,
            threads=e.job.threads, baseline_median_ms=float(np.median(xb)),
            new_median_ms=float(np.median(xn)), ratio=ratio, ratio_ci95=ci,
            p_value=p, verdict=word, baseline_job=b.job.job_id, new_job=e.job.job_id,
        ))
    only_base = [e.job.label() for e in base_entries if e.job.job_id not in used]
    return Comparison(baseline=baseline.run.run_id, new=new.run.run_id, threshold=threshold,
                      matches=matches, only_in_baseline=only_base, only_in_new=only_new)


def parse_threshold(value: str) -> float:
    """``"5%"`` or ``"0.05"`` → 0.05; a UserError for anything else."""
    from harness.errors import UserError

    text = value.strip()
    try:
        number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise UserError(f"--threshold {value!r}: not a number",
                        hint="give a percentage such as 5% or a fraction such as 0.05") from None
    if not 0 <= number < 10:
        raise UserError(f"--threshold {value!r}: out of range", hint="use e.g. 5% or 0.05")
    return number
