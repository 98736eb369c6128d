"""Entry point of the `quantlab` command: builds the typer app from the command modules.

Command modules import nothing heavy at module level (TensorFlow, LiteRT, Ray
load inside the commands that need them), so `quantlab --help` and
`quantlab devices` answer at once.
"""

from __future__ import annotations

import importlib
import os

import typer

COMMAND_MODULES = [
    "harness.cli.devices",
    "harness.cli.bench",
    "harness.cli.runs",
    "harness.cli.ab",
    "harness.cli.lab",
    "harness.cli.db",
    "harness.cli.android",
    "harness.cli.ios",
    "harness.cli.gateway",
    "harness.cli.quantize",
    "harness.cli.autoquant",
    "harness.cli.report",
    "harness.cli.history",
    "harness.cli.delegates",
    "harness.cli.raw",
    "harness.cli.demo",
]
"""Each module has ``register(app)``. Adding a group of commands is one line here."""

app = typer.Typer(
    name="quantlab",
    help="Quantize models, check their accuracy, and benchmark them on phones "
    "(or on the host simulator when none is attached).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)



def short_help(doc: str | None) -> str | None:
    """A command's line in ``quantlab --help``: its docstring's first sentence, on one line
    (the whole docstring stays in ``quantlab COMMAND --help``)."""
    if not doc:
        return None
    text = " ".join(doc.strip().split("\n\n")[0].split())
    end = text.find(". ")
    return text[: end + 1] if end > 0 else text


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)
for _info in app.registered_commands:
    if _info.short_help is None and _info.callback is not None:
        _info.short_help = short_help(_info.callback.__doc__)


def main() -> None:
    """Run the CLI (console script ``quantlab``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    app()


if __name__ == "__main__":
    main()
