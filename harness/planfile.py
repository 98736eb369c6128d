"""Plan files: a benchmark kept in version control as TOML, read into plain data.

``quantlab bench --plan PLAN.toml`` reads one. The file is checked against the JSON
Schema shipped beside this module (``planfile.schema.json``), then against the disk
(model globs that match nothing, missing data files) and, once devices are
discovered, against the fleet (device ids, tags, delegates). Every mistake is one
line naming the file, the line and the key, e.g.::

    nightly.toml:7: measure.iterations: expected an integer, got string "forty"

Relative paths in the file are taken from the file's own folder, so a plan works
the same from any working directory (a cron job, a CI checkout).
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from quantlab.harness import kinds
from quantlab.harness.errors import UserError
from quantlab.harness.records import DeviceInfo

SCHEMA_FILE = Path(__file__).with_name("planfile.schema.json")

KeyPath = tuple[str | int, ...]


class PlanFileError(UserError):
    """A plan file that cannot be used, located by file, line and key."""

    def __init__(self, path: Path, line: int | None, key: str, message: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")
        self.path = path
        self.line = line
        self.key = key


def plan_schema() -> dict[str, Any]:
    """The JSON Schema of plan files (shipped as ``harness/planfile.schema.json``), with the
    registered device kinds (:mod:`quantlab.harness.kinds`) filled in: the file names none."""
    return _schema(tuple(kinds.names()))


@cache
def _schema(kind_names: tuple[str, ...]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    devices = data["properties"]["devices"]
    devices["description"] = devices["description"].replace(
        "device kinds (", f"device kinds ({', '.join(kind_names)}: ", 1)
    devices["examples"] = [[name] for name in kind_names]
    return data


@dataclass(frozen=True)
class PlanFile:
    """A checked plan file: its text, hash and settings, model paths resolved."""

    path: Path
    text: str
    sha256: str
    models: tuple[str, ...]
    """Files and variants folders, globs expanded (sorted), in the file's order."""
    devices: tuple[str | dict[str, str], ...] = ()
    device_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    """Device id → tags, from ``devices_file``."""
    delegates: tuple[str, ...] = ()
    threads: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    measure: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] | None = None
    compare: dict[str, Any] = field(default_factory=dict)
    lines: dict[KeyPath, int] = field(default_factory=dict, repr=False)

    def error(self, key: KeyPath, message: str) -> PlanFileError:
        """A one-line error about ``key`` at the line where the file sets it."""
        return PlanFileError(self.path, _line_for(self.lines, key), _key_text(key), message)

    def select_devices(self, fleet_devices: tuple[DeviceInfo, ...] | list[DeviceInfo]
                       ) -> list[DeviceInfo]:
        """The fleet's devices the plan's ``devices`` names (ids, kinds, 'all', tags)."""
        chosen: list[DeviceInfo] = []

        def add(found: list[DeviceInfo]) -> None:
            chosen.extend(d for d in found if d not in chosen)

        for i, sel in enumerate(self.devices):
            if isinstance(sel, dict) or ("=" in sel and sel not in {d.id for d in fleet_devices}):
                wanted = sel if isinstance(sel, dict) else dict([sel.split("=", 1)])
                found = [d for d in fleet_devices
                         if all(self.device_tags.get(d.id, {}).get(k) == v
                                for k, v in wanted.items())]
                if not found:
                    text = ", ".join(f"{k}={v}" for k, v in wanted.items())
                    tagged = ", ".join(sorted(self.device_tags)) or "none"
                    raise self.error(("devices", i), f"no attached device has the tags {text} "
                                     f"(devices with tags: {tagged})")
                add(found)
            elif sel == "all":
                add(list(fleet_devices))
            elif any(d.id == sel or d.name == sel for d in fleet_devices):
                add([d for d in fleet_devices if d.id == sel or d.name == sel])
            elif sel in kinds.KINDS:
                found = [d for d in fleet_devices if d.platform == sel]
                if not found:
                    raise self.error(("devices", i), f"no {sel} device attached")
                add(found)
            else:
                known = ", ".join(d.id for d in fleet_devices) or "none"
                raise self.error(("devices", i), f"{sel}: no such device (attached: {known})")
        return chosen

    def check_delegates(self, known: set[str]) -> None:
        """Every delegate the plan names is one some agent knows."""
        for i, name in enumerate(self.delegates):
            if name not in known:
                raise self.error(("delegates", i), f"{name}: unknown delegate (known: "
                                 f"{', '.join(sorted(known))})")


