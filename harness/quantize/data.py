"""Calibration and evaluation data: .npz/.npy arrays or an image folder, checked against the model.

Everything here is plain numpy (and Pillow for images): no TensorFlow.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quantlab.harness.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_CALIB_SAMPLES = 200
MIN_CALIB_SAMPLES = 100


@dataclass(frozen=True)
class ImageOptions:
    """How an image folder becomes model input: (pixel * scale - mean) / std, resized."""

    image_size: tuple[int, int] | None = None  # (height, width); None: the model's input size
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channel_order: str = "rgb"  # rgb | bgr | gray
    layout: str = "nhwc"  # nhwc | nchw


@dataclass(frozen=True)
class Dataset:
    """Inputs (N, …) and optional labels (N,) or (N, k) loaded from one source."""

    x: np.ndarray
    y: np.ndarray | None
    source: str
    class_names: tuple[str, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, n: int | None, seed: int = 0) -> Dataset:
        """A reproducible random subset of ``n`` samples (all of them, shuffled, when n ≥ len)."""
        total = len(self)
        order = np.random.default_rng(seed).permutation(total)
        order = np.sort(order[: max(0, min(n, total))]) if n is not None else np.arange(total)
        y = self.y[order] if self.y is not None else None
        facts = {**self.facts, "samples": len(order), "of": total, "seed": seed}
        return Dataset(self.x[order], y, self.source, self.class_names, facts)


def load_data(
    path: str | Path,
    *,
    x_key: str = "x",
    y_key: str = "y",
    image: ImageOptions | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> Dataset:
    """Load arrays from a .npz/.npy file or an image folder ``DIR/<class>/*.{jpg,png}``.

    ``input_shape`` (the model's input shape, batch first, -1/None for free
    dims) is used to size images when ``image.image_size`` is not given.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(
            f"{path}: no such data file or folder", hint="pass a .npz, .npy or an image folder"
        )
    if p.is_dir():
        return _load_image_folder(p, image or ImageOptions(), input_shape)
    if p.suffix == ".npz":
        return _load_npz(p, x_key, y_key)
    if p.suffix == ".npy":
        try:
            x = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise DataError(f"{path}: not a readable .npy file ({exc})") from None
        return Dataset(_numeric(x, str(p), "inputs"), None, str(p), facts={"format": "npy"})
    raise DataError(
        f"{path}: unsupported data format",
        hint="use .npz, .npy or an image folder DIR/<class>/*.jpg",
    )


def _load_npz(p: Path, x_key: str, y_key: str) -> Dataset:
    try:
        arrays = _npz_arrays(p)
    except ValueError as exc:
        raise DataError(
            f"{p}: holds non-numeric (object) arrays ({exc})", hint="save plain numeric arrays"
        ) from None
    except Exception as exc:
        raise DataError(f"{p}: not a readable .npz file ({exc})") from None
    if x_key not in arrays:
        raise DataError(
            f"{p}: no array named {x_key!r} (has {sorted(arrays)})", hint="choose it with --x-key"
        )
    x = _numeric(arrays[x_key], str(p), f"inputs {x_key!r}")
    y = None
    if y_key in arrays:
        y = _labels(arrays[y_key], str(p), y_key)
        if len(y) != len(x):
            raise DataError(f"{p}: {len(x)} inputs but {len(y)} labels in {y_key!r}")
    return Dataset(
        x,
        y,
        str(p),
        facts={"format": "npz", "x_key": x_key, "y_key": y_key if y is not None else None},
    )


def _npz_arrays(p: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz. Members stored uncompressed (``np.savez``) are read straight
    from their offset in the file (``np.fromfile``) instead of streamed through zipfile, whose
    read and CRC pass take twice as long on a large file; a compressed member, or one whose
    size does not add up, is read through ``np.load``."""
    import zipfile

    arrays: dict[str, np.ndarray] = {}
    with np.load(p, allow_pickle=False) as z, open(p, "rb") as f:
        infos = {info.filename: info for info in z.zip.infolist()}
        for key in z.files:
            info = infos.get(f"{key}.npy", infos.get(key))
            stored = info is not None and info.compress_type == zipfile.ZIP_STORED \
                and not info.flag_bits & 1
            direct = _stored_npy(f, info) if stored else None
            arrays[key] = z[key] if direct is None else direct
    return arrays


def _stored_npy(f: Any, info: Any) -> np.ndarray | None:
    """One uncompressed .npz member read at its offset in the open file (None: read it the
    ordinary way)."""
    import struct

    f.seek(info.header_offset)
    local = f.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        return None
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    f.seek(start)
    arr = np.lib.format.read_array(f, allow_pickle=False)
    return np.asarray(arr) if f.tell() - start == info.file_size else None


def _numeric(a: np.ndarray, path: str, what: str) -> np.ndarray:
    if a.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: {what} have dtype {a.dtype}, not numbers", hint="store numeric arrays"
        )
    if a.ndim < 1 or a.shape[0] == 0:
        raise DataError(f"{path}: {what} are empty (shape {a.shape})")
    return a


def _labels(a: np.ndarray, path: str, key: str) -> np.ndarray:
    if a.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: labels {key!r} have dtype {a.dtype}, not numbers",
            hint="store class indices (int) or regression targets (float)",
        )
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise DataError(f"{path}: labels {key!r} contain NaN or Inf")
    return a


def _load_image_folder(
    root: Path, opts: ImageOptions, input_shape: tuple[int, ...] | None
) -> Dataset:
    from PIL import Image

    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    files: list[tuple[Path, int]] = []
    for idx, name in enumerate(classes):
        files += [
            (f, idx) for f in sorted((root / name).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES
        ]
    if not files:
        raise DataError(
            f"{root}: no images found", hint="lay images out as DIR/<class>/*.jpg or *.png"
        )
    size = opts.image_size or _hw_from_shape(input_shape, opts.layout)
    if size is None:
        raise DataError(f"{root}: image size unknown", hint="pass --image-size HxW")
    mode = "L" if opts.channel_order == "gray" else "RGB"
    images = []
    for f, _ in files:
        try:
            with Image.open(f) as opened:
                resized = opened.convert(mode).resize((size[1], size[0]), Image.Resampling.BILINEAR)
                a = np.asarray(resized, dtype=np.float32)
        except Exception as exc:
            raise DataError(f"{f}: not a readable image ({exc})") from None
        if a.ndim == 2:
            a = a[..., None]
        if opts.channel_order == "bgr":
            a = a[..., ::-1]
        images.append(a)
    x: np.ndarray = np.stack(images)
    mean, std = np.asarray(opts.mean, np.float32), np.asarray(opts.std, np.float32)
    x = (x * np.float32(opts.scale) - mean) / std
    if opts.layout == "nchw":
        x = x.transpose(0, 3, 1, 2)
    y = np.asarray([c for _, c in files], dtype=np.int64)
    facts = {
        "format": "image-folder",
        "classes": len(classes),
        "image_size": list(size),
        "scale": opts.scale,
        "mean": list(opts.mean),
        "std": list(opts.std),
        "channel_order": opts.channel_order,
    }
    return Dataset(np.ascontiguousarray(x, dtype=np.float32), y, str(root), tuple(classes), facts)


def _hw_from_shape(shape: tuple[int, ...] | None, layout: str) -> tuple[int, int] | None:
    if shape is None or len(shape) != 4:
        return None
    h, w = (shape[2], shape[3]) if layout == "nchw" else (shape[1], shape[2])
    if not h or not w or h < 0 or w < 0:
        return None
    return int(h), int(w)


def check_against_model(
    data: Dataset, input_shape: tuple[int | None, ...], input_dtype: str, model_path: str
) -> np.ndarray:
    """The inputs cast to the model's input dtype; DataError naming both shapes on a misfit."""
    want = tuple(input_shape)
    got = tuple(data.x.shape)
    ok = len(want) == len(got) and all(
        w is None or w < 0 or w == g for w, g in zip(want[1:], got[1:], strict=True)
    )
    if not ok:
        shown = "(" + ", ".join("N" if (d is None or d < 0) else str(d) for d in want) + ")"
        raise DataError(
            f"{data.source}: data shape {got} does not fit the input of {model_path} {shown}",
            hint="reshape the data or pick the right --x-key",
        )
    if input_dtype.startswith("float"):
        if data.x.dtype.kind not in "biuf":
            raise DataError(
                f"{data.source}: inputs of dtype {data.x.dtype} for a {input_dtype} model input"
            )
        return np.ascontiguousarray(data.x, dtype=np.dtype(input_dtype))
    if data.x.dtype.kind == "f":
        raise DataError(
            f"{data.source}: float inputs ({data.x.dtype}) for the {input_dtype} input "
            f"of {model_path}",
            hint="give data in the model's input dtype",
        )
    return np.ascontiguousarray(data.x, dtype=np.dtype(input_dtype))


def calibration_subset(data: Dataset, n: int = DEFAULT_CALIB_SAMPLES, seed: int = 0) -> Dataset:
    """A reproducible calibration subset; warns when fewer than 100 samples are used."""
    if n <= 0:
        raise DataError(f"--calib-samples must be positive (got {n})")
    subset = data.take(n, seed)
    if len(subset) < MIN_CALIB_SAMPLES:
        warnings.warn(
            f"calibrating on only {len(subset)} samples from {data.source}: "
            "int8 ranges may be poor "
            f"(use at least {MIN_CALIB_SAMPLES})",
            UserWarning,
            stacklevel=2,
        )
    return subset


def is_classification(y: np.ndarray | None) -> bool:
    """Labels are class indices (integers, one per sample)."""
    return y is not None and y.ndim == 1 and y.dtype.kind in "iub"


def input_stats(x: np.ndarray, *, std: bool = True) -> dict[str, float]:
    """min, max, mean and (unless ``std=False``) std of the inputs, what the
    calibration-vs-evaluation check compares. min, max and the float64 sum are taken in one
    pass over cache-sized chunks, without a float64 copy of the inputs."""
    flat = np.asarray(x).reshape(-1)
    if flat.dtype.kind not in "biuf":
        flat = flat.astype(np.float64)
    if flat.dtype.kind == "b":
        flat = flat.astype(np.uint8)
    lo, hi, total = np.inf, -np.inf, 0.0
    for start in range(0, flat.size, STATS_CHUNK):
        part = flat[start : start + STATS_CHUNK]
        lo = min(lo, float(part.min()))
        hi = max(hi, float(part.max()))
        total += float(part.sum(dtype=np.float64))
    out = {"min": lo, "max": hi, "mean": total / flat.size if flat.size else float("nan")}
    if std:
        out["std"] = float(flat.std(dtype=np.float64))
    return out


def sample_digests(x: np.ndarray) -> list[str]:
    """A short digest of each sample (its values as float32), so that the calibration
    samples found again in evaluation data can be counted without keeping them."""
    import hashlib

    rows = np.ascontiguousarray(np.asarray(x).reshape(len(x), -1), dtype=np.float32)
    return [hashlib.blake2b(row.tobytes(), digest_size=8).hexdigest() for row in rows]


STATS_CHUNK = 1 << 16  # values per chunk of input_stats' single pass

STATS_TOLERANCE = 0.25
"""Share of the evaluation inputs' range by which calibration min/max/mean may differ."""


def stats_mismatch(calib: dict[str, float], evaluation: dict[str, float]) -> str | None:
    """Why the calibration inputs look preprocessed differently from the evaluation inputs
    (their range or mean differs by more than a quarter of the evaluation range), or None."""
    span = (evaluation["max"] - evaluation["min"]) or 1.0
    off = [name for name in ("min", "max", "mean")
           if abs(calib[name] - evaluation[name]) > STATS_TOLERANCE * span]
    if not off:
        return None
    return ("calibration inputs differ from the evaluation inputs "
            f"(calibration range {calib['min']:.3g}..{calib['max']:.3g}, mean "
            f"{calib['mean']:.3g}; evaluation range {evaluation['min']:.3g}.."
            f"{evaluation['max']:.3g}, mean {evaluation['mean']:.3g}): "
            "check that both went through the same preprocessing (scale, mean/std, channel "
            "order)")
