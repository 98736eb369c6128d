"""A small object detector trained in seconds on generated shapes (the ground truth is known).

Images are 64×64 with one to three shapes (square, circle, triangle) on a noisy background;
the detector is a tiny CNN with one SSD-style anchor per cell of an 8×8 grid. It is exported
as a SavedModel in either of the two output layouts quantlab decodes:

- ``ssd``: the standard TFLite detection outputs (boxes, classes, scores, count) made by the
  ``TFLite_Detection_PostProcess`` custom op, as TF Object Detection API exports give them;
- ``yolo``: one raw output ``[1, N, 4+C]`` (cx, cy, w, h normalized, then class scores),
  decoded and NMS'd on the host.

Everything is generated: no download. TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

SIZE = 64
GRID = 8
CLASSES = ("square", "circle", "triangle")
ANCHOR = 0.25  # anchor height and width (normalized)
SCALES = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w: the SSD box-encoding scales
MAX_DETECTIONS = 20


def anchors() -> np.ndarray:
    """(GRID², 4) anchors as (ycenter, xcenter, height, width), row by row."""
    c = (np.arange(GRID) + 0.5) / GRID
    yy, xx = np.meshgrid(c, c, indexing="ij")
    n = GRID * GRID
    return np.stack([yy.ravel(), xx.ravel(), np.full(n, ANCHOR), np.full(n, ANCHOR)],
                    axis=1).astype(np.float32)


def make_shapes(n: int, seed: int = 0, size: int = SIZE
                ) -> tuple[np.ndarray, list[list[tuple[int, float, float, float, float]]]]:
    """``n`` images (n, size, size, 3) in [0, 1] and per image its objects
    (class, ymin, xmin, ymax, xmax normalized); objects sit in distinct grid cells."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, size, size, 3)) * 0.25).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    objects: list[list[tuple[int, float, float, float, float]]] = []
    for i in range(n):
        placed: list[tuple[int, float, float, float, float]] = []
        for _ in range(int(rng.integers(1, 4))):
            for _attempt in range(20):
                side = rng.uniform(0.16, 0.4) * size
                cy, cx = rng.uniform(side / 2, size - side / 2, 2)
                box = ((cy - side / 2) / size, (cx - side / 2) / size,
                       (cy + side / 2) / size, (cx + side / 2) / size)
                cell = (int(cy / size * GRID), int(cx / size * GRID))
                if all(_cell(p) != cell and _iou(box, p[1:]) == 0 for p in placed):
                    break
            else:
                continue
            cls = int(rng.integers(len(CLASSES)))
            r = side / 2
            if cls == 0:
                mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
            elif cls == 1:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            else:  # apex up: width grows from 0 at the top to the full side at the bottom
                t = (yy - (cy - r)) / (2 * r)
                mask = (t >= 0) & (t <= 1) & (abs(xx - cx) <= t * r)
            x[i][mask] = rng.uniform(0.55, 1.0, 3).astype(np.float32)
            placed.append((cls, *box))
        objects.append(placed)
    return x, objects


def _cell(obj: tuple[int, float, float, float, float]) -> tuple[int, int]:
    return int((obj[1] + obj[3]) / 2 * GRID), int((obj[2] + obj[4]) / 2 * GRID)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return h * w


def coco_annotations(objects: list[list[tuple[int, float, float, float, float]]],
                     size: int = SIZE) -> dict[str, Any]:
    """COCO annotations for the generated images (images in order; category i+1 = class i)."""
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for i, objs in enumerate(objects):
        images.append({"id": i + 1, "file_name": f"shape_{i:05d}.png", "width": size,
                       "height": size})
        for cls, y0, x0, y1, x1 in objs:
            w, h = (x1 - x0) * size, (y1 - y0) * size
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cls + 1,
                         "bbox": [x0 * size, y0 * size, w, h], "area": w * h, "iscrowd": 0})
    return {"images": images, "annotations": anns,
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]}


def targets(objects: list[list[tuple[int, float, float, float, float]]]) -> np.ndarray:
    """(n, GRID², 4 + C): SSD box encodings and one-hot classes of the cell holding each object."""
    a = anchors()
    t = np.zeros((len(objects), GRID * GRID, 4 + len(CLASSES)), np.float32)
    for i, objs in enumerate(objects):
        for cls, y0, x0, y1, x1 in objs:
            r, c = _cell((cls, y0, x0, y1, x1))
            k = r * GRID + c
            cy, cx, h, w = (y0 + y1) / 2, (x0 + x1) / 2, y1 - y0, x1 - x0
            t[i, k, :4] = [SCALES[0] * (cy - a[k, 0]) / a[k, 2],
                           SCALES[1] * (cx - a[k, 1]) / a[k, 3],
                           SCALES[2] * np.log(h / a[k, 2]), SCALES[3] * np.log(w / a[k, 3])]
            t[i, k, 4 + cls] = 1.0
    return t


def _loss(y_true: Any, y_pred: Any) -> Any:
    from keras import ops

    cls_true, cls_logit = y_true[..., 4:], y_pred[..., 4:]
    positive = ops.max(cls_true, axis=-1)
    p = ops.sigmoid(cls_logit)
    bce = -(cls_true * ops.log(p + 1e-6) + (1 - cls_true) * ops.log(1 - p + 1e-6))
    weight = 1.0 + 4.0 * cls_true  # few cells hold objects
    cls_loss = ops.mean(ops.sum(bce * weight, axis=-1))
    err = ops.abs(y_true[..., :4] - y_pred[..., :4])
    huber = ops.where(err < 1.0, 0.5 * err * err, err - 0.5)
    box_loss = ops.sum(ops.sum(huber, axis=-1) * positive) / (ops.sum(positive) + 1.0)
    return cls_loss + 0.5 * box_loss


