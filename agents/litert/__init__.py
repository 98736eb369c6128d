"""LiteRT on a CPU quantlab can reach: the runner package and its host-side glue.

* :mod:`.runner`: the self-contained runner (one process per repeat; stdlib, numpy and
  ai_edge_litert only), run on this host by the simulator and the host reference, and
  shipped whole to Linux gateways;
* :mod:`.launch`: starting a runner process on this host, under quantlab's process registry;
* :mod:`.results`: the runner's per-repeat results → :class:`~quantlab.harness.records.RawResult`,
  and its numerics outputs compared on the host;
* :mod:`.reference`: the host's float reference for a phone's numerics check (fixed input
  files and the float model's outputs on them).
"""
