"""Quantization: variants of a model by named scheme, their accuracy, and layer sensitivity.

Data flow: ``data`` (calibration/evaluation arrays) → ``variants.quantize``
(one worker process runs the converters: ``tflite_tf``, ``tflite_aeq``,
``coreml``) → ``manifest.json`` → ``evaluate`` (host LiteRT, gate) and
``sensitivity`` (layer ranking, mixed precision).
"""
