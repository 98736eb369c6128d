"""Plan files: the shipped JSON Schema, the examples of docs/nightly-lab.md, and one-line
errors naming the file, line and key (exit 2 from ``bench --plan``)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from quantlab.harness.cli.main import app
from quantlab.harness.planfile import PlanFileError, key_lines, load_plan_file, plan_schema
from quantlab.harness.records import DeviceInfo

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "nightly-lab.md"
SMALLEST = """\
models = ["models/*.tflite"]
devices = ["sim"]
delegates = ["xnnpack"]
threads = [1]

[measure]
iterations = 40
repeats = 2
"""
runner = CliRunner()


def _toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)


def _plan(tmp_path: Path, text: str, name: str = "plan.toml") -> Path:
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "a.tflite").write_bytes(b"x")
    path = tmp_path / name
    path.write_text(text)
    return path


def test_schema_is_valid_and_accepts_the_documented_plans() -> None:
    schema = plan_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    plans = [b for b in _toml_blocks() if b.lstrip().startswith(("models", "#"))]
    assert len(plans) == 2  # the full nightly plan and the smallest one
    assert SMALLEST in _toml_blocks()
    for text in plans:
        jsonschema.validate(tomllib.loads(text), schema,
                            cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize(("text", "bad"), [
    ('models = ["a.tflite"]\nmodel = ["b"]\n', {"model": 1}),
    ('models = []\n', {}),
    ('models = ["a"]\nthreads = [0]\n', {}),
    ('models = ["a"]\ndevices = [{}]\n', {}),
    ('models = ["a"]\n[compare]\nmatch = ["colour"]\n', {}),
])
def test_schema_rejects_what_it_should(text: str, bad: dict[str, int]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(tomllib.loads(text), plan_schema(),
                            cls=jsonschema.Draft202012Validator)


def test_the_smallest_plan_loads_with_paths_from_its_folder(tmp_path: Path) -> None:
    path = _plan(tmp_path, SMALLEST)
    plan = load_plan_file(path)
    assert plan.models == (str(tmp_path / "models" / "a.tflite"),)
    assert plan.devices == ("sim",) and plan.threads == (1,)
    assert plan.measure == {"iterations": 40, "repeats": 2}
    assert plan.text == SMALLEST and len(plan.sha256) == 64


@pytest.mark.parametrize(("text", "expected"), [
    # unknown key, at the top and inside a table
    ("colour = 1\n" + SMALLEST, "plan.toml:1: colour: unknown key"),
    (SMALLEST.replace("repeats = 2", "repeats = 2\niteratons = 3"),
     "plan.toml:9: measure.iteratons: unknown key"),
    # wrong type
    (SMALLEST.replace("iterations = 40", 'iterations = "forty"'),
     'plan.toml:7: measure.iterations: expected an integer, got string "forty"'),
    (SMALLEST.replace("threads = [1]", "threads = 1"),
     "plan.toml:4: threads: expected a list, got integer 1"),
    (SMALLEST.replace('devices = ["sim"]', 'devices = [\n  "sim",\n  3,\n]'),
     "plan.toml:4: devices[1]: expected a string or a table, got integer 3"),
    # missing model: a glob that matches nothing, a file that is not there, no models key
    (SMALLEST.replace("models/*.tflite", "nets/*.tflite"),
     "plan.toml:1: models[0]: nets/*.tflite: matches no file"),
    (SMALLEST.replace('"models/*.tflite"', '"models/*.tflite",\n  "gone.tflite"'),
     "plan.toml:2: models[1]: gone.tflite: no such model file or variants folder"),
    (SMALLEST.replace('models = ["models/*.tflite"]\n', ""),
     "plan.toml:1: models: required key missing"),
    # bad values beyond types
    (SMALLEST + '[compare]\nthreshold = "fast"\n',
     'plan.toml:10: compare.threshold: expected a string or a number, got string "fast"'),
    (SMALLEST + '[gate]\ndata = "val.npz"\n', "plan.toml:10: gate.data: val.npz: no such file"),
    (SMALLEST.replace('["sim"]', "[sim]"), "plan.toml:2: not valid TOML: Invalid value"),
    (SMALLEST + "[measure]\n", "plan.toml:9: not valid TOML: Cannot declare"),
])
def test_mistakes_are_one_line_with_file_line_and_key(tmp_path: Path, text: str,
                                                      expected: str) -> None:
    path = _plan(tmp_path, text)
    with pytest.raises(PlanFileError) as err:
        load_plan_file(path)
    message = err.value.one_line()
    assert "\n" not in message
    assert message.startswith(str(tmp_path / expected.split(":")[0]))
    assert expected.split("/")[-1] in message.replace(str(tmp_path) + "/", ""), message


def test_bench_with_a_bad_plan_exits_2_with_one_line(tmp_path: Path) -> None:
    path = _plan(tmp_path, SMALLEST.replace("repeats = 2", "repeats = 2\nrepats = 3"))
    res = runner.invoke(app, ["bench", "--plan", str(path), "--results", str(tmp_path / "r")])
    assert res.exit_code == 2
    [line] = res.stderr.strip().splitlines()
    assert "plan.toml:9: measure.repats: unknown key" in line
    assert "Traceback" not in res.output
    missing = runner.invoke(app, ["bench", "--plan", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "nope.toml: no such plan file" in missing.stderr


def test_key_lines_follow_tables_dotted_keys_and_array_items() -> None:
    text = ('models = [\n  "a",  # first\n  "b",\n]\nmeasure.iterations = 3\n'
            '[compare]\n"threshold" = "5%"\n')
    lines = key_lines(text)
    assert lines[("models",)] == 1 and lines[("models", 0)] == 2 and lines[("models", 1)] == 3
    assert lines[("measure", "iterations")] == 5
    assert lines[("compare",)] == 6 and lines[("compare", "threshold")] == 7


def test_devices_by_id_kind_and_tag(tmp_path: Path) -> None:
    (tmp_path / "lab.toml").write_text('[devices.R58]\ntier = "flagship"\n'
                                       '[devices.Z11]\ntier = "budget"\n')
    fleet = [DeviceInfo("sim", "sim", "host"), DeviceInfo("R58", "android", "Pixel"),
             DeviceInfo("Z11", "android", "Moto"), DeviceInfo("U1", "ios", "iPhone")]
    path = _plan(tmp_path, SMALLEST.replace(
        'devices = ["sim"]', 'devices = ["sim", "tier=flagship", {tier = "budget"}, "ios"]\n'
        'devices_file = "lab.toml"'))
    plan = load_plan_file(path)
    assert [d.id for d in plan.select_devices(fleet)] == ["sim", "R58", "Z11", "U1"]
    assert [d.id for d in load_plan_file(_plan(tmp_path, SMALLEST.replace(
        '"sim"', '"all"'))).select_devices(fleet)] == ["sim", "R58", "Z11", "U1"]
    nobody = load_plan_file(_plan(tmp_path, SMALLEST.replace(
        '"sim"', '"tier=flagship"')))
    with pytest.raises(PlanFileError, match=r"plan.toml:2: devices\[0\]: no attached device "
                       "has the tags tier=flagship"):
        nobody.select_devices(fleet)
    unknown = load_plan_file(_plan(tmp_path, SMALLEST.replace('"sim"', '"pixel-9"')))
    with pytest.raises(PlanFileError, match=r"devices\[0\]: pixel-9: no such device"):
        unknown.select_devices(fleet)
    with pytest.raises(PlanFileError, match=r"plan.toml:3: delegates\[0\]: xnnpack: unknown"):
        unknown.check_delegates({"cpu", "gpu"})
