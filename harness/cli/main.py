"""Entry point of the `quantlab` command: builds the typer app from the command modules.

Command modules import nothing heavy at module level (TensorFlow, LiteRT, Ray
load inside the commands that need them), so `quantlab --help` and
`quantlab devices` answer at once. :func:`main` registers only the module that
defines the command named on the command line (:data:`COMMANDS`); ``quantlab
--help``, a bare ``quantlab`` and an unknown command load every module. ``app``
(``from quantlab.harness.cli.main import app``, as tests do) is the app with every command.
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
    "quantlab.harness.cli.devices",
    "quantlab.harness.cli.bench",
    "quantlab.harness.cli.runs",
    "quantlab.harness.cli.ab",
    "quantlab.harness.cli.lab",
    "quantlab.harness.cli.db",
    "quantlab.harness.cli.android",
    "quantlab.harness.cli.ios",
    "quantlab.harness.cli.gateway",
    "quantlab.harness.cli.quantize",
    "quantlab.harness.cli.autoquant",
    "quantlab.harness.cli.report",
    "quantlab.harness.cli.history",
    "quantlab.harness.cli.delegates",
    "quantlab.harness.cli.culprit",
    "quantlab.harness.cli.explore",
    "quantlab.harness.cli.raw",
    "quantlab.harness.cli.serve",
    "quantlab.harness.cli.demo",
]
"""Each module has ``register(app)``. Adding a group of commands is one line here and
one in :data:`COMMANDS` per command it adds (tests/test_cli_main.py checks both)."""

COMMANDS = {
    "devices": "quantlab.harness.cli.devices",
    "plan": "quantlab.harness.cli.bench",
    "bench": "quantlab.harness.cli.bench",
    "runs": "quantlab.harness.cli.runs",
    "show": "quantlab.harness.cli.runs",
    "ab": "quantlab.harness.cli.ab",
    "lab": "quantlab.harness.cli.lab",
    "db": "quantlab.harness.cli.db",
    "android": "quantlab.harness.cli.android",
    "import": "quantlab.harness.cli.android",
    "ios": "quantlab.harness.cli.ios",
    "gateway": "quantlab.harness.cli.gateway",
    "quantize": "quantlab.harness.cli.quantize",
    "evaluate": "quantlab.harness.cli.quantize",
    "sensitivity": "quantlab.harness.cli.quantize",
    "autoquant": "quantlab.harness.cli.autoquant",
    "report": "quantlab.harness.cli.report",
    "compare": "quantlab.harness.cli.report",
    "recommend": "quantlab.harness.cli.report",
    "export": "quantlab.harness.cli.report",
    "history": "quantlab.harness.cli.history",
    "delegates": "quantlab.harness.cli.delegates",
    "diff": "quantlab.harness.cli.delegates",
    "compile": "quantlab.harness.cli.delegates",
    "culprit": "quantlab.harness.cli.culprit",
    "explore": "quantlab.harness.cli.explore",
    "gc": "quantlab.harness.cli.raw",
    "serve": "quantlab.harness.cli.serve",
    "demo": "quantlab.harness.cli.demo",
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
