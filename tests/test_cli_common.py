"""harness/cli/common.py: error and warning lines print the message as given — square
brackets in it are text, not rich markup (``pip install 'quantlab[serve]'``, a plan file's
``[gate]`` table)."""

from __future__ import annotations

import pytest
import typer

from quantlab.harness.cli.common import fail, handle_errors, warn
from quantlab.harness.errors import UserError


def test_error_and_warning_lines_keep_square_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    warn("nightly.toml: [gate] is set but no model is a variants folder; nothing evaluated")
    exit_ = fail("a [bold]word[/bold] and quantlab[lab]")
    assert exit_.exit_code == 2

    @handle_errors
    def serve() -> None:
        raise UserError("quantlab serve needs the web framework", hint="pip install "
                        "'quantlab[serve]'")

    with pytest.raises(typer.Exit):
        serve()
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "warning: nightly.toml: [gate] is set but no model is a variants folder; nothing "
        "evaluated",
        "error: a [bold]word[/bold] and quantlab[lab]",
        "error: quantlab serve needs the web framework: pip install 'quantlab[serve]'"]
