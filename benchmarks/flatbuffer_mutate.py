"""Mutations of a .tflite flatbuffer for the fault campaigns: bit flips, truncations and wrong
offsets at named places of the TFLite schema (tensorflow/lite/schema/schema.fbs).

The walker reads the real model's structure (root table, vtables, the vectors of operator
codes, subgraphs, tensors, operators and buffers) with ``struct`` alone and lists every
*site* a wrong value can be written to: offsets (root, vtable, vector and table
references), vector lengths, tensor shapes, tensor/opcode/buffer indices, tensor types.
A mutation is plain data (kind, site, position, old and new value) so a campaign's table can
say what each mutant was, and the same seed gives the same mutants.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

# (field number, name) of each table's fields that the walker follows
MODEL_FIELDS = {"operator_codes": 1, "subgraphs": 2, "buffers": 4}
SUBGRAPH_FIELDS = {"tensors": 0, "inputs": 1, "outputs": 2, "operators": 3}
TENSOR_FIELDS = {"shape": 0, "type": 1, "buffer": 2, "shape_signature": 7}
OPERATOR_FIELDS = {"opcode_index": 0, "inputs": 1, "outputs": 2}
BUFFER_FIELDS = {"data": 0}
OPCODE_FIELDS = {"deprecated_builtin_code": 0, "custom_code": 1, "builtin_code": 3}

OFFSET_SITES = ("root-offset", "vtable-offset", "vector-offset", "table-offset",
                "vector-length", "buffer-data", "tensor-shape", "tensor-index",
                "opcode-index", "buffer-index", "tensor-type", "builtin-code")
"""Where a wrong-offset mutation writes: every category the walker finds sites for."""


@dataclass(frozen=True)
class Site:
    """A place in the flatbuffer a wrong value can go: its category, byte position and width."""

    category: str
    pos: int
    fmt: str  # struct format of the value there: "<I", "<i" or "<B"
    note: str  # which table and field, for the table of mutants
    bound: int = 0  # the count an index may not reach (tensor/opcode/buffer index)


@dataclass(frozen=True)
class Mutation:
    """One mutant: what was done where (``kind``: bit-flip, truncation, or wrong-offset)."""

    kind: str
    detail: str

    def describe(self) -> str:
        """One line for tables and logs."""
        return f"{self.kind}: {self.detail}"


class _Walker:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sites: list[Site] = []

    def u32(self, pos: int) -> int:
        return int(struct.unpack_from("<I", self.data, pos)[0])

    def field(self, table: int, number: int) -> int | None:
        vtable = table - int(struct.unpack_from("<i", self.data, table)[0])
        size = struct.unpack_from("<H", self.data, vtable)[0]
        slot = 4 + 2 * number
        if slot + 2 > size:
            return None
        off = struct.unpack_from("<H", self.data, vtable + slot)[0]
        return table + off if off else None

    def vector(self, field_pos: int, note: str) -> tuple[int, int]:
        """(first element, length) of the vector referenced at ``field_pos``; records the
        reference and the length as sites."""
        self.sites.append(Site("vector-offset", field_pos, "<I", note))
        vec = field_pos + self.u32(field_pos)
        self.sites.append(Site("vector-length", vec, "<I", note))
        return vec + 4, self.u32(vec)

    def tables(self, table: int, number: int, note: str) -> list[int]:
        """The tables of a vector-of-tables field (recording each element's reference)."""
        pos = self.field(table, number)
        if pos is None:
            return []
        start, n = self.vector(pos, note)
        out = []
        for i in range(n):
            elem = start + 4 * i
            self.sites.append(Site("table-offset", elem, "<I", f"{note}[{i}]"))
            out.append(elem + self.u32(elem))
        return out

    def ints(self, table: int, number: int, category: str, note: str,
             bound: int = 0) -> None:
        pos = self.field(table, number)
        if pos is None:
            return
        start, n = self.vector(pos, note)
        for i in range(n):
            self.sites.append(Site(category, start + 4 * i, "<i", f"{note}[{i}]", bound))

    def scalar(self, table: int, number: int, category: str, fmt: str, note: str,
               bound: int = 0) -> None:
        pos = self.field(table, number)
        if pos is not None:
            self.sites.append(Site(category, pos, fmt, note, bound))

    def walk(self) -> list[Site]:
        root = self.u32(0)
        self.sites.append(Site("root-offset", 0, "<I", "root table"))
        self.sites.append(Site("vtable-offset", root, "<i", "Model"))
        codes = self.tables(root, MODEL_FIELDS["operator_codes"], "Model.operator_codes")
        for i, code in enumerate(codes):
            self.sites.append(Site("vtable-offset", code, "<i", f"OperatorCode[{i}]"))
            self.scalar(code, OPCODE_FIELDS["deprecated_builtin_code"], "builtin-code", "<B",
                        f"OperatorCode[{i}].deprecated_builtin_code")
            self.scalar(code, OPCODE_FIELDS["builtin_code"], "builtin-code", "<i",
                        f"OperatorCode[{i}].builtin_code")
            pos = self.field(code, OPCODE_FIELDS["custom_code"])
            if pos is not None:
                self.vector(pos, f"OperatorCode[{i}].custom_code")
        buffers = self.tables(root, MODEL_FIELDS["buffers"], "Model.buffers")
        for i, buf in enumerate(buffers):
            self.sites.append(Site("vtable-offset", buf, "<i", f"Buffer[{i}]"))
            pos = self.field(buf, BUFFER_FIELDS["data"])
            if pos is not None:
                self.sites.append(Site("buffer-data", pos, "<I", f"Buffer[{i}].data"))
                self.sites.append(Site("buffer-data", pos + self.u32(pos), "<I",
                                       f"Buffer[{i}].data length"))
        for g, sub in enumerate(self.tables(root, MODEL_FIELDS["subgraphs"], "Model.subgraphs")):
            self.sites.append(Site("vtable-offset", sub, "<i", f"SubGraph[{g}]"))
            tensors = self.tables(sub, SUBGRAPH_FIELDS["tensors"], f"SubGraph[{g}].tensors")
            for name in ("inputs", "outputs"):
                self.ints(sub, SUBGRAPH_FIELDS[name], "tensor-index",
                          f"SubGraph[{g}].{name}", len(tensors))
            for t, tensor in enumerate(tensors):
                note = f"SubGraph[{g}].Tensor[{t}]"
                self.sites.append(Site("vtable-offset", tensor, "<i", note))
                self.ints(tensor, TENSOR_FIELDS["shape"], "tensor-shape", f"{note}.shape")
                self.ints(tensor, TENSOR_FIELDS["shape_signature"], "tensor-shape",
                          f"{note}.shape_signature")
                self.scalar(tensor, TENSOR_FIELDS["type"], "tensor-type", "<B", f"{note}.type")
                self.scalar(tensor, TENSOR_FIELDS["buffer"], "buffer-index", "<I",
                            f"{note}.buffer", len(buffers))
            ops = self.tables(sub, SUBGRAPH_FIELDS["operators"], f"SubGraph[{g}].operators")
            for o, op in enumerate(ops):
                note = f"SubGraph[{g}].Operator[{o}]"
                self.sites.append(Site("vtable-offset", op, "<i", note))
                self.scalar(op, OPERATOR_FIELDS["opcode_index"], "opcode-index", "<I",
                            f"{note}.opcode_index", len(codes))
                for name in ("inputs", "outputs"):
                    self.ints(op, OPERATOR_FIELDS[name], "tensor-index", f"{note}.{name}",
                              len(tensors))
        return self.sites


def sites(data: bytes) -> dict[str, list[Site]]:
    """Every mutation site of a well-formed .tflite, by category."""
    out: dict[str, list[Site]] = {c: [] for c in OFFSET_SITES}
    for site in _Walker(data).walk():
        out[site.category].append(site)
    return {c: s for c, s in out.items() if s}


def _wrong_value(site: Site, old: int, size: int, rng: random.Random) -> int:
    """A wrong value for ``site``: near misses, far misses, past the end, signs, extremes."""
    if site.category in ("tensor-index", "opcode-index", "buffer-index"):
        choices = [site.bound, site.bound + rng.randint(1, 1000), -1, -rng.randint(2, 1000),
                   0x7FFFFFFF, rng.getrandbits(32)]
    elif site.category == "tensor-shape":
        choices = [0, -1, -2, 0x7FFFFFFF, 1 << 16, max(old, 1) * 1000, rng.getrandbits(31),
                   old + 1]
    elif site.category == "tensor-type":
        return (old + rng.randint(1, 255)) % 256
    elif site.category == "builtin-code":
        choices = [rng.randint(0, 300), -1, 0x7FFFFFFF, 32]  # 32 = CUSTOM
    elif site.category == "vector-length":
        choices = [old + 1, old * 2 + 1, 0, 0xFFFFFFFF, 0x7FFFFFFF, rng.getrandbits(32),
                   max(old - 1, 0)]
    else:  # offsets: root, vtable, vector and table references, buffer data
        delta = rng.choice((1, 2, 4, 8, 12, 16, 64, 256)) * rng.choice((1, -1))
        choices = [old + delta, size - site.pos + rng.randint(0, 64), 0, 0xFFFFFFFF,
                   0x7FFFFFFF, rng.getrandbits(32), rng.randrange(max(size, 1))]
    value = rng.choice(choices)
    if value == old:
        value = old + 1
    return value


def _pack(site: Site, value: int) -> bytes:
    if site.fmt == "<B":
        return struct.pack("<B", value & 0xFF)
    return struct.pack("<I", value & 0xFFFFFFFF)


def mutate(data: bytes, kind: str, rng: random.Random,
           all_sites: dict[str, list[Site]] | None = None) -> tuple[bytes, Mutation]:
    """One mutant of ``data``: ``kind`` is ``bit-flip`` (1–8 bits anywhere), ``truncation``
    (cut anywhere, a quarter of them within the first 64 bytes) or ``wrong-offset`` (a wrong
    value at a site of a random category)."""
    if kind == "bit-flip":
        out = bytearray(data)
        flips = sorted(rng.randrange(len(data) * 8) for _ in range(rng.randint(1, 8)))
        for bit in flips:
            out[bit // 8] ^= 1 << (bit % 8)
        where = ", ".join(f"{b // 8}.{b % 8}" for b in flips[:3])
        more = f" +{len(flips) - 3}" if len(flips) > 3 else ""
        return bytes(out), Mutation(kind, f"{len(flips)} bit(s) at byte.bit {where}{more}")
    if kind == "truncation":
        cut = rng.randrange(64) if rng.random() < 0.25 else rng.randrange(len(data))
        return data[:cut], Mutation(kind, f"cut to {cut} of {len(data)} bytes")
    if kind != "wrong-offset":
        raise ValueError(f"unknown mutation kind {kind!r}")
    found = all_sites if all_sites is not None else sites(data)
    category = rng.choice(sorted(found))
    site = rng.choice(found[category])
    old = int(struct.unpack_from(site.fmt, data, site.pos)[0])
    if site.fmt == "<i" and old >= 1 << 31:
        old -= 1 << 32
    new = _wrong_value(site, old, len(data), rng)
    packed = _pack(site, new)
    out = data[:site.pos] + packed + data[site.pos + len(packed):]
    return out, Mutation(kind, f"{category} {site.note} @{site.pos}: {old} → {new}")
