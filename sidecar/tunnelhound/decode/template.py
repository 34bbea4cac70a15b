"""Templates: what a v9/IPFIX data record looks like, and parsing template sets."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import lru_cache

from tunnelhound.decode.elements import Element, ipfix_element, v9_element
from tunnelhound.errors import DecodeError

VARIABLE_LENGTH = 0xFFFF
"""RFC 7011 §7: a field length of 65535 announces a variable-length encoding."""

_U16 = struct.Struct("!H")
_PAIR = struct.Struct("!HH")
_TRIPLE = struct.Struct("!HHH")
_U32 = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class TemplateField:
    """One field specifier of a template."""

    element: Element
    length: int


@dataclass(frozen=True, slots=True)
class Template:
    """A (data or options) template as the exporter announced it."""

    template_id: int
    fields: tuple[TemplateField, ...]
    scope_count: int = 0
    """Number of leading scope fields; > 0 only for options templates."""
    is_options: bool = False
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Templates key the compiled-layout cache on every data set; hashing the field tuple
        # each time cost more than decoding small sets.
        object.__setattr__(
            self, "_hash", hash((self.template_id, self.fields, self.scope_count, self.is_options))
        )
        # An equal template parsed again (every resend to a fresh session, every exporter of
        # the same model) meets the cache's key in ``==``: with one shared field tuple that is
        # an identity check, not a dataclass comparison per field (5 µs a data set).
        object.__setattr__(self, "fields", _shared_fields(self.fields))

    def __hash__(self) -> int:
        return self._hash

    @property
    def record_length(self) -> int | None:
        """Bytes per record, or None when a field has variable length."""
        if any(f.length == VARIABLE_LENGTH for f in self.fields):
            return None
        return sum(f.length for f in self.fields)

    @property
    def min_record_length(self) -> int:
        """Smallest possible record: fixed fields plus one length byte per variable field."""
        return sum(1 if f.length == VARIABLE_LENGTH else f.length for f in self.fields)

    def to_json(self) -> dict[str, object]:
        """Plain form for persistence."""
        return {
            "id": self.template_id,
            "scope": self.scope_count,
            "options": self.is_options,
            "fields": [[f.element.pen, f.element.id, f.length] for f in self.fields],
        }

    @classmethod
    def from_json(cls, data: dict[str, object], version: int) -> Template:
        """Inverse of :meth:`to_json`; element definitions are looked up again."""
        raw_fields = data["fields"]
        assert isinstance(raw_fields, list)
        fields = tuple(
            TemplateField(v9_element(eid) if version == 9 else ipfix_element(pen, eid), length)
            for pen, eid, length in raw_fields
        )
        tid = data["id"]
        scope = data["scope"]
        assert isinstance(tid, int) and isinstance(scope, int)
        return cls(tid, fields, scope, bool(data["options"]))


@lru_cache(maxsize=65536)
def _shared_fields(fields: tuple[TemplateField, ...]) -> tuple[TemplateField, ...]:
    """The first field tuple seen equal to ``fields`` (bounded like the layout cache)."""
    return fields


def parse_v9_templates(body: memoryview, options: bool) -> list[Template]:
    """Parse the records of a NetFlow v9 template (id 0) or options template (id 1) flowset.

    Returns templates with zero fields for nothing: a v9 template always has fields.
    """
    out: list[Template] = []
    pos, end = 0, len(body)
    while end - pos >= 4:
        if options:
            if end - pos < 6:
                break
            tid, scope_len, opt_len = _TRIPLE.unpack_from(body, pos)
            pos += 6
            if scope_len % 4 or opt_len % 4 or pos + scope_len + opt_len > end:
                raise DecodeError("bad_template", f"options template {tid} lengths {scope_len}/{opt_len}")
            fields = []
            for i in range(0, scope_len + opt_len, 4):
                ftype, flen = _PAIR.unpack_from(body, pos + i)
                # v9 scope types 1-5 (system, interface, line card, cache, template) are
                # not IPFIX elements; name them apart so they never shadow flow fields.
                elem = _v9_scope_element(ftype) if i < scope_len else v9_element(ftype)
                fields.append(TemplateField(elem, flen))
            pos += scope_len + opt_len
            if tid < 256:
                raise DecodeError("bad_template", f"template id {tid} < 256")
            out.append(Template(tid, tuple(fields), scope_len // 4, True))
        else:
            tid, count = _PAIR.unpack_from(body, pos)
            pos += 4
            if tid == 0 and count == 0:
                break  # padding at the end of the flowset
            if tid < 256:
                raise DecodeError("bad_template", f"template id {tid} < 256")
            if pos + 4 * count > end:
                raise DecodeError("bad_template", f"template {tid} field count {count} exceeds flowset")
            fields = []
            for _ in range(count):
                ftype, flen = _PAIR.unpack_from(body, pos)
                pos += 4
                fields.append(TemplateField(v9_element(ftype), flen))
            out.append(Template(tid, tuple(fields)))
    return out


_V9_SCOPES = {
    1: "scope_system",
    2: "scope_interface",
    3: "scope_line_card",
    4: "scope_cache",
    5: "scope_template",
}


def _v9_scope_element(ftype: int) -> Element:
    name = _V9_SCOPES.get(ftype)
    if name is None:
        return v9_element(ftype)
    return Element(0, ftype, name, "unsigned64")


def parse_ipfix_templates(body: memoryview, options: bool) -> tuple[list[Template], list[int]]:
    """Parse an IPFIX template (set id 2) or options template (3) set.

    Returns the templates and the ids of templates withdrawn (field count 0, RFC 7011 §8.1).
    """
    out: list[Template] = []
    withdrawn: list[int] = []
    pos, end = 0, len(body)
    while end - pos >= 4:
        tid, count = _PAIR.unpack_from(body, pos)
        pos += 4
        if count == 0:
            if tid == 0:
                break  # set padding
            withdrawn.append(tid)
            continue
        scope = 0
        if options:
            if end - pos < 2:
                raise DecodeError("bad_template", f"options template {tid} truncated")
            (scope,) = _U16.unpack_from(body, pos)
            pos += 2
            if scope == 0 or scope > count:
                raise DecodeError("bad_template", f"options template {tid} scope count {scope}")
        if tid < 256:
            raise DecodeError("bad_template", f"template id {tid} < 256")
        fields = []
        for _ in range(count):
            if end - pos < 4:
                raise DecodeError("bad_template", f"template {tid} truncated")
            eid, flen = _PAIR.unpack_from(body, pos)
            pos += 4
            pen = 0
            if eid & 0x8000:
                if end - pos < 4:
                    raise DecodeError("bad_template", f"template {tid} truncated enterprise number")
                (pen,) = _U32.unpack_from(body, pos)
                pos += 4
                eid &= 0x7FFF
            fields.append(TemplateField(ipfix_element(pen, eid), flen))
        out.append(Template(tid, tuple(fields), scope, options))
    return out, withdrawn
