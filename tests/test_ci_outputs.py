"""JUnit XML and Markdown for CI, read back with a real JUnit reader (junitparser).

One test case per matched pair: slower and failed are failures carrying the numbers,
untestable is skipped with the reason, faster and no difference pass; jobs found in
one run only are listed in the suite's output, not as cases.
"""

from __future__ import annotations

from pathlib import Path

from junitparser import Failure, JUnitXml, Skipped

from quantlab.harness.report.ci import comparison_junit, comparison_markdown, write_outputs
from quantlab.harness.verdicts.compare import Comparison, Match, Unmatched


def _match(model: str, verdict: str, **kw: object) -> Match:
    fields: dict[str, object] = dict(
        model=model, device="R58M", delegate="gpu", threads=4, verdict=verdict,
        method="per-iteration", statistic="median", baseline_ms=2.0, new_ms=2.0, ratio=1.0,
        ratio_ci95=(0.98, 1.02), p_value=0.5, reason=None, baseline_job="b" + model,
        new_job="n" + model, baseline_label=f"{model} · R58M · gpu · 4t",
        new_label=f"{model} · R58M · gpu · 4t")
    fields.update(kw)
    return Match(**fields)  # type: ignore[arg-type]


COMPARISON = Comparison(
    baseline="20261101-030000-aaaa", new="20261102-030000-bbbb", threshold=0.05,
    matches=[
        _match("slow.tflite", "slower", new_ms=3.0, ratio=1.5, ratio_ci95=(1.45, 1.55),
               p_value=1e-9),
        _match("same.tflite", "no significant difference"),
        _match("fast.tflite", "faster", new_ms=1.0, ratio=0.5, ratio_ci95=(0.48, 0.52),
               p_value=1e-9),
        _match("log.tflite", "untestable", method=None, statistic=None, baseline_ms=None,
               new_ms=None, ratio=None, ratio_ci95=None, p_value=None,
               reason="the new job has one launch and the tool printed only its average"),
        _match("gone | bad.tflite", "failed", method=None, statistic=None, baseline_ms=None,
               new_ms=None, ratio=None, ratio_ci95=None, p_value=None,
               reason="ran in the baseline, failed in the new run (GPU delegate refused)"),
    ],
    only_in_new=[Unmatched("new.tflite · R58M · gpu · 4t", "cafe", "ok")],
)


def test_junit_has_one_case_per_pair_and_the_numbers(tmp_path: Path) -> None:
    [path] = write_outputs({"junit": str(tmp_path / "ci" / "junit.xml"), "markdown": None},
                           comparison=COMPARISON)
    xml = JUnitXml.fromfile(str(path))
    [suite] = list(xml)
    cases = {c.name: c for c in suite}
    assert len(cases) == 5 and suite.tests == 5
    assert suite.failures == 2 and suite.skipped == 1 and suite.errors == 0
    [slow] = cases["slow.tflite · gpu · 4t"].result
    assert isinstance(slow, Failure) and slow.type == "slower"
    assert "median 3 ms vs 2 ms" in slow.message and "×1.500" in slow.message
    assert "1.450–1.550" in slow.message and "p=1e-09" in slow.message
    assert cases["slow.tflite · gpu · 4t"].classname == "quantlab.R58M"
    [failed] = cases["gone | bad.tflite · gpu · 4t"].result
    assert isinstance(failed, Failure) and "GPU delegate refused" in failed.message
    [skipped] = cases["log.tflite · gpu · 4t"].result
    assert isinstance(skipped, Skipped) and "printed only its average" in skipped.message
    assert cases["fast.tflite · gpu · 4t"].is_passed
    assert cases["same.tflite · gpu · 4t"].is_passed
    assert "only in new run: new.tflite" in path.read_text()
    props = {p.name: p.value for p in suite.properties()}
    assert props["threshold"] == "5%" and props["baseline"] == COMPARISON.baseline


def test_markdown_is_a_table_with_every_pair() -> None:
    text = comparison_markdown(COMPARISON)
    assert text.startswith("### quantlab: 20261102-030000-bbbb vs baseline 20261101")
    assert "❌ regression" in text and "**1 slower**" in text and "**1 failed**" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "tflite" in line]
    assert len(rows) == 5
    slow = next(r for r in rows if "slow.tflite" in r)
    assert "median 2 ms" in slow and "median 3 ms" in slow and "×1.500 [1.450–1.550]" in slow
    assert "gone \\| bad.tflite" in text  # a pipe in a name does not break the table
    assert "- only in new run: new.tflite" in text


def test_no_regression_junit_has_no_failure() -> None:
    calm = Comparison(baseline="a", new="b", threshold=0.05,
                      matches=[_match("same.tflite", "no significant difference")])
    xml = JUnitXml.fromstring(comparison_junit(calm))
    [suite] = list(xml)
    assert suite.tests == 1 and suite.failures == 0
    assert "✅ no regression" in comparison_markdown(calm)


def test_the_plans_accuracy_gate_is_a_suite_of_its_own(tmp_path: Path) -> None:
    """bench --plan with a [gate]: a variant beyond its max drop fails CI in the JUnit file
    and the Markdown, not only on the terminal."""
    accuracy = {"data": "eval.npz", "failed": ["int8 (variants)"], "variants": [
        {"folder": "variants", "scheme": "fp16", "path": "variants/fp16.tflite",
         "metric": "top1", "value": 0.97, "drop": 0.0, "max_drop": 0.005, "passed": True},
        {"folder": "variants", "scheme": "int8", "path": "variants/int8.tflite",
         "metric": "top1", "value": 0.91, "drop": 0.06, "max_drop": 0.02, "passed": False}]}
    junit, md = write_outputs({"junit": str(tmp_path / "j.xml"), "markdown": str(tmp_path
                                                                               / "s.md")},
                              comparison=COMPARISON, accuracy=accuracy)
    xml = JUnitXml.fromfile(str(junit))
    suites = {s.name: s for s in xml}
    gate = suites["quantlab accuracy gate"]
    assert gate.tests == 2 and gate.failures == 1
    cases = {c.name: c for c in gate}
    [fail] = cases["int8"].result
    assert isinstance(fail, Failure) and fail.type == "accuracy"
    assert "drop 6.00 pt > 2.00 pt" in fail.message  # the evaluate table's units
    assert not cases["fp16"].result
    assert xml.failures == 3  # the comparison's two and the gate's one
    text = md.read_text()
    assert "#### Accuracy gate on eval.npz" in text and "❌ int8 (variants) failed" in text
