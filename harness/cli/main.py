"""Entry point of the `quantlab` command: builds the typer app from the command modules.

Command modules import nothing heavy at module level (TensorFlow, LiteRT, Ray
load inside the commands that need them), so `quantlab --help` and
`quantlab devices` answer at once. :func:`main` registers only the module that
defines the command named on the command line (:data:`COMMANDS`); ``quantlab
--help``, a bare ``quantlab`` and an unknown command load every module. ``app``
(``from harness.cli.main import app``, as tests do) is the app with every command.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from typer.models import CommandInfo, TyperInfo

    app: typer.Typer
    """The app with every command registered (built on first use)."""

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
"""Each module has ``register(app)``. Adding a group of commands is one line here and
one in :data:`COMMANDS` per command it adds (tests/test_cli_main.py checks both)."""

COMMANDS = {
    "devices": "harness.cli.devices",
    "plan": "harness.cli.bench",
    "bench": "harness.cli.bench",
    "runs": "harness.cli.runs",
    "show": "harness.cli.runs",
    "ab": "harness.cli.ab",
    "lab": "harness.cli.lab",
    "db": "harness.cli.db",
    "android": "harness.cli.android",
    "import": "harness.cli.android",
    "ios": "harness.cli.ios",
    "gateway": "harness.cli.gateway",
    "quantize": "harness.cli.quantize",
    "evaluate": "harness.cli.quantize",
    "sensitivity": "harness.cli.quantize",
    "autoquant": "harness.cli.autoquant",
    "report": "harness.cli.report",
    "compare": "harness.cli.report",
    "recommend": "harness.cli.report",
    "export": "harness.cli.report",
    "history": "harness.cli.history",
    "delegates": "harness.cli.delegates",
    "diff": "harness.cli.delegates",
    "compile": "harness.cli.delegates",
    "gc": "harness.cli.raw",
    "demo": "harness.cli.demo",
}
"""The module that registers each top-level command or group, so that ``quantlab show``
imports and builds only ``show`` and its siblings (start-up time, issue 14)."""

SHORT_LIVED = frozenset({"runs", "show", "devices"})
"""Read-only commands that finish in a moment: they run with the cyclic garbage collector
off, which takes about a tenth off their start-up (the imports they need, SQLAlchemy
above all, build many objects and no garbage cycles); others keep it on."""

_app = typer.Typer(
    name="quantlab",
    help="Quantize models, check their accuracy, and benchmark them on phones "
    "(or on the host simulator when none is attached).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@_app.callback()
def _group() -> None:
    # a callback keeps quantlab a command group when main() registers one module with a
    # single command (typer makes a lone command the whole app); it does nothing
    pass


_registered: dict[str, tuple[list[CommandInfo], list[TyperInfo]]] = {}
"""What each module registered so far (its commands, its groups)."""


def short_help(doc: str | None) -> str | None:
    """A command's line in ``quantlab --help``: its docstring's first sentence, on one line
    (the whole docstring stays in ``quantlab COMMAND --help``)."""
    if not doc:
        return None
    text = " ".join(doc.strip().split("\n\n")[0].split())
    end = text.find(". ")
    return text[: end + 1] if end > 0 else text


def register_commands(modules: list[str] | None = None) -> typer.Typer:
    """Register ``modules`` (default: every command module) into the app, each once, and
    return the app; commands keep the order of :data:`COMMAND_MODULES` whatever order the
    modules were registered in."""
    for name in COMMAND_MODULES if modules is None else modules:
        if name in _registered:
            continue
        commands, groups = len(_app.registered_commands), len(_app.registered_groups)
        importlib.import_module(name).register(_app)
        _registered[name] = (_app.registered_commands[commands:],
                             _app.registered_groups[groups:])
        for info in _registered[name][0]:
            if info.short_help is None and info.callback is not None:
                info.short_help = short_help(info.callback.__doc__)
    order = [m for m in COMMAND_MODULES if m in _registered]
    _app.registered_commands = [c for m in order for c in _registered[m][0]]
    _app.registered_groups = [g for m in order for g in _registered[m][1]]
    return _app


def modules_for(args: list[str]) -> list[str] | None:
    """The command modules a command line needs: the one registering its first word when
    that names a command, else None (every module: --help, a bare ``quantlab``, a typo
    that ``Did you mean …`` should answer)."""
    module = COMMANDS.get(args[0]) if args else None
    return None if module is None else [module]


if not TYPE_CHECKING:  # mypy knows ``app`` from its declaration above, nothing else

    def __getattr__(name: str) -> typer.Typer:
        if name == "app":
            return register_commands()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Run the CLI (console script ``quantlab``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = sys.argv[1:]
    if args and args[0] in SHORT_LIVED:
        gc.disable()
    register_commands(modules_for(args))()


if __name__ == "__main__":
    main()