def train(n_train: int = 2000, epochs: int = 14, seed: int = 0) -> Any:
    """The trained raw-head Keras model: (GRID², 4 + C) box encodings and class logits."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    x, objects = make_shapes(n_train, seed=seed + 1)
    y = targets(objects)
    inp = keras.Input((SIZE, SIZE, 3))
    h = inp
    for filters, stride in ((16, 2), (32, 2), (48, 2), (64, 1)):
        h = layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(h)
    h = layers.Conv2D(4 + len(CLASSES), 1)(h)
    out = layers.Reshape((GRID * GRID, 4 + len(CLASSES)))(h)
    model = keras.Model(inp, out, name="shapes_detector")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=_loss)
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return model


def _postprocess_signature() -> str:
    """The ``experimental_implements`` text that makes the converter emit
    TFLite_Detection_PostProcess (attributes as the TFLite kernel reads them)."""
    attrs = {"max_detections": ("i", MAX_DETECTIONS), "max_classes_per_detection": ("i", 1),
             "detections_per_class": ("i", MAX_DETECTIONS), "use_regular_nms": ("b", "false"),
             "nms_score_threshold": ("f", 0.01), "nms_iou_threshold": ("f", 0.5),
             "y_scale": ("f", SCALES[0]), "x_scale": ("f", SCALES[1]),
             "h_scale": ("f", SCALES[2]), "w_scale": ("f", SCALES[3]),
             "num_classes": ("i", len(CLASSES))}
    parts = [f'attr {{ key: "{k}" value {{ {t}: {v} }} }}' for k, (t, v) in attrs.items()]
    return 'name: "TFLite_Detection_PostProcess" ' + " ".join(parts)


def export(model: Any, path: Path, style: str) -> Path:
    """Save the detector as a SavedModel with ``ssd`` or ``yolo`` outputs (see the module)."""
    import tensorflow as tf

    anchor_t = tf.constant(anchors())
    scales = tf.constant(SCALES)

    @tf.function(experimental_implements=_postprocess_signature())
    def postprocess(boxes: Any, scores: Any, anchor: Any) -> Any:
        # the converter replaces this body with the TFLite op; placeholders of the right rank
        return (tf.zeros([1, MAX_DETECTIONS, 4]), tf.zeros([1, MAX_DETECTIONS]),
                tf.zeros([1, MAX_DETECTIONS]), tf.zeros([1]))

    # weights as constants: a SavedModel without variables converts and calibrates cleanly
    convs = [(tf.constant(layer.kernel.numpy()), tf.constant(layer.bias.numpy()),
              layer.strides[0], layer.activation.__name__ == "relu")
             for layer in model.layers if hasattr(layer, "kernel")]

    class Detector(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32)])
        def serve(self, images: Any) -> Any:
            h = images
            for kernel, bias, stride, relu in convs:
                h = tf.nn.conv2d(h, kernel, stride, "SAME") + bias
                h = tf.nn.relu(h) if relu else h
            raw = tf.reshape(h, [1, GRID * GRID, 4 + len(CLASSES)])
            enc, scores = raw[..., :4], tf.sigmoid(raw[..., 4:])
            if style == "ssd":
                background = tf.zeros_like(scores[..., :1])
                b, c, s, n = postprocess(enc, tf.concat([background, scores], -1), anchor_t)
                return {"detection_boxes": b, "detection_classes": c, "detection_scores": s,
                        "num_detections": n}
            cy = enc[..., 0] / scales[0] * anchor_t[:, 2] + anchor_t[:, 0]
            cx = enc[..., 1] / scales[1] * anchor_t[:, 3] + anchor_t[:, 1]
            h = tf.exp(enc[..., 2] / scales[2]) * anchor_t[:, 2]
            w = tf.exp(enc[..., 3] / scales[3]) * anchor_t[:, 3]
            return {"output_0": tf.concat([tf.stack([cx, cy, w, h], -1), scores], -1)}

    module = Detector()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def build_detector(out_dir: str | os.PathLike[str], *, styles: tuple[str, ...] = ("ssd",),
                   n_train: int = 2000, n_eval: int = 200, epochs: int = 14, seed: int = 0
                   ) -> dict[str, Path]:
    """Train the detector and write ``out_dir``: one SavedModel per style
    (``detector-ssd``/``detector-yolo``), ``eval.npz`` (x) and ``eval-coco.json`` (its boxes),
    ``calib.npz`` (x). Returns those paths by name (``ssd``, ``yolo``, ``eval``, ``labels``,
    ``calib``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = train(n_train, epochs, seed)
    paths: dict[str, Path] = {}
    for style in styles:
        paths[style] = export(model, out / f"detector-{style}", style)
    x, objects = make_shapes(n_eval, seed=seed + 2)
    np.savez(out / "eval.npz", x=x)
    (out / "eval-coco.json").write_text(json.dumps(coco_annotations(objects)))
    calib, _ = make_shapes(200, seed=seed + 3)
    np.savez(out / "calib.npz", x=calib)
    paths.update(eval=out / "eval.npz", labels=out / "eval-coco.json", calib=out / "calib.npz")
    return paths
