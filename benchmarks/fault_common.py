"""What the fault campaigns share: the outcome columns, the printed table, the controller's
environment, and the real models they start from.

Every campaign counts each case into exactly one outcome column:

* ``ok`` — the job (or evaluation) ended with a result;
* ``failed`` — it ended ``failed`` with a one-line reason;
* ``refused`` — quantlab refused it up front with one line (exit code 2 on the CLI);
* ``crash`` — the controller died (a signal, an exit code other than 0/1/2), a traceback or
  an exception that is not a quantlab error reached the user, or a failure came without a
  one-line reason;
* ``hang`` — it ran past ``--timeout`` plus a grace period (then it is killed);
* ``lost`` — a job that never ended in the store (pending, running or interrupted at the end);
* ``duplicated`` — a job with more than one stored result, or run again after it ended.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("ok", "failed", "refused", "crash", "hang", "lost", "duplicated")
BAD = ("crash", "hang", "lost", "duplicated")
ADDRESS_SPACE_LIMIT = 8 << 30
"""Each controller and its workers get at most this much address space, so a mutant whose
tensors claim gigabytes fails its allocation instead of calling the OOM killer onto a
shared machine; no unmutated seed needs a tenth of it."""


class Tally:
    """Outcome counts per table row, in the order rows were first seen."""

    def __init__(self) -> None:
        self.rows: dict[str, Counter[str]] = {}
        self.examples: dict[tuple[str, str], list[str]] = {}

    def add(self, row: str, outcome: str, example: str | None = None) -> None:
        """Count one case of ``row`` as ``outcome`` (one of :data:`COLUMNS`)."""
        if outcome not in COLUMNS:
            raise ValueError(f"unknown outcome {outcome!r}")
        self.rows.setdefault(row, Counter())[outcome] += 1
        if example and outcome in BAD:
            self.examples.setdefault((row, outcome), []).append(example)

    def bad(self) -> int:
        """How many cases ended as a crash, hang, lost or duplicated result."""
        return sum(c[o] for c in self.rows.values() for o in BAD)

    def as_dict(self) -> dict[str, Any]:
        """Rows with every column (zeros included) and the bad cases' examples."""
        return {"rows": {r: {c: n[c] for c in COLUMNS} | {"n": sum(n.values())}
                         for r, n in self.rows.items()},
                "bad": self.bad(),
                "examples": {f"{r} / {o}": e[:10] for (r, o), e in self.examples.items()}}


def print_table(title: str, tally: Tally, notes: list[str] = (), out: Any = None) -> None:
    """The campaign's table: one row per case kind, a column per outcome, then examples of
    every bad case (at most five per row and outcome) and the notes."""
    out = out or sys.stdout
    width = max([len(r) for r in tally.rows] + [8])
    print(title, file=out)
    header = f" {'':<{width}}  {'n':>5}" + "".join(f"  {c:>10}" for c in COLUMNS)
    print(header, file=out)
    for row, counts in tally.rows.items():
        cells = "".join(f"  {counts[c]:>10}" for c in COLUMNS)
        print(f" {row:<{width}}  {sum(counts.values()):>5}{cells}", file=out)
    for (row, outcome), examples in tally.examples.items():
        for e in examples[:5]:
            print(f"  {outcome} in {row}: {e}", file=out)
    for note in notes:
        print(f" {note}", file=out)


def controller_env(**extra: str) -> dict[str, str]:
    """The environment of a controller process: this checkout first on the path, TF quiet."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def limit_address_space() -> None:
    """``preexec_fn`` of a controller: :data:`ADDRESS_SPACE_LIMIT`, inherited by its workers."""
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


def package_file(package: str, *parts: str) -> Path | None:
    """A data file inside an installed package, found without importing it (None: not
    installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    return path if path.is_file() else None


def one_line(text: str | None) -> bool:
    """Whether ``text`` is a reason a user can read: not empty, one line."""
    return bool(text and text.strip() and "\n" not in text.strip())


def emit(result: dict[str, Any], as_json: bool, title: str, tally: Tally,
         notes: list[str]) -> None:
    """Print the campaign: its table, or with ``as_json`` one JSON object on stdout."""
    if as_json:
        print(json.dumps({**result, **tally.as_dict(), "notes": notes}))
    else:
        print_table(title, tally, notes)
