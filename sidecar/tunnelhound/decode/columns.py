"""Turn data sets into columns: a numpy fast path for fixed-length templates and a
plain-Python reference path (also used for variable-length templates).

Both paths return the same column representation (see :class:`tunnelhound.model.FlowBatch`);
the tests run every capture through both and compare.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tunnelhound.decode.template import VARIABLE_LENGTH, Template

NTP_EPOCH_OFFSET = 2_208_988_800
"""Seconds from 1900-01-01 (NTP era 0) to 1970-01-01: IPFIX µs/ns timestamps are NTP format."""

_INT_WIDTHS = (1, 2, 4, 8)
_F32 = struct.Struct("!f")
_F64 = struct.Struct("!d")


@dataclass(frozen=True, slots=True)
class Column:
    """How one template field becomes one output column."""

    name: str
    index: int
    """Position of the field in the template."""
    length: int
    kind: str
    """uint, int, float, bool, ipv4, ipv6, mac, string, bytes, ntp, appid."""

    @property
    def out_dtype(self) -> np.dtype:
        """Dtype of the finished column."""
        return _out_dtype(self.kind, self.length)


def _out_dtype(kind: str, length: int) -> np.dtype:
    if kind == "uint":
        return np.dtype(f"u{length}" if length in _INT_WIDTHS else "u8")
    if kind == "int":
        return np.dtype(f"i{length}" if length in _INT_WIDTHS else "i8")
    if kind == "float":
        return np.dtype("f8")
    if kind == "bool":
        return np.dtype("?")
    if kind == "ipv4":
        return np.dtype("u4")
    if kind == "ntp":
        return np.dtype("i8")
    if kind in ("ipv6", "mac"):
        return np.dtype(f"V{length}")
    return np.dtype("O")


_FIXED_KINDS = {
    "ipv4Address": ("ipv4", 4),
    "ipv6Address": ("ipv6", 16),
    "macAddress": ("mac", 6),
    "boolean": ("bool", 1),
    "dateTimeMicroseconds": ("ntp", 8),
    "dateTimeNanoseconds": ("ntp", 8),
}


def column_kind(element_type: str, length: int) -> str:
    """Pick a column kind for an element type as actually encoded (exporters vary lengths)."""
    fixed = _FIXED_KINDS.get(element_type)
    if fixed is not None:
        return fixed[0] if length == fixed[1] else "bytes"
    if element_type.startswith("unsigned") or element_type in ("dateTimeSeconds", "dateTimeMilliseconds"):
        return "uint" if 1 <= length <= 8 else "bytes"
    if element_type.startswith("signed"):
        return "int" if 1 <= length <= 8 else "bytes"
    if element_type.startswith("float"):
        return "float" if length in (4, 8) else "bytes"
    if element_type == "string":
        return "string"
    if element_type == "applicationId":
        return "appid"
    return "bytes"


@dataclass(frozen=True, slots=True, eq=False)
class Layout:
    """A compiled template: output columns, plus a numpy dtype when records have fixed length."""

    columns: tuple[Column, ...]
    record_length: int | None
    dtype: np.dtype | None
    types: dict[str, str]
    """Column name → element type, shared by every batch of the template."""

    def finish(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """Columns from this layout's structured records (see :func:`finish_fixed`)."""
        return finish_fixed(self, raw)


@lru_cache(maxsize=65536)
def compile_template(template: Template) -> Layout:
    """Compile a template once; cached because exporters resend identical templates constantly."""
    columns: list[Column] = []
    types: dict[str, str] = {}
    seen: dict[str, int] = {}
    for index, f in enumerate(template.fields):
        el = f.element
        if f.length == 0 or (el.pen == 0 and el.id == 210):
            continue  # 0-length fields carry nothing; paddingOctets is padding
        name = el.name
        if name in seen:
            # A few exporters repeat an element in one template; keep every copy addressable.
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 1
        length = f.length
        kind = column_kind(el.type, length) if length != VARIABLE_LENGTH else _var_kind(el.type)
        columns.append(Column(name, index, length, kind))
        types[name] = el.type
    reclen = template.record_length
    dtype = None
    if reclen is not None and reclen > 0:
        offsets = _offsets(template)
        names, formats, offs = [], [], []
        for c in columns:
            names.append(c.name)
            formats.append(_wire_format(c))
            offs.append(offsets[c.index])
        dtype = np.dtype({"names": names, "formats": formats, "offsets": offs, "itemsize": reclen})
    return Layout(tuple(columns), reclen, dtype, types)


