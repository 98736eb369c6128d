"""harness/cli/main.py: the command → module table behind lazy registration matches what
the modules register, and a command run alone answers as it does in the full app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.main import get_command_name

from quantlab.harness.cli import main

ROOT = Path(__file__).resolve().parents[1]

LAZY = """
import json, sys
from quantlab.harness.cli.main import main
sys.argv = ["quantlab", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
print("\\n" + json.dumps(sorted(m for m in sys.modules if m.startswith("quantlab.harness.cli."))))
sys.exit(code)
"""
"""Run main() on argv as ``quantlab`` does; the last line lists the command modules loaded."""

FULL = """
import sys
from quantlab.harness.cli.main import app
app(sys.argv[1:], prog_name="quantlab")
"""
"""The same command line through the app with every command registered."""


def quantlab(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "100", "QUANTLAB_RESULTS": str(ROOT / "no-such-results")}
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, check=False)


def test_command_table_is_what_the_modules_register() -> None:
    main.register_commands()
    assert set(main._registered) == set(main.COMMAND_MODULES)
    registered: dict[str, str] = {}
    for module, (commands, groups) in main._registered.items():
        for info in commands:
            assert info.callback is not None
            name = info.name or get_command_name(info.callback.__name__)
            assert name not in registered, f"{name} registered twice"
            registered[name] = module
        for group in groups:
            assert isinstance(group.name, str), f"{module}: a group without a name"
            registered[group.name] = module
    assert registered == main.COMMANDS
    assert main.register_commands() is main.app  # each module registers once


def test_commands_keep_their_order_whatever_registers_first() -> None:
    late = quantlab("import json\nfrom quantlab.harness.cli import main\n"
                    "main.register_commands(['quantlab.harness.cli.report',"
                    " 'quantlab.harness.cli.db'])\n"
                    "app = main.register_commands()\n"
                    "print(json.dumps([[c.name, c.callback.__name__] for c in "
                    "app.registered_commands] + [g.name for g in app.registered_groups]))")
    app = main.register_commands()
    assert json.loads(late.stdout) == [[c.name, c.callback.__name__ if c.callback else None]
                                       for c in app.registered_commands] + \
        [g.name for g in app.registered_groups]
    order = [main.COMMANDS[info.name or get_command_name(info.callback.__name__)]
             for info in app.registered_commands if info.callback is not None]
    assert order == sorted(order, key=main.COMMAND_MODULES.index)


def test_a_command_loads_only_its_module_and_answers_as_in_the_full_app() -> None:
    # devices: a module with one command (the app must stay a group); db: a group;
    # show: a module with two commands
    for argv, module in ((["devices", "--help"], "quantlab.harness.cli.devices"),
                         (["db", "--help"], "quantlab.harness.cli.db"),
                         (["show", "--help"], "quantlab.harness.cli.runs")):
        lazy = quantlab(LAZY, *argv)
        full = quantlab(FULL, *argv)
        assert lazy.returncode == 0, lazy.stderr
        text, _, loaded = lazy.stdout.rstrip("\n").rpartition("\n")
        commands = [m for m in json.loads(loaded) if m != "quantlab.harness.cli.main"]
        assert module in commands
        assert not set(commands) & set(main.COMMAND_MODULES) - {module}, commands
        assert text.rstrip("\n") == full.stdout.rstrip("\n")
        assert f"Usage: quantlab {argv[0]} " in text


def test_help_and_typos_load_every_command() -> None:
    lazy = quantlab(LAZY, "shw")
    assert lazy.returncode == 2
    assert "Did you mean 'show'?" in lazy.stderr
    assert set(main.COMMAND_MODULES) <= set(json.loads(lazy.stdout.splitlines()[-1]))
    lazy = quantlab(LAZY, "--help")
    full = quantlab(FULL, "--help")
    text = lazy.stdout.rstrip("\n").rpartition("\n")[0]
    assert text.rstrip("\n") == full.stdout.rstrip("\n")
    assert all(f" {name} " in text for name in main.COMMANDS)
