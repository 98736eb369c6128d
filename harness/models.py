"""Identify a model file: format, content hash, size, and a cheap structural check.

Imports nothing heavy: no LiteRT or TensorFlow, so the CLI stays fast.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from quantlab.harness.errors import ModelError, UserError
from quantlab.harness.records import ModelRef

_CHUNK = 1 << 20


def _sha256_file(path: Path, digest: hashlib._Hash | None = None) -> hashlib._Hash:
    h = digest or hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's content, or of a folder's (relative paths and contents)."""
    if path.is_dir():
        return _sha256_dir(path)[0]
    return _sha256_file(path).hexdigest()


def _sha256_dir(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(file.relative_to(path).as_posix().encode() + b"\0")
        _sha256_file(file, h)
        size += file.stat().st_size
    return h.hexdigest(), size


def _u32(data: bytes, pos: int) -> int:
    return int(struct.unpack_from("<I", data, pos)[0])


def _i32(data: bytes, pos: int) -> int:
    return int(struct.unpack_from("<i", data, pos)[0])


def _table_field(data: bytes, table: int, field_no: int) -> int | None:
    """Absolute position of field ``field_no`` of the table at ``table``, None when absent."""
    vtable = table - _i32(data, table)
    if not 0 <= vtable <= len(data) - 4:
        raise ValueError("vtable outside the file")
    vt_size = struct.unpack_from("<H", data, vtable)[0]
    slot = 4 + 2 * field_no
    if slot + 2 > vt_size:
        return None
    if vtable + slot + 2 > len(data):
        raise ValueError("vtable outside the file")
    off = struct.unpack_from("<H", data, vtable + slot)[0]
    return table + off if off else None


def _vector(data: bytes, field_pos: int) -> tuple[int, int]:
    """(start, length) of the vector referenced at ``field_pos``; checks its bounds."""
    vec = field_pos + _u32(data, field_pos)
    if vec + 4 > len(data):
        raise ValueError("vector outside the file")
    n = _u32(data, vec)
    return vec + 4, n


def _string(data: bytes, field_pos: int) -> bytes:
    start, n = _vector(data, field_pos)
    if start + n > len(data):
        raise ValueError("string outside the file")
    return data[start:start + n]


def _ints(data: bytes, table: int, field_no: int) -> list[int]:
    """The int32 vector of a table's field ([] when absent); checks its bounds."""
    pos = _table_field(data, table, field_no)
    if pos is None:
        return []
    start, n = _vector(data, pos)
    if start + 4 * n > len(data):
        raise ValueError("vector outside the file")
    return list(struct.unpack_from(f"<{n}i", data, start))


def _tables(data: bytes, table: int, field_no: int) -> list[int]:
    """The tables of a vector-of-tables field ([] when absent); checks their bounds."""
    pos = _table_field(data, table, field_no)
    if pos is None:
        return []
    start, n = _vector(data, pos)
    if start + 4 * n > len(data):
        raise ValueError("table vector outside the file")
    out = []
    for i in range(n):
        elem = start + 4 * i
        sub = elem + _u32(data, elem)
        if not 0 <= sub <= len(data) - 4:
            raise ValueError("table outside the file")
        _table_field(data, sub, 0)  # its vtable lies in the file
        out.append(sub)
    return out


def _check_subgraph(data: bytes, graph: int, g: int, buffers: int, codes: int) -> None:
    """Indices and shapes of one subgraph against the model's counts (table SubGraph:
    0 tensors, 1 inputs, 2 outputs, 3 operators; Tensor: 0 shape, 2 buffer, 3 name;
    Operator: 0 opcode_index, 1 inputs, 2 outputs). LiteRT trusts these: an index out of
    range or an output marked optional (-1, which only inputs may be) makes its kernels
    read outside their arrays, and its Python API decodes every tensor name as UTF-8."""
    tensors = _tables(data, graph, 0)
    n = len(tensors)
    for t, tensor in enumerate(tensors):
        where = f"subgraph {g}, tensor {t}"
        if any(d < 0 for d in _ints(data, tensor, 0)):
            raise ValueError(f"{where}: negative dimension in its shape")
        pos = _table_field(data, tensor, 2)
        if pos is not None and _u32(data, pos) >= max(buffers, 1):
            raise ValueError(f"{where}: buffer {_u32(data, pos)} of {buffers}")
        pos = _table_field(data, tensor, 3)
        if pos is not None:
            try:
                _string(data, pos).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{where}: its name is not UTF-8") from None
    for kind, field_no in (("input", 1), ("output", 2)):
        bad = [i for i in _ints(data, graph, field_no) if not 0 <= i < n]
        if bad:
            raise ValueError(f"subgraph {g}: {kind} tensor {bad[0]} of {n}")
    for o, op in enumerate(_tables(data, graph, 3)):
        where = f"subgraph {g}, operator {o}"
        pos = _table_field(data, op, 0)
        index = _u32(data, pos) if pos is not None else 0
        if index >= codes:
            raise ValueError(f"{where}: operator code {index} of {codes}")
        bad = [i for i in _ints(data, op, 1) if not -1 <= i < n]
        if bad:
            raise ValueError(f"{where}: input tensor {bad[0]} of {n}")
        bad = [i for i in _ints(data, op, 2) if not 0 <= i < n]
        if bad:
            raise ValueError(f"{where}: output tensor {bad[0]} of {n}")


def check_tflite_structure(data: bytes) -> None:
    """Check the root table, subgraphs and buffers lie in ``data`` and that every index a
    subgraph holds (tensors, buffers, operator codes) is in range; raise ValueError if not.

    Schema fields used (tensorflow/lite/schema/schema.fbs, table Model): 0 version,
    1 operator_codes, 2 subgraphs, 3 description, 4 buffers. Buffer: 0 data, 1 offset, 2 size
    (offset/size point to data appended after the flatbuffer for models > 2 GB).
    """
    if len(data) < 8:
        raise ValueError("shorter than a flatbuffer header")
    root = _u32(data, 0)
    if not 8 <= root <= len(data) - 4:
        raise ValueError("root table outside the file")
    codes = _tables(data, root, 1)
    graphs = _tables(data, root, 2)
    if not graphs:
        raise ValueError("model has no subgraphs")
    buffers = _tables(data, root, 4)
    for table in buffers:
        data_pos = _table_field(data, table, 0)
        if data_pos is not None:
            b_start, b_len = _vector(data, data_pos)
            if b_start + b_len > len(data):
                raise ValueError("buffer data outside the file")
        off_pos, size_pos = _table_field(data, table, 1), _table_field(data, table, 2)
        if off_pos is not None and size_pos is not None:
            off, size = (
                struct.unpack_from("<QQ", data, off_pos)[0],
                struct.unpack_from("<Q", data, size_pos)[0],
            )
            if off > 1 and off + size > len(data):
                raise ValueError("external buffer outside the file")
    for g, graph in enumerate(graphs):
        _check_subgraph(data, graph, g, len(buffers), len(codes))


def model_ref(path: str | Path, *, scheme: str | None = None) -> ModelRef:
    """Identify the model at ``path``; raise :class:`ModelError` when it is not a usable model."""
    p = Path(path)
    if not p.exists():
        raise ModelError(str(p), "no such file", hint="check the model path")
    suffix = p.suffix.lower()
    if p.is_dir():
        if suffix != ".mlpackage":
            raise ModelError(
                str(p), "is a directory, not a model (.tflite, .mlpackage or .mlmodel)"
            )
        sha, size = _sha256_dir(p)
        return ModelRef(path=str(p), sha256=sha, size_bytes=size, format="mlpackage", scheme=scheme)
    if suffix == ".mlmodel":
        sha = _sha256_file(p).hexdigest()
        return ModelRef(str(p), sha, p.stat().st_size, "mlmodel", scheme)
    if suffix == ".pte":
        return _pte_ref(p, scheme)
    data = read_tflite(p)
    sha = hashlib.sha256(data).hexdigest()
    return ModelRef(str(p), sha, len(data), "tflite", scheme)


def _pte_ref(path: Path, scheme: str | None) -> ModelRef:
    """An ExecuTorch program (``ET12`` flatbuffer); UserError naming the ``torch`` extra when
    ExecuTorch is not installed (found without importing it)."""
    import importlib.util

    data = path.read_bytes()
    if len(data) < 8 or data[4:6] != b"ET":
        raise ModelError(str(path), "not an ExecuTorch program (no ET identifier)",
                         hint="make it with `quantlab quantize` (et-fp32, et-int8) or "
                         "executorch's to_executorch()")
    if any(importlib.util.find_spec(n) is None for n in ("torch", "executorch")):
        raise UserError(f"{path}: .pte files need the torch extra (ExecuTorch not installed)",
                        hint="pip install 'quantlab[torch]'")
    return ModelRef(str(path), hashlib.sha256(data).hexdigest(), len(data), "pte", scheme)


def read_tflite(path: Path) -> bytes:
    """The bytes of a .tflite file that passed :func:`check_tflite_structure`; raise
    :class:`ModelError` (one line naming the file) when it is not one."""
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(
            str(path),
            "not a TFLite flatbuffer (no TFL3 identifier)",
            hint="pass a .tflite file converted with TensorFlow/LiteRT",
        )
    try:
        check_tflite_structure(data)
    except (ValueError, struct.error) as exc:
        raise ModelError(str(path), f"truncated or corrupt TFLite file ({exc})") from None
    return data