def _var_kind(element_type: str) -> str:
    if element_type in ("string", "applicationId"):
        return "string" if element_type == "string" else "appid"
    return "bytes"


def _offsets(template: Template) -> list[int]:
    out, pos = [], 0
    for f in template.fields:
        out.append(pos)
        pos += f.length
    return out


def _wire_format(c: Column) -> str:
    if c.kind in ("uint", "int") and c.length in _INT_WIDTHS:
        return f">{'u' if c.kind == 'uint' else 'i'}{c.length}"
    if c.kind == "ipv4":
        return ">u4"
    if c.kind == "ntp":
        return ">u8"
    if c.kind == "float":
        return f">f{c.length}"
    if c.kind == "bool":
        return "u1"
    if c.kind == "string":
        return f"S{c.length}"
    return f"V{c.length}"


def decode_fixed(layout: Layout, body: memoryview) -> tuple[int, dict[str, np.ndarray]]:
    """Decode every whole record of a data set at once (fast path)."""
    raw = fixed_records(layout, body)
    return len(raw), finish_fixed(layout, raw)


def fixed_records(layout: Layout, body: memoryview) -> np.ndarray:
    """The whole records of a data set as one structured array (a view, no copy)."""
    assert layout.dtype is not None and layout.record_length
    count = len(body) // layout.record_length
    return np.frombuffer(body, dtype=layout.dtype, count=count)


def finish_fixed(layout: Layout, raw: np.ndarray) -> dict[str, np.ndarray]:
    """Columns from structured records (one set, or many sets of the template concatenated)."""
    if len(raw) == 0:
        return {c.name: np.empty(0, c.out_dtype) for c in layout.columns}
    return {c.name: _finish_fixed(c, raw[c.name]) for c in layout.columns}


def _finish_fixed(c: Column, a: np.ndarray) -> np.ndarray:
    kind = c.kind
    if kind in ("uint", "int"):
        if c.length in _INT_WIDTHS:
            return a.astype(c.out_dtype)
        # The field is a strided view into the records: copy it contiguous before
        # reinterpreting its octets (numpy refuses to re-view a strided itemsize).
        return _odd_int(np.ascontiguousarray(a).view(np.uint8).reshape(-1, c.length), kind == "int")
    if kind in ("ipv4", "float"):
        return a.astype(c.out_dtype)
    if kind == "bool":
        return a == 1
    if kind == "ntp":
        return ntp_to_ns(a.astype(np.uint64))
    if kind in ("ipv6", "mac"):
        return np.ascontiguousarray(a)
    if kind == "string":
        return _object(_text(b) for b in a.tolist())
    if kind == "appid":
        return _object(format_application_id(b) for b in a.tolist())
    return _object(a.tolist())


def _odd_int(octets: np.ndarray, signed: bool) -> np.ndarray:
    """Reduced-size encoding (RFC 7011 §6.2) with widths 3, 5, 6, 7: widen to 8 bytes."""
    n, width = octets.shape
    wide = np.zeros((n, 8), dtype=np.uint8)
    wide[:, 8 - width :] = octets
    if signed:
        negative = octets[:, 0] >= 0x80
        wide[negative, : 8 - width] = 0xFF
        return wide.view(">i8").reshape(n).astype(np.int64)
    return wide.view(">u8").reshape(n).astype(np.uint64)


