"""Core ML variants (ML program) through coremltools; works on Linux (prediction needs macOS).

Keras 3 models are converted from a ``tf.function`` concrete function (a
``model.export()`` SavedModel fails in coremltools). Imported only inside the
quantize worker process.
"""

from __future__ import annotations

import logging
from typing import Any


def _concrete_function(
    source: Any, kind: str, input_shape: tuple[int, ...], input_dtype: str
) -> Any:
    import tensorflow as tf

    shape = tuple(1 if (d is None or d < 0) else int(d) for d in input_shape)
    if kind == "savedmodel":
        loaded = tf.saved_model.load(source)
        sigs = getattr(loaded, "signatures", {})
        if "serving_default" not in sigs:
            raise ValueError("the SavedModel has no serving_default signature")
        fn = sigs["serving_default"]
        fn._quantlab_keep = loaded  # keep the loaded object alive with the function
        return fn
    model = source
    return tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec(shape, tf.as_dtype(input_dtype))
    )


def convert(
    source: Any,
    kind: str,
    settings: dict[str, Any],
    input_shape: tuple[int, ...],
    input_dtype: str,
    out_path: str,
) -> None:
    """Convert to an .mlpackage at ``out_path`` (fp16 ML program, optionally weight-compressed)."""
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    import coremltools as ct
    from coremltools.optimize import coreml as cto

    fn = _concrete_function(source, kind, input_shape, input_dtype)
    mlmodel = ct.convert(
        [fn],
        source="tensorflow",
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT16,
        minimum_deployment_target=ct.target.iOS17,
    )
    compress = settings.get("compress")
    if compress == "linear8":
        config = cto.OptimizationConfig(
            global_config=cto.OpLinearQuantizerConfig(
                mode="linear_symmetric", granularity="per_channel"
            )
        )
        mlmodel = cto.linear_quantize_weights(mlmodel, config)
    elif compress == "palettize4":
        config = cto.OptimizationConfig(
            global_config=cto.OpPalettizerConfig(mode="kmeans", nbits=4)
        )
        mlmodel = cto.palettize_weights(mlmodel, config)
    elif compress is not None:
        raise ValueError(f"unknown Core ML compression {compress!r}")
    mlmodel.save(out_path)
