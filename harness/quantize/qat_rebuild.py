"""A Keras 3 model rebuilt as a tf-keras model (layer configs + weights) for tfmot.

tfmot wraps tf-keras (legacy Keras 2) models only. A Keras 3 ``.keras``/``.h5``
file is rebuilt layer by layer; settings tf-keras does not know are dropped and
listed, layers it cannot rebuild are named, and the rebuild must give the
source's outputs. Runs in the qat process (:mod:`quantlab.harness.quantize.qat_train`).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from quantlab.harness.quantize.qat import QatError

CHECK_SAMPLES = 32
"""Samples compared between the source model and its tf-keras rebuild."""
REBUILD_TOLERANCE = 1e-3
"""Largest relative difference between source and rebuilt outputs that counts as the same model."""

_KERAS_SERIAL_KEYS = {"module", "class_name", "config", "registered_name"}


def _plain(value: Any) -> Any:
    """A Keras 3 config value in tf-keras terms (dtype policies → names, serialized objects →
    ``{"class_name", "config"}``), recursively."""
    if isinstance(value, dict):
        if value.get("class_name") == "DTypePolicy" and isinstance(value.get("config"), dict):
            return value["config"].get("name", "float32")
        if "class_name" in value and set(value) <= _KERAS_SERIAL_KEYS:
            return {"class_name": value["class_name"], "config": _plain(value.get("config", {}))}
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _layer_config(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    cfg = _plain(config)
    for key in list(cfg):
        if key.endswith("_initializer"):  # weights are copied afterwards
            cfg[key] = "zeros"
    if class_name == "InputLayer":
        if "batch_shape" in cfg:
            cfg["batch_input_shape"] = cfg.pop("batch_shape")
        cfg.pop("optional", None)
    return cfg


_UNRECOGNIZED = (
    re.compile(r"Unrecognized keyword arguments[^\[]*\[([^\]]*)\]"),
    re.compile(r"Keyword argument not understood:'?,\s*'([^']+)'"),
    re.compile(r"unexpected keyword argument '([^']+)'"),
)


def _unknown_keys(message: str) -> list[str]:
    for pattern in _UNRECOGNIZED:
        found = pattern.search(message)
        if found:
            return [k.strip(" '\"") for k in found.group(1).split(",")]
    return []


def _make_layer(class_name: str, config: dict[str, Any], dropped: list[str]) -> Any:
    """One tf-keras layer from a Keras 3 layer config; keys tf-keras does not know are dropped
    (and listed in ``dropped``) one retry at a time."""
    import tf_keras

    cls = getattr(tf_keras.layers, class_name, None)
    if cls is None:
        raise QatError(f"no tf-keras layer {class_name}")
    cfg = _layer_config(class_name, config)
    for _ in range(8):
        try:
            return cls.from_config(cfg)
        except (TypeError, ValueError) as exc:
            keys = [k for k in _unknown_keys(str(exc)) if k in cfg]
            if not keys:
                raise QatError(f"{class_name}: {str(exc).splitlines()[-1][:200]}") from None
            for k in keys:
                cfg.pop(k)
                dropped.append(f"{cfg.get('name', class_name)}.{k}")
    raise QatError(f"{class_name}: too many settings tf-keras does not know")


def _rebuild(config: dict[str, Any], class_name: str, failed: list[str],
             dropped: list[str]) -> Any:
    """A tf-keras Sequential/Functional model from a Keras 3 model config (no weights)."""
    import tf_keras

    layers_cfg = config.get("layers", [])

    def layer_of(entry: dict[str, Any]) -> Any:
        cls = entry["class_name"]
        if cls in ("Sequential", "Functional", "Model"):
            return _rebuild(entry["config"], cls, failed, dropped)
        try:
            return _make_layer(cls, entry["config"], dropped)
        except QatError as exc:
            failed.append(f"{entry['config'].get('name', cls)} ({exc})")
            return None

    if class_name == "Sequential":
        built = [layer_of(e) for e in layers_cfg]
        if any(b is None for b in built):
            return None
        inputs = [b for b, e in zip(built, layers_cfg, strict=True)
                  if e["class_name"] == "InputLayer"]
        rest = [b for b, e in zip(built, layers_cfg, strict=True)
                if e["class_name"] != "InputLayer"]
        model = tf_keras.Sequential(name=config.get("name"))
        if inputs:
            model.add(inputs[0])
        elif layers_cfg and layers_cfg[0].get("build_config"):
            shape = layers_cfg[0]["build_config"]["input_shape"]
            model.add(tf_keras.Input(batch_shape=tuple(shape)))
        for layer in rest:
            model.add(layer)
        return model
    # Functional: replay the graph node by node (the layer list is in topological order)
    tensors: dict[tuple[str, int, int], Any] = {}
    built_layers: dict[str, Any] = {}
    for entry in layers_cfg:
        name = entry.get("name") or entry["config"]["name"]
        layer = layer_of(entry)
        if layer is None:
            continue
        built_layers[name] = layer
        if entry["class_name"] == "InputLayer":
            cfg = _layer_config("InputLayer", entry["config"])
            shape = cfg.get("batch_input_shape") or [None]
            tensors[(name, 0, 0)] = tf_keras.Input(batch_shape=tuple(shape), name=name,
                                                   dtype=cfg.get("dtype"))
            continue
        for node_index, node in enumerate(entry.get("inbound_nodes", [])):
            def resolve(arg: Any) -> Any:
                if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
                    hist = arg["config"]["keras_history"]
                    return tensors[(hist[0], int(hist[1]), int(hist[2]))]
                if isinstance(arg, list):
                    return [resolve(a) for a in arg]
                return arg

            try:
                args = [resolve(a) for a in node.get("args", [])]
                kwargs = {k: resolve(v) for k, v in node.get("kwargs", {}).items()}
            except KeyError:
                continue  # an input came from a layer that could not be rebuilt
            out = layer(*args, **kwargs)
            outs = out if isinstance(out, list | tuple) else [out]
            for i, t in enumerate(outs):
                tensors[(name, node_index, i)] = t
    if failed:
        return None

    def endpoints(spec: Any) -> list[Any]:
        items = spec if spec and isinstance(spec[0], list) else [spec]
        return [tensors[(s[0], int(s[1]), int(s[2]))] for s in items]

    ins, outs = endpoints(config["input_layers"]), endpoints(config["output_layers"])
    return tf_keras.Model(ins if len(ins) > 1 else ins[0], outs if len(outs) > 1 else outs[0],
                          name=config.get("name"))


def rebuild_as_tf_keras(model: Any) -> tuple[Any, list[str]]:
    """A tf-keras copy of a Keras 3 model (layer configs + weights) and the settings dropped.

    Raises QatError naming the layers that cannot be rebuilt.
    """
    config = model.get_config()
    class_name = type(model).__name__
    if class_name not in ("Sequential", "Functional") and "layers" not in config:
        raise QatError(f"a subclassed Keras 3 model ({class_name}) has no layer graph to "
                       "rebuild as tf-keras")
    failed: list[str] = []
    dropped: list[str] = []
    rebuilt = _rebuild(config, "Sequential" if class_name == "Sequential" else "Functional",
                       failed, dropped)
    if rebuilt is None or failed:
        raise QatError("these layers cannot be rebuilt as tf-keras layers: " + "; ".join(failed))
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        try:
            rebuilt.get_layer(layer.name).set_weights(weights)
        except ValueError as exc:
            raise QatError(f"layer {layer.name}: its weights do not fit the tf-keras rebuild "
                           f"({str(exc).splitlines()[0][:160]})") from None
    return rebuilt, dropped


def _max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.max(np.abs(a))) or 1.0
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) / scale


def load_tf_keras(source: str, kind: str, sample: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """The source as a tf-keras model and how it was obtained; QatError when it cannot be.

    A rebuilt model must give the source's outputs on ``sample``.
    """
    import tf_keras

    if kind == "savedmodel":
        try:
            return tf_keras.models.load_model(source, compile=False), {"loaded": "tf-keras"}
        except Exception as exc:
            raise QatError(
                "the Keras model cannot be recovered from this SavedModel "
                f"({str(exc).strip().splitlines()[0][:160] if str(exc).strip() else exc!r}); "
                "it was not saved by tf.keras with its Keras metadata — pass the .keras/.h5 "
                "file it was made from") from None
    errors = []
    try:
        import keras

        source_model = keras.models.load_model(source, compile=False)
    except Exception as exc:
        errors.append(f"Keras 3: {str(exc).strip().splitlines()[0][:160] if str(exc) else exc}")
        source_model = None
    if source_model is None:
        try:
            return tf_keras.models.load_model(source, compile=False), {"loaded": "tf-keras"}
        except Exception as exc:
            errors.append(f"tf-keras: {str(exc).strip().splitlines()[0][:160]}")
            raise QatError("cannot be loaded as a Keras model (" + "; ".join(errors) + ")"
                           ) from None
    rebuilt, dropped = rebuild_as_tf_keras(source_model)
    x = sample[:CHECK_SAMPLES]
    diff = _max_rel_diff(np.asarray(source_model(x, training=False)),
                         np.asarray(rebuilt(x, training=False)))
    if diff > REBUILD_TOLERANCE:
        raise QatError(f"the tf-keras rebuild of the Keras 3 model gives different outputs "
                       f"(max relative difference {diff:.2g})")
    return rebuilt, {"loaded": "Keras 3, rebuilt as tf-keras (configs + weights)",
                     "dropped_settings": dropped, "rebuild_max_rel_diff": diff}
