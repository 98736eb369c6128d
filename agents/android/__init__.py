"""Android phones (kind ``android``) through a real adb server, measured with benchmark_model
or benchmark_litert_model.

* :mod:`.agent`: :class:`~quantlab.agents.android.agent.AndroidAgent` (registered in
  :mod:`quantlab.harness.kinds`): discover, health, supports, run;
* :mod:`.faults`: adb errors → retried faults or unusable devices;
* :mod:`.numerics`: fixed inputs pushed, outputs pulled and compared with the host's float
  reference (:mod:`quantlab.agents.litert.reference`);
* :mod:`.energy`: the energy launch with its on-device sampler;
* :mod:`.npu_compile`: ``quantlab compile``, a variant compiled ahead of time for one SoC's
  NPU (the ``litert-npu`` delegate);
* :mod:`.log_import`: ``quantlab import``, a hand-run tool log read into a job and its result.

The on-device side (provisioning, command lines, output parsers) is
:mod:`quantlab.android_runner`, whose ``command.DELEGATES`` is the one list of Android
delegates.
"""