def ntp_to_ns(values: np.ndarray) -> np.ndarray:
    """NTP 64-bit timestamps (RFC 7011 §6.1.9-10) to int64 nanoseconds since the Unix epoch."""
    seconds = (values >> np.uint64(32)).astype(np.int64) - NTP_EPOCH_OFFSET
    fraction = values & np.uint64(0xFFFFFFFF)
    nanos = ((fraction * np.uint64(1_000_000_000)) >> np.uint64(32)).astype(np.int64)
    return seconds * 1_000_000_000 + nanos


def _text(raw: bytes) -> str:
    # Exporters pad strings with NULs (fixed-width vendor fields); stop at the first one.
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def format_application_id(raw: bytes) -> str:
    """RFC 6759 applicationId as ``engine:selector``; engine 20 (PANA-L7-PEN) as ``20:pen:selector``."""
    if not raw:
        return ""
    engine, rest = raw[0], raw[1:]
    if engine == 20 and len(rest) > 4:
        return f"20:{int.from_bytes(rest[:4], 'big')}:{int.from_bytes(rest[4:], 'big')}"
    return f"{engine}:{int.from_bytes(rest, 'big')}"


def _object(values: object) -> np.ndarray:
    items = list(values)  # type: ignore[call-overload]
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


# --------------------------------------------------------------------------- reference path


def decode_records(
    layout: Layout, template: Template, body: memoryview
) -> tuple[int, dict[str, np.ndarray], bool]:
    """Decode a data set record by record (reference path; variable-length fields).

    Stops at the first record that does not fit: RFC 7011 allows padding shorter than a
    record at the end of a set, and only recommends zeros for it (Mikrotik and nProbe pad
    with leftovers).  The flag says a non-zero tail at least one minimal record long was
    left over (a truncated record rather than padding); the records before it are still
    returned.
    """
    wanted = {c.index: c for c in layout.columns}
    values: dict[str, list[object]] = {c.name: [] for c in layout.columns}
    fields = template.fields
    minimum = template.min_record_length
    pos, end, count = 0, len(body), 0
    start = 0
    while minimum > 0 and end - pos >= minimum:
        start = pos
        record: list[tuple[Column, bytes]] = []
        ok = True
        for index, f in enumerate(fields):
            length = f.length
            if length == VARIABLE_LENGTH:
                if pos >= end:
                    ok = False
                    break
                length = body[pos]
                pos += 1
                if length == 255:
                    if end - pos < 2:
                        ok = False
                        break
                    length = int.from_bytes(body[pos : pos + 2], "big")
                    pos += 2
            if end - pos < length:
                ok = False
                break
            col = wanted.get(index)
            if col is not None:
                record.append((col, bytes(body[pos : pos + length])))
            pos += length
        if not ok:
            break
        for col, raw in record:
            values[col.name].append(_scalar(col, raw))
        count += 1
        start = pos
    columns = {}
    for c in layout.columns:
        vals = values[c.name]
        if c.out_dtype.kind == "V":
            columns[c.name] = np.array(vals, dtype=c.out_dtype) if vals else np.empty(0, c.out_dtype)
        elif c.out_dtype == np.dtype("O"):
            columns[c.name] = _object(vals)
        else:
            columns[c.name] = np.array(vals, dtype=c.out_dtype)
    truncated = end - start >= minimum and any(body[start:end])
    return count, columns, truncated


def _scalar(c: Column, raw: bytes) -> object:
    kind = c.kind
    if kind == "uint" or kind == "ipv4":
        return int.from_bytes(raw, "big")
    if kind == "int":
        return int.from_bytes(raw, "big", signed=True)
    if kind == "float":
        return (_F32 if len(raw) == 4 else _F64).unpack(raw)[0]
    if kind == "bool":
        return raw[0] == 1
    if kind == "ntp":
        value = int.from_bytes(raw, "big")
        return ((value >> 32) - NTP_EPOCH_OFFSET) * 1_000_000_000 + (
            ((value & 0xFFFFFFFF) * 1_000_000_000) >> 32
        )
    if kind == "string":
        return _text(raw)
    if kind == "appid":
        return format_application_id(raw)
    return raw
