"""``python -m quantlab``: the ``quantlab`` command."""

from quantlab.harness.cli.main import main

main()