def load_plan_file(path: str | Path) -> PlanFile:
    """Read, validate and resolve a plan file; a :class:`PlanFileError` for any mistake."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise PlanFileError(p, None, "", "no such plan file") from None
    except OSError as exc:
        raise PlanFileError(p, None, "", f"cannot read it ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanFileError(p, None, "", f"not UTF-8 text ({exc.reason})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        msg = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))
        line = int(m.group(1)) if m else (len(text.splitlines()) or None)
        raise PlanFileError(p, line, "", f"not valid TOML: {msg}"
                            + (f" (column {m.group(2)})" if m else "")) from None
    lines = key_lines(text)
    check_schema(data, p, lines)
    base = p.resolve().parent
    plan = PlanFile(
        path=p, text=text, sha256=hashlib.sha256(raw).hexdigest(),
        models=tuple(_expand_models(data["models"], base, p, lines)),
        devices=tuple(data.get("devices", ())),
        delegates=tuple(data.get("delegates", ())),
        threads=tuple(data.get("threads", ())),
        tags=tuple(data.get("tags", ())),
        measure=dict(data.get("measure", {})),
        gate=dict(data["gate"]) if "gate" in data else None,
        compare=dict(data.get("compare", {})),
        lines=lines,
    )
    measure = dict(plan.measure)
    if "inputs" in measure:
        measure["inputs"] = _existing(base, measure["inputs"], plan, ("measure", "inputs"))
    gate = dict(plan.gate) if plan.gate else None
    if gate and "data" in gate:
        gate["data"] = _existing(base, gate["data"], plan, ("gate", "data"))
    device_tags: dict[str, dict[str, str]] = {}
    if "devices_file" in data:
        device_tags = _device_tags(_existing(base, data["devices_file"], plan,
                                             ("devices_file",)), plan)
    if "threshold" in plan.compare:
        from quantlab.harness.verdicts.latency import parse_threshold

        try:
            parse_threshold(str(plan.compare["threshold"]))
        except UserError as exc:
            raise plan.error(("compare", "threshold"), exc.message) from None
    return replace(plan, measure=measure, gate=gate, device_tags=device_tags)


# ----------------------------------------------------------------------------- checks


def check_schema(data: dict[str, Any], path: Path, lines: dict[KeyPath, int]) -> None:
    """Validate parsed TOML against the plan schema; the first problem as a PlanFileError."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(plan_schema())
    errors = sorted(validator.iter_errors(data),
                    key=lambda e: (_line_for(lines, _error_key(e)) or 0, list(map(str, e.path))))
    if not errors:
        return
    err = errors[0]
    key = _error_key(err)
    raise PlanFileError(path, _line_for(lines, key), _key_text(key), _error_text(err))


