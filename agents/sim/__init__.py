"""The simulator: this host's CPU as a device (kind ``sim``), measured by the LiteRT runner.

:mod:`.agent` holds :class:`~quantlab.agents.sim.agent.SimAgent` (registered in
:mod:`quantlab.harness.kinds`); the runner itself and its host glue are shared with the SSH
gateways and live in :mod:`quantlab.agents.litert`.
"""
