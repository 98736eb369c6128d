"""What every command shares: consoles, common options, JSON output and error exits."""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from quantlab.harness.errors import QuantlabError, UserError
from quantlab.harness.redact import redact_data, redact_text

console = Console(highlight=False)
"""Human output (stdout). Never used when --json is given."""

err_console = Console(stderr=True, highlight=False)
"""Progress bars, warnings and errors (stderr)."""

DEFAULT_RESULTS = "results"

JsonOpt = Annotated[bool, typer.Option("--json", help="Print only JSON on stdout.")]
ResultsOpt = Annotated[
    str | None,
    typer.Option(
        "--results",
        help="Results folder (holds quantlab.db) or a postgresql:// URL. "
        "Default: $QUANTLAB_RESULTS or ./results.",
        show_default=False,
    ),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show details and tracebacks.")]


def results_location(value: str | None) -> str:
    """Where the store lives: the flag, else $QUANTLAB_RESULTS, else ./results."""
    return value or os.environ.get("QUANTLAB_RESULTS") or DEFAULT_RESULTS


def split_list(value: str | None) -> list[str]:
    """Split a comma-separated option value, dropping empty items."""
    if not value:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def _strict(value: Any) -> Any:
    """Plain JSON data with NaN/±inf numbers as strings (what harness.numerics.jsonable
    writes, without importing numpy here)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return value


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout (the only thing on stdout with --json); passwords
    and tokens in it are masked (:mod:`quantlab.harness.redact`). Strict JSON: a NaN or ±inf number
    is written as the string ``"nan"``/``"inf"``/``"-inf"``, never as a bare token."""
    data = _strict(json.loads(json.dumps(data, default=str)))
    sys.stdout.write(json.dumps(redact_data(data), indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one error line on stderr and return the Exit to raise (the message is text:
    square brackets in it are printed, not read as markup)."""
    err_console.print(f"[bold red]error:[/] {escape(redact_text(message))}", soft_wrap=True)
    return typer.Exit(code)


def warn(message: str) -> None:
    """Print one warning line on stderr (the message is text, as in :func:`fail`)."""
    err_console.print(f"[yellow]warning:[/] {escape(redact_text(message))}", soft_wrap=True)


F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn QuantlabError into one clear stderr line and exit 2 (traceback with --verbose).

    Decorate every command with it. Device faults and job failures that reach the
    command are also reported in one line (exit 1); other exceptions are bugs and
    keep their traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except QuantlabError as exc:
            if kwargs.get("verbose") or os.environ.get("QUANTLAB_VERBOSE"):
                err_console.print(redact_text("".join(traceback.format_exception(exc))),
                                  markup=False, highlight=False, soft_wrap=True)
            raise fail(exc.one_line(), 2 if isinstance(exc, UserError) else 1) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def existing_path(path: str, what: str = "file") -> Path:
    """The path if it exists, else a UserError naming it."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{path}: no such {what}", hint="check the path")
    return p