def _error_key(err: Any) -> KeyPath:
    key: KeyPath = tuple(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        if extra:
            return (*key, extra[0])
    if err.validator == "required":
        m = re.match(r"'([^']+)'", err.message)
        if m:
            return (*key, m.group(1))
    return key


_TYPE_WORDS = {"string": "a string", "integer": "an integer", "number": "a number",
               "boolean": "true or false", "array": "a list", "object": "a table"}


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _error_text(err: Any) -> str:
    kind, value, inst = err.validator, err.validator_value, err.instance
    if kind == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        return f"unknown key (known keys here: {', '.join(allowed)})"
    if kind == "required":
        return "required key missing"
    if kind == "type":
        wanted = value if isinstance(value, list) else [value]
        words = " or ".join(_TYPE_WORDS.get(str(w), str(w)) for w in wanted)
        return f"expected {words}, got {_toml_type(inst)} {_shown(inst)}"
    if kind == "enum":
        return f"{_shown(inst)} is not one of {', '.join(map(str, value))}"
    if kind == "minimum":
        return f"must be at least {value}, got {_shown(inst)}"
    if kind == "exclusiveMaximum":
        return f"must be below {value}, got {_shown(inst)}"
    if kind == "minItems":
        return "must not be empty"
    if kind == "minLength":
        return "must not be empty"
    if kind == "minProperties":
        return "must name at least one tag"
    if kind == "pattern":
        return f"{_shown(inst)} is not in the expected form"
    if kind == "oneOf":
        options = [_TYPE_WORDS.get(s.get("type", ""), s.get("type", "?"))
                   for s in err.schema.get("oneOf", [])]
        return f"expected {' or '.join(options)}, got {_toml_type(inst)} {_shown(inst)}"
    return str(err.message)


def _key_text(key: KeyPath) -> str:
    out = ""
    for part in key:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _existing(base: Path, value: str, plan: PlanFile, key: KeyPath) -> str:
    p = Path(value).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.exists():
        raise plan.error(key, f"{value}: no such file or folder")
    return str(p)


def _expand_models(items: list[str], base: Path, path: Path,
                   lines: dict[KeyPath, int]) -> list[str]:
    out: list[str] = []
    for i, item in enumerate(items):
        pattern = Path(item).expanduser()
        full = str(pattern if pattern.is_absolute() else base / pattern)
        if glob.has_magic(item):
            found = sorted(glob.glob(full, recursive=True))
            if not found:
                raise PlanFileError(path, _line_for(lines, ("models", i)), f"models[{i}]",
                                    f"{item}: matches no file")
        elif Path(full).exists():
            found = [full]
        else:
            raise PlanFileError(path, _line_for(lines, ("models", i)), f"models[{i}]",
                                f"{item}: no such model file or variants folder")
        out.extend(f for f in found if f not in out)
    return out


def _device_tags(file: str, plan: PlanFile) -> dict[str, dict[str, str]]:
    """``[devices.ID] key = "value"`` tables of a devices file."""
    where = Path(file)
    try:
        data = tomllib.loads(where.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise plan.error(("devices_file",), f"{where}: unreadable ({exc})") from None
    tables = data.get("devices")
    if not isinstance(tables, dict) or set(data) != {"devices"}:
        raise plan.error(("devices_file",), f"{where}: expected only [devices.<id>] tables")
    out: dict[str, dict[str, str]] = {}
    for dev, tags in tables.items():
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise plan.error(("devices_file",), f"{where}: devices.{dev}: tags must be "
                             'strings, e.g. tier = "flagship"')
        out[str(dev)] = {str(k): v for k, v in tags.items()}
    return out


# ----------------------------------------------------------------------------- lines

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|"""
                  r"""[A-Za-z0-9_-]+))*)\s*=""")


def _split_key(text: str) -> tuple[str, ...]:
    parts = re.findall(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""", text)
    return tuple(str(a or b or c) for a, b, c in parts)


def key_lines(text: str) -> dict[KeyPath, int]:
    """Key path → the 1-based line that sets it (table headers included).

    A light scan of the TOML text, enough to point at a key: tables, dotted keys and
    the items of arrays written one per line. Values spanning lines are skipped over.
    """
    out: dict[KeyPath, int] = {}
    table: tuple[str, ...] = ()
    array_key: tuple[str, ...] | None = None
    array_index = 0
    depth = 0
    for no, line in enumerate(text.splitlines(), start=1):
        code = _strip_comment(line)
        if depth > 0 and array_key is not None:
            array_index = _items(out, array_key, array_index, code, no)
            depth += _depth(code)
            if depth <= 0:
                array_key = None
            continue
        m = _HEADER.match(code)
        if m and "=" not in code.split("]")[0]:
            table = _split_key(m.group(2))
            out.setdefault(table, no)
            continue
        k = _KEY.match(code)
        if not k:
            continue
        key = (*table, *_split_key(k.group(1)))
        out.setdefault(key, no)
        value = code[k.end():]
        if value.strip().startswith("["):
            array_key, array_index = key, 0
            depth = _depth(value)
            array_index = _items(out, key, 0, value, no)
            if depth <= 0:
                array_key = None
    return out


_ITEM = re.compile(r"""("[^"]*"|'[^']*'|\{[^}]*\}|-?[0-9][0-9_.eE+-]*|true|false)""")


def _items(out: dict[KeyPath, int], key: tuple[str, ...], start: int, code: str,
           line: int) -> int:
    """Record the line of each array item on this line; returns the next item index."""
    index = start
    for _ in _ITEM.finditer(code):
        out.setdefault((*key, index), line)
        index += 1
    return index


def _depth(code: str) -> int:
    """Brackets opened minus closed outside strings."""
    bare = re.sub(r""""[^"]*"|'[^']*'""", "", code)
    return bare.count("[") - bare.count("]")


def _strip_comment(line: str) -> str:
    quote: str | None = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


def _line_for(lines: dict[KeyPath, int], key: KeyPath) -> int | None:
    """The line of ``key``, else of the nearest enclosing key or table; 1 for the top."""
    for n in range(len(key), 0, -1):
        if key[:n] in lines:
            return lines[key[:n]]
    return 1 if lines or not key else None
