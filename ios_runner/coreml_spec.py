"""The inputs and outputs of a Core ML model, read on the host without coremltools.

A numerics check of a Core ML job compares it with the float ``.tflite`` beside it by
position, so the host needs the Core ML model's feature names, shapes and data types
before anything goes to the phone. coremltools would read them, but importing it loads
TensorFlow (seconds, and never in the controller); the description is a few fields of
the model's protobuf (``CoreML.Specification.Model.description``), read here with a
small wire-format reader.

``.mlmodel``: the file is the protobuf. ``.mlpackage``: ``Manifest.json`` names the root
item (``rootModelIdentifier`` → ``path`` under ``Data/``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ARRAY_DTYPES = {65568: "float32", 65552: "float16", 65600: "float64", 131104: "int32",
                131080: "int8"}
"""``ArrayFeatureType.ArrayDataType`` → numpy dtype name."""

# field numbers of CoreML.Specification (Model.proto, FeatureTypes.proto)
_MODEL_DESCRIPTION = 2
_DESC_INPUT, _DESC_OUTPUT, _DESC_FUNCTIONS = 1, 10, 20
_FEATURE_NAME, _FEATURE_TYPE = 1, 3
_TYPE_NAMES = {1: "int64", 2: "double", 3: "string", 4: "image", 5: "multiArray",
               6: "dictionary", 7: "sequence", 8: "state"}
_TYPE_MULTIARRAY = 5
_ARRAY_SHAPE, _ARRAY_DTYPE, _ARRAY_ENUMERATED, _ARRAY_RANGE = 1, 2, 21, 31


class CoreMLSpecError(ValueError):
    """The model's description cannot be read (not a Core ML model, or an unknown layout)."""


@dataclass(frozen=True)
class Feature:
    """One input or output of a Core ML model."""

    name: str
    kind: str  # "multiArray", "image", ...
    shape: tuple[int, ...] = ()  # the default shape; () when the spec records none
    dtype: str | None = None  # numpy name of a multi-array's data type
    flexible: bool = False  # enumerated shapes or a shape range


@dataclass(frozen=True)
class CoreMLIO:
    """A Core ML model's inputs and outputs, in the order of its description."""

    inputs: tuple[Feature, ...]
    outputs: tuple[Feature, ...]


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise CoreMLSpecError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise CoreMLSpecError("varint too long")


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of one protobuf message, in order."""
    out: list[tuple[int, int, int | bytes]] = []
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, at = _varint(data, at)
        elif wire == 1:
            value, at = int.from_bytes(data[at:at + 8], "little"), at + 8
        elif wire == 2:
            size, at = _varint(data, at)
            if at + size > len(data):
                raise CoreMLSpecError("truncated field")
            value, at = data[at:at + size], at + size
        elif wire == 5:
            value, at = int.from_bytes(data[at:at + 4], "little"), at + 4
        else:
            raise CoreMLSpecError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _ints(wire: int, value: int | bytes) -> list[int]:
    """A repeated int64: packed (bytes) or one varint."""
    if isinstance(value, int):
        return [value]
    found, at = [], 0
    while at < len(value):
        v, at = _varint(value, at)
        found.append(v - (1 << 64) if v >= 1 << 63 else v)
    return found


def _feature(data: bytes) -> Feature:
    name, kind = "", "unknown"
    shape: list[int] = []
    dtype: str | None = None
    flexible = False
    for number, _, value in _fields(data):
        if number == _FEATURE_NAME and isinstance(value, bytes):
            name = value.decode("utf-8", "replace")
        elif number == _FEATURE_TYPE and isinstance(value, bytes):
            for tnum, _, tval in _fields(value):
                if tnum not in _TYPE_NAMES:
                    continue
                kind = _TYPE_NAMES[tnum]
                if tnum != _TYPE_MULTIARRAY or not isinstance(tval, bytes):
                    continue
                for anum, awire, aval in _fields(tval):
                    if anum == _ARRAY_SHAPE:
                        shape += _ints(awire, aval)
                    elif anum == _ARRAY_DTYPE and isinstance(aval, int):
                        dtype = ARRAY_DTYPES.get(aval, f"unknown ({aval})")
                    elif anum in (_ARRAY_ENUMERATED, _ARRAY_RANGE):
                        flexible = True
    return Feature(name, kind, tuple(shape), dtype, flexible)


def spec_file(path: str | Path) -> Path:
    """The protobuf file of a ``.mlmodel`` or ``.mlpackage``."""
    p = Path(path)
    if not p.is_dir():
        return p
    try:
        manifest = json.loads((p / "Manifest.json").read_text())
        root = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]
        return p / "Data" / str(root["path"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CoreMLSpecError(f"{p.name}: no readable Manifest.json root item ({exc})") from None


def read_io(path: str | Path) -> CoreMLIO:
    """The inputs and outputs of the Core ML model at ``path``; CoreMLSpecError if unreadable."""
    file = spec_file(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise CoreMLSpecError(f"cannot read {file}: {exc.strerror or exc}") from None
    description = [v for n, w, v in _fields(data) if n == _MODEL_DESCRIPTION and w == 2]
    if not description or not isinstance(description[-1], bytes):
        raise CoreMLSpecError(f"{Path(path).name}: no model description in {file.name}")
    inputs: list[Feature] = []
    outputs: list[Feature] = []
    functions = False
    for number, wire, value in _fields(description[-1]):
        if wire != 2 or not isinstance(value, bytes):
            continue
        if number == _DESC_INPUT:
            inputs.append(_feature(value))
        elif number == _DESC_OUTPUT:
            outputs.append(_feature(value))
        elif number == _DESC_FUNCTIONS:
            functions = True
    if not inputs and not outputs:
        what = "a multi-function model" if functions else "a description without features"
        raise CoreMLSpecError(f"{Path(path).name}: {what}")
    return CoreMLIO(tuple(inputs), tuple(outputs))
