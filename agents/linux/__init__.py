"""Linux gateways over SSH (kind ``linux``): Raspberry Pi, Jetson-class and industrial boxes
named in a hosts file, each the device ``ssh:NAME``, measured by the LiteRT runner
(:mod:`quantlab.agents.litert.runner`) run there with the gateway's own Python.

In the order a job meets them: :mod:`.hosts` (the hosts file), :mod:`.agent`
(:class:`~quantlab.agents.linux.agent.SshAgent`, registered in :mod:`quantlab.harness.kinds`),
:mod:`.session` (one connection: SFTP, probe, the content-addressed caches, the code shipped),
:mod:`.remote` (the stdlib-only helper that runs on the gateway), :mod:`.results` (its events →
``RawResult``) and :mod:`.provision` (``quantlab gateway provision``).
"""
