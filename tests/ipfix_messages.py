"""IPFIX messages built byte by byte for the application-name tests: templates with RFC 6759
applicationId (IE 95), applicationName (IE 96) or enterprise elements, data sets of TCP
flows, options data."""

from __future__ import annotations

import struct
from collections.abc import Sequence

VARLEN = 65535
"""Field length of a variable-length element in a template (RFC 7011 §7)."""

# Template 256: addresses, ports, protocol, counters, times, applicationId (variable length).
FLOW_FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8), (2, 8), (152, 8), (153, 8), (95, VARLEN)]
# Template 257: the same with applicationName (IE 96) instead of the id.
NAME_FIELDS = [*FLOW_FIELDS[:-1], (96, VARLEN)]
# Options template 300: scope applicationId, applicationName (what NBAR2 and FortiOS send).
OPTION_FIELDS = [(95, VARLEN), (96, VARLEN)]


def varlen(value: bytes) -> bytes:
    """A variable-length field: one length octet, then the value."""
    return bytes([len(value)]) + value


def app_id(engine: int, selector: int, pen: int | None = None) -> bytes:
    """RFC 6759 applicationId: engine octet, then (engine 20) the PEN, then the selector."""
    return (
        bytes([engine]) + (struct.pack("!I", pen) if pen is not None else b"") + struct.pack("!I", selector)
    )


Field = tuple[int, int] | tuple[int, int, int]
"""A template field: (element id, length) for IANA, (element id, length, PEN) for an enterprise."""


def field_specifier(field: Field) -> bytes:
    """One field specifier (RFC 7011 §3.2): an enterprise element sets the top bit and adds its PEN."""
    if len(field) == 2:
        return struct.pack("!HH", *field)
    eid, length, pen = field
    return struct.pack("!HHI", 0x8000 | eid, length, pen)


def template(tid: int, fields: Sequence[Field], scope: int = 0) -> bytes:
    """A template set (an options template set with ``scope`` scope fields)."""
    head = struct.pack("!HH", tid, len(fields)) + (struct.pack("!H", scope) if scope else b"")
    body = head + b"".join(field_specifier(f) for f in fields)
    return struct.pack("!HH", 3 if scope else 2, 4 + len(body)) + body


def data_set(tid: int, records: list[bytes]) -> bytes:
    """A data set of template ``tid``."""
    body = b"".join(records)
    return struct.pack("!HH", tid, 4 + len(body)) + body


def flow(i: int, dport: int, last: bytes) -> bytes:
    """A record of template 256/257: TCP 10.0.0.(1+i):(40000+i) -> 198.51.100.1:``dport``,
    1000 bytes in 10 packets over 5 ms, then ``last`` (the application field)."""
    ms = 1_700_000_000_000 + i
    return (
        struct.pack("!IIHHBQQQQ", 0x0A000001 + i, 0xC6336401, 40000 + i, dport, 6, 1000, 10, ms, ms + 5)
        + last
    )


def message(sets: list[bytes]) -> bytes:
    """An IPFIX message (observation domain 7) holding ``sets``."""
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), 1_700_000_001, 0, 7) + body
