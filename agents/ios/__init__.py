"""iPhones (kind ``ios``) over usbmux and pymobiledevice3, measured by the BenchRunner app.

* :mod:`.agent`: :class:`~quantlab.agents.ios.agent.IosAgent` (registered in
  :mod:`quantlab.harness.kinds`): discover, health, supports, run;
* :mod:`.interfaces`: the ``IosBackend``/``IosSession`` seam in front of pymobiledevice3 and
  ``QUANTLAB_IOS_BACKEND``;
* :mod:`.pmd3`: the pymobiledevice3 backend;
* :mod:`.errors`: what each pymobiledevice3 error means to the user;
* :mod:`.numerics`: input files to the app, its outputs back, compared with the host's float
  reference (:mod:`quantlab.agents.litert.reference`).

The app itself, its job/result schemas and their Python codec are :mod:`quantlab.ios_runner`.
"""
