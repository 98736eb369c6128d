"""The LiteRT runner: one process measures one process-level repeat of a job (or profiles
its ops, or runs its numerics check) with the LiteRT Python interpreter and writes a JSON
result.

``python -m <this package> JOB.json RESULT.json`` (:mod:`.worker` has the modes). The package
is self-contained: its modules import one another relatively and otherwise only the standard
library, numpy and ai_edge_litert, never quantlab. So the same files run on this host as
``quantlab.agents.litert.runner`` (the simulator, the host's float reference for phones) and
on a Linux gateway, which receives this folder as a package of its own (``litert_runner``,
pushed and hashed as one by :mod:`quantlab.agents.linux.session`) where quantlab is not
installed.

Modules: :mod:`.worker` (the entry point and its modes), :mod:`.runtime` (the interpreter,
the phase file, the job's errors), :mod:`.inputs` (random or ``--inputs`` arrays),
:mod:`.measure` (latency, memory, energy, placement; the per-op profile),
:mod:`.numerics` (fixed inputs through the model and the float reference),
:mod:`.outputs` (a set of inputs through the model, every output kept),
:mod:`.batching` (the batch a model runs at; the host's evaluation uses it too),
:mod:`.profiler` (the LiteRT C API's per-op profiler), :mod:`.op_types`,
:mod:`.op_coverage` and :mod:`.rapl` (RAPL package energy).
"""
