"""A lab of many hosts on Ray: the head, lab hosts that join it, security, and status.

* :mod:`quantlab.harness.lab.agent`: the controller's side, one Agent per device kind found in
  the lab (``bench --cluster``), forwarding to the devices' actors.
* :mod:`quantlab.harness.lab.actor`: the Ray actor shell around a device's ordinary agent on
  its lab host.
* :mod:`quantlab.harness.lab.security`: the token file every member shares (mode 0600) and
  optional mutual TLS, as the environment Ray reads.
* :mod:`quantlab.harness.lab.ray_processes`: ``ray start`` for the head (token authentication,
  health checks tuned so a crashed lab host is noticed in about four seconds) and for
  lab hosts; connecting this process as a driver.
* :mod:`quantlab.harness.lab.host`: ``quantlab lab join``: a Ray node offering one custom
  resource ``device:<lab id>`` per attached device, one named detached actor per
  device (:class:`quantlab.harness.lab.actor.DeviceActor`, ``max_restarts=-1``), re-scanning:
  a new device restarts this host's Ray node with the new resource set (jobs in flight
  here are retried by the controller), a removed device's actor is unregistered.
* :mod:`quantlab.harness.lab.status`: hosts, devices, their health and what each is doing.

Ray's facts behind this are in ``docs/lab.md``: resources can only be declared by
``ray start``; a token holder can run code on every host; Ray listens on all
interfaces; 127.0.0.1 is rewritten by Ray (use another loopback address in tests).
"""
