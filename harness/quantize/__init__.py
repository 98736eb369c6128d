"""Quantization: variants of a model by named scheme, their accuracy, and layer sensitivity.

Data flow: a ``requests.QuantizeRequest`` (data from ``data``: calibration/evaluation
arrays) → ``variants.quantize`` (a worker process makes each scheme with the converter its
recipe names in ``converters.CONVERTERS``: ``tflite_tf``, ``tf_calibrated`` (the int8
family from one cached calibration, ``calibrations``), ``tflite_aeq``, ``mixed``,
``coreml``, ``qat``) → ``manifest.json`` → ``evaluate`` (host LiteRT, the tasks of
``quantlab.harness.tasks``, the gate; an ``evaluation.Evaluation``) and ``sensitivity``
(layer ranking, mixed precision).
"""
