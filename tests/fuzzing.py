"""Structure-aware mutation of NetFlow v5/v9 and IPFIX datagrams, for fuzzing the decoder.

:func:`anatomy` maps a real datagram: message and set headers, template records and field
specifiers, data records and variable-length prefixes (using the templates a primed
decoder learned).  :func:`mutate` then breaks it in one to three of the ways the wire
breaks things: bit flips, byte replacement, truncation at each kind of boundary, length
and count fields set to 0, 1, 3, 0xFFFF or off by a few, template field lengths made
variable, zero or huge, duplicated or concatenated messages, zero-filled tails, random
set bodies, and garbage behind a valid version field.  Every mutator is a pure function
of the ``random.Random`` it is given, so a seed replays a run exactly.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tunnelhound.decode.template import VARIABLE_LENGTH, Template

__all__ = [
    "MUTATORS",
    "Anatomy",
    "LengthField",
    "TemplateLookup",
    "anatomy",
    "garbage",
    "mutate",
]

TemplateLookup = Callable[[int, int, int], Template | None]
"""(version, observation domain, set id) → the template a primed decoder holds, or None."""

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_V5_HEADER, _V5_RECORD, _V9_HEADER, _IPFIX_HEADER = 24, 48, 20, 16
_TEMPLATE_SET_IDS = {9: (0, 1), 10: (2, 3)}
_OPTIONS_SET_IDS = (1, 3)


@dataclass(frozen=True, slots=True)
class LengthField:
    """A length or count field of a datagram: what it counts, where it is, its width in bytes."""

    kind: str
    offset: int
    width: int


@dataclass(slots=True)
class Anatomy:
    """The places of a datagram worth breaking, found by walking it like the decoder does."""

    version: int
    boundaries: list[tuple[str, int]] = field(default_factory=list)
    """(kind, offset): starts of headers, sets, template records, data records and prefixes."""
    lengths: list[LengthField] = field(default_factory=list)
    """Message lengths, set lengths, record counts, field counts and lengths, varlen prefixes."""
    field_specs: list[tuple[int, bool]] = field(default_factory=list)
    """Offsets of template field specifiers (element id, length) and whether the set is IPFIX."""
    sets: list[tuple[int, int, int]] = field(default_factory=list)
    """(set id, offset of the set header, end of the set)."""
    messages: list[tuple[int, int]] = field(default_factory=list)
    """(start, end) of each message (v5 packets and IPFIX messages can be concatenated)."""
    boundaries_by_kind: dict[str, list[int]] = field(default_factory=dict)
    """Boundary offsets grouped by kind: mutators pick a kind first, so the few message and
    set headers are hit as often as the thousands of record fields."""
    lengths_by_kind: dict[str, list[LengthField]] = field(default_factory=dict)
    """Length and count fields grouped by kind, for the same reason."""


def anatomy(data: bytes, lookup: TemplateLookup) -> Anatomy:
    """Map ``data`` without ever raising: the walk stops where the datagram stops making sense."""
    version = _U16.unpack_from(data)[0] if len(data) >= 2 else 0
    out = Anatomy(version)
    if version == 5:
        _v5(data, out)
    elif version == 9 and len(data) >= _V9_HEADER:
        out.messages.append((0, len(data)))
        out.boundaries.append(("message", 0))
        out.lengths.append(LengthField("v9_count", 2, 2))
        domain = _U32.unpack_from(data, 16)[0]
        _sets(data, _V9_HEADER, len(data), 9, domain, lookup, out)
    elif version == 10:
        pos = 0
        while len(data) - pos >= _IPFIX_HEADER:
            length = _U16.unpack_from(data, pos + 2)[0]
            end = min(pos + length, len(data))
            out.messages.append((pos, end))
            out.boundaries.append(("message", pos))
            out.lengths.append(LengthField("message_length", pos + 2, 2))
            domain = _U32.unpack_from(data, pos + 12)[0]
            _sets(data, pos + _IPFIX_HEADER, end, 10, domain, lookup, out)
            if length < _IPFIX_HEADER:
                break
            pos = end
    out.boundaries.append(("end", len(data)))
    for kind, offset in out.boundaries:
        out.boundaries_by_kind.setdefault(kind, []).append(offset)
    for f in out.lengths:
        out.lengths_by_kind.setdefault(f.kind, []).append(f)
    return out


def _v5(data: bytes, out: Anatomy) -> None:
    pos = 0
    while len(data) - pos >= _V5_HEADER:
        count = _U16.unpack_from(data, pos + 2)[0]
        end = min(pos + _V5_HEADER + count * _V5_RECORD, len(data))
        out.messages.append((pos, end))
        out.boundaries.append(("message", pos))
        out.lengths.append(LengthField("v5_count", pos + 2, 2))
        for r in range(pos + _V5_HEADER, end, _V5_RECORD):
            out.boundaries.append(("record", r))
        if count == 0:
            break
        pos = end


def _sets(
    data: bytes, pos: int, end: int, version: int, domain: int, lookup: TemplateLookup, out: Anatomy
) -> None:
    template_ids = _TEMPLATE_SET_IDS[version]
    while end - pos >= 4:
        set_id, length = struct.unpack_from("!HH", data, pos)
        out.boundaries.append(("set", pos))
        out.lengths.append(LengthField("set_length", pos + 2, 2))
        if length < 4:
            return
        set_end = min(pos + length, end)
        out.sets.append((set_id, pos, set_end))
        body = pos + 4
        if set_id in template_ids:
            _template_set(data, body, set_end, version, set_id in _OPTIONS_SET_IDS, out)
        elif set_id >= 256:
            template = lookup(version, domain, set_id)
            if template is not None:
                _data_set(data, body, set_end, template, out)
        pos = set_end


def _template_set(data: bytes, pos: int, end: int, version: int, options: bool, out: Anatomy) -> None:
    while end - pos >= 4:
        out.boundaries.append(("template", pos))
        if version == 9 and options:
            if end - pos < 6:
                return
            scope_len, opt_len = struct.unpack_from("!HH", data, pos + 2)
            out.lengths.append(LengthField("scope_length", pos + 2, 2))
            out.lengths.append(LengthField("option_length", pos + 4, 2))
            pos += 6
            count = (scope_len + opt_len) // 4
        else:
            count = _U16.unpack_from(data, pos + 2)[0]
            out.lengths.append(LengthField("field_count", pos + 2, 2))
            pos += 4
            if count == 0:
                continue
            if version == 10 and options:
                if end - pos < 2:
                    return
                out.lengths.append(LengthField("scope_count", pos, 2))
                pos += 2
        for _ in range(count):
            if end - pos < 4:
                return
            out.boundaries.append(("field_spec", pos))
            out.field_specs.append((pos, version == 10))
            out.lengths.append(LengthField("field_length", pos + 2, 2))
            eid = _U16.unpack_from(data, pos)[0]
            pos += 8 if version == 10 and eid & 0x8000 else 4


def _data_set(data: bytes, pos: int, end: int, template: Template, out: Anatomy) -> None:
    minimum = template.min_record_length
    if minimum <= 0:
        return
    while end - pos >= minimum:
        out.boundaries.append(("record", pos))
        for f in template.fields:
            length = f.length
            if length == VARIABLE_LENGTH:
                if pos >= end:
                    return
                out.boundaries.append(("varlen_prefix", pos))
                length = data[pos]
                if length == 255:
                    if end - pos < 3:
                        return
                    out.lengths.append(LengthField("varlen_long", pos + 1, 2))
                    length = _U16.unpack_from(data, pos + 1)[0]
                    pos += 3
                else:
                    out.lengths.append(LengthField("varlen_prefix", pos, 1))
                    pos += 1
            elif length > 1:
                out.boundaries.append(("field", pos))
            pos += length
            if pos > end:
                return


# --------------------------------------------------------------------------- mutators

Mutator = Callable[[random.Random, bytes, Anatomy, Sequence[bytes]], bytes]
"""(rng, datagram, its anatomy, other datagrams of the corpus) → mutated datagram."""

_SPECIAL_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
_HUGE_FIELD_LENGTHS = (0x7FFF, 0x8000, 0xFFFE, 65000, 1500, 256)
_ODD_FIELD_LENGTHS = (1, 2, 3, 5, 6, 7, 9, 12, 16, 17, 32)


def _put(data: bytes, offset: int, width: int, value: int) -> bytes:
    if offset < 0 or offset + width > len(data):
        return data
    return data[:offset] + (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big") + data[offset + width :]


def _get(data: bytes, offset: int, width: int) -> int:
    if offset < 0 or offset + width > len(data):
        return 0
    return int.from_bytes(data[offset : offset + width], "big")


def bit_flips(rng: random.Random, data: bytes, _a: Anatomy, _o: Sequence[bytes]) -> bytes:
    """Flip one to eight random bits."""
    if not data:
        return data
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf)


def byte_replace(rng: random.Random, data: bytes, _a: Anatomy, _o: Sequence[bytes]) -> bytes:
    """Overwrite one to four bytes (or a short run) with random or boundary values."""
    if not data:
        return data
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(buf))
        run = rng.choice((1, 1, 1, 2, 4, 8))
        for j in range(i, min(i + run, len(buf))):
            buf[j] = rng.choice(_SPECIAL_BYTES) if rng.random() < 0.5 else rng.randrange(256)
    return bytes(buf)


def truncate_at_boundary(rng: random.Random, data: bytes, a: Anatomy, _o: Sequence[bytes]) -> bytes:
    """Cut at a header, set, template, record or prefix boundary, or a few bytes either side."""
    offsets = a.boundaries_by_kind[rng.choice(list(a.boundaries_by_kind))]
    offset = rng.choice(offsets)
    cut = offset + rng.choice((0, 0, 1, 2, 3, -1, -2, rng.randint(4, 24)))
    return data[: max(0, min(cut, len(data)))]


def truncate_consistent(rng: random.Random, data: bytes, a: Anatomy, o: Sequence[bytes]) -> bytes:
    """Cut at a boundary, then shrink the enclosing set and message lengths to match.

    A plain cut is mostly caught by the message or set length; this one reaches the
    record and prefix parsers with a truncated record inside a well-framed set.
    """
    cut = truncate_at_boundary(rng, data, a, o)
    end = len(cut)
    for _set_id, start, set_end in a.sets:
        if start + 4 <= end < set_end:
            cut = _put(cut, start + 2, 2, end - start)
    for start, msg_end in a.messages:
        if start < end <= msg_end and a.version == 10:
            cut = _put(cut, start + 2, 2, end - start)
    return cut


def truncate_random(rng: random.Random, data: bytes, _a: Anatomy, _o: Sequence[bytes]) -> bytes:
    """Cut at any length, header-sized lengths more often."""
    if rng.random() < 0.3:
        return data[: rng.randint(0, min(len(data), 32))]
    return data[: rng.randint(0, len(data))]


def corrupt_length(rng: random.Random, data: bytes, a: Anatomy, _o: Sequence[bytes]) -> bytes:
    """Set a length or count field to 0, 1, 3, all ones, or its value off by one to four."""
    if not a.lengths_by_kind:
        return data
    f = rng.choice(a.lengths_by_kind[rng.choice(list(a.lengths_by_kind))])
    old = _get(data, f.offset, f.width)
    top = (1 << (8 * f.width)) - 1
    choice = rng.randrange(8)
    if choice == 0:
        value = 0
    elif choice == 1:
        value = 1
    elif choice == 2:
        value = 3
    elif choice == 3:
        value = top
    elif choice == 4:
        value = top - 1 if f.width == 2 else 254
    elif choice == 5:
        value = rng.randrange(top + 1)
    else:
        value = old + rng.choice((-4, -3, -2, -1, 1, 2, 3, 4))
    return _put(data, f.offset, f.width, value)


def corrupt_template_field(rng: random.Random, data: bytes, a: Anatomy, _o: Sequence[bytes]) -> bytes:
    """Make a template field variable-length, zero-length, huge, oddly sized, or another element."""
    if not a.field_specs:
        return corrupt_length(rng, data, a, _o)
    offset, ipfix = rng.choice(a.field_specs)
    choice = rng.randrange(6)
    if choice == 0:
        return _put(data, offset + 2, 2, VARIABLE_LENGTH)
    if choice == 1:
        return _put(data, offset + 2, 2, 0)
    if choice == 2:
        return _put(data, offset + 2, 2, rng.choice(_HUGE_FIELD_LENGTHS))
    if choice == 3:
        return _put(data, offset + 2, 2, rng.choice(_ODD_FIELD_LENGTHS))
    if choice == 4:
        # Another element, keeping the enterprise bit so the specifier keeps its size.
        keep = _get(data, offset, 2) & 0x8000 if ipfix else 0
        return _put(data, offset, 2, keep | rng.randrange(1, 520))
    # Toggle the enterprise bit: the specifier grows or shrinks by four bytes.
    return _put(data, offset, 2, _get(data, offset, 2) ^ 0x8000)


def duplicate(rng: random.Random, data: bytes, a: Anatomy, o: Sequence[bytes]) -> bytes:
    """Concatenate the datagram with itself, another capture, or a prefix of either."""
    other = rng.choice(o) if o and rng.random() < 0.5 else data
    if rng.random() < 0.3:
        other = other[: rng.randint(0, len(other))]
    if rng.random() < 0.2 and a.sets:
        # Repeat one set inside the message (and fix the IPFIX length to cover it).
        _set_id, start, end = rng.choice(a.sets)
        out = data + data[start:end]
        return _put(out, 2, 2, len(out)) if a.version == 10 and len(a.messages) == 1 else out
    return data + other


def zero_tail(rng: random.Random, data: bytes, _a: Anatomy, _o: Sequence[bytes]) -> bytes:
    """Append zeros, or zero-fill everything after a random point."""
    if rng.random() < 0.5 or not data:
        return data + bytes(rng.choice((1, 2, 3, 4, 8, 64, rng.randint(1, 1500))))
    cut = rng.randrange(len(data))
    return data[:cut] + bytes(len(data) - cut)


def scramble_set(rng: random.Random, data: bytes, a: Anatomy, _o: Sequence[bytes]) -> bytes:
    """Fill one set body with random bytes (framing intact: garbage values reach the records)."""
    if not a.sets:
        return bit_flips(rng, data, a, _o)
    _set_id, start, end = rng.choice(a.sets)
    body = rng.randbytes(max(0, end - start - 4))
    return data[: start + 4] + body + data[end:]


def swap_sets(rng: random.Random, data: bytes, a: Anatomy, o: Sequence[bytes]) -> bytes:
    """Reorder the sets (data before its template) or drop one."""
    if len(a.sets) < 2:
        return truncate_consistent(rng, data, a, o)
    first, last = a.sets[0][1], a.sets[-1][2]
    parts = [data[s:e] for _i, s, e in a.sets]
    if rng.random() < 0.5:
        rng.shuffle(parts)
    else:
        parts.pop(rng.randrange(len(parts)))
    out = data[:first] + b"".join(parts) + data[last:]
    return _put(out, 2, 2, len(out)) if a.version == 10 and len(a.messages) == 1 else out


def garbage(rng: random.Random, data: bytes, _a: Anatomy, _o: Sequence[bytes]) -> bytes:
    """Random bytes behind a valid version field (5, 9 or 10), half of them plausibly framed."""
    version = rng.choice((5, 9, 10))
    size = rng.choice((0, 1, 2, 10, 14, 18, 22, rng.randint(0, 64), rng.randint(0, 1500)))
    body = rng.randbytes(size)
    out = _U16.pack(version) + body
    if rng.random() < 0.5:
        if version == 10 and len(out) >= 4:
            out = _put(out, 2, 2, len(out))
        elif version == 5 and len(out) >= 4:
            out = _put(out, 2, 2, rng.randint(0, 31))
        header = _IPFIX_HEADER if version == 10 else _V9_HEADER
        if version != 5 and len(out) >= header + 4:
            # One set spanning the rest, with an id the decoder will look at.
            set_id = rng.choice((0, 1, 2, 3, 256, 257, 258, 259, 260, 262, 1024, rng.randrange(65536)))
            out = _put(out, header, 2, set_id)
            out = _put(out, header + 2, 2, len(out) - header)
    return out


MUTATORS: dict[str, Mutator] = {
    "bit_flips": bit_flips,
    "byte_replace": byte_replace,
    "truncate_at_boundary": truncate_at_boundary,
    "truncate_consistent": truncate_consistent,
    "truncate_random": truncate_random,
    "corrupt_length": corrupt_length,
    "corrupt_template_field": corrupt_template_field,
    "duplicate": duplicate,
    "zero_tail": zero_tail,
    "scramble_set": scramble_set,
    "swap_sets": swap_sets,
    "garbage": garbage,
}
"""Every mutator by name (the fuzz test reports how often each ran)."""

_WEIGHTS = {
    "bit_flips": 10,
    "byte_replace": 10,
    "truncate_at_boundary": 10,
    "truncate_consistent": 10,
    "truncate_random": 4,
    "corrupt_length": 14,
    "corrupt_template_field": 10,
    "duplicate": 5,
    "zero_tail": 5,
    "scramble_set": 10,
    "swap_sets": 4,
    "garbage": 4,
}
_NAMES = list(MUTATORS)
_CUM_WEIGHTS = [sum(_WEIGHTS[n] for n in _NAMES[: i + 1]) for i in range(len(_NAMES))]


def mutate(rng: random.Random, data: bytes, a: Anatomy, others: Sequence[bytes] = ()) -> tuple[str, bytes]:
    """Apply one to three mutators (weighted); returns the first one's name and the result.

    The anatomy describes the original datagram; later mutators in a stack work on offsets
    that may have moved, which is fine: they clamp to the data, and a stale map is one more
    way to produce something odd.
    """
    stack = rng.choices(_NAMES, cum_weights=_CUM_WEIGHTS, k=rng.choice((1, 1, 1, 2, 2, 3)))
    out = data
    for name in stack:
        out = MUTATORS[name](rng, out, a, others)
    return stack[0], out
