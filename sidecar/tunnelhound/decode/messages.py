"""Split datagrams into messages and sets: NetFlow v5, v9 and IPFIX headers.

Only framing lives here; what a set means is the decoder's business.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from tunnelhound.errors import DecodeError

V5_HEADER = struct.Struct("!HHIIIIBBH")
V5_RECORD_LENGTH = 48
V5_MAX_COUNT = 30
"""Cisco's limit; a larger count means garbage, not a big packet."""
V9_HEADER = struct.Struct("!HHIIII")
IPFIX_HEADER = struct.Struct("!HHIII")
SET_HEADER = struct.Struct("!HH")


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which made
# building the header and set spans of a datagram cost ~2 µs, about as much as decoding
# its records. Nothing changes them after parsing.
@dataclass(slots=True)
class MessageHeader:
    """The fields of a message header that records need."""

    version: int
    export_time: int
    sys_uptime_ms: int | None
    sequence: int
    domain: int
    offset: int
    """Where the message starts in the datagram."""
    count: int = 0
    """Header record count (v5 records, v9 records: unreliable, informational)."""
    sampling: int = 0
    """v5 header sampling field (mode in the top 2 bits, interval in the low 14)."""
    export_nanos: int = 0
    """Sub-second part of the export time (v5 only has it)."""


@dataclass(slots=True)
class SetSpan:
    """One set (flowset) of a message: its id and where its body is."""

    set_id: int
    offset: int
    """Offset of the set header in the datagram."""
    start: int
    end: int


def version_of(data: bytes) -> int:
    """The version field every export format starts with."""
    if len(data) < 2:
        raise DecodeError("truncated_header", f"{len(data)} bytes")
    return int.from_bytes(data[:2], "big")


def v5_packets(data: bytes) -> Iterator[tuple[MessageHeader, int, int]]:
    """Yield (header, records start, record count) for each v5 packet in a buffer.

    Several packets may be concatenated (captures and some relays do that).  A short last
    packet yields the whole records it holds and then raises ``truncated_record``.
    """
    pos, end = 0, len(data)
    while end - pos >= 2:
        if end - pos < V5_HEADER.size:
            raise DecodeError("truncated_header", f"v5 header at {pos}")
        version, count, uptime, secs, nsecs, seq, etype, eid, sampling = V5_HEADER.unpack_from(data, pos)
        if version != 5:
            raise DecodeError("bad_version", f"{version} at offset {pos} of a v5 buffer")
        if count == 0 or count > V5_MAX_COUNT:
            raise DecodeError("bad_count", f"v5 count {count}")
        header = MessageHeader(
            5, secs, uptime, seq, (etype << 8) | eid, pos, count, sampling, nsecs % 1_000_000_000
        )
        start = pos + V5_HEADER.size
        available = (end - start) // V5_RECORD_LENGTH
        if available < count:
            if available:
                yield header, start, available
            raise DecodeError("truncated_record", f"v5 packet at {pos}: {available} of {count} records")
        yield header, start, count
        pos = start + count * V5_RECORD_LENGTH


def v9_message(data: bytes) -> tuple[MessageHeader, list[SetSpan], str | None]:
    """Parse a v9 header and walk its flowsets by length to the end of the datagram.

    The header count is ignored on purpose: softflowd counts only data records.  Returns
    the sets found and, if the walk stopped early, the reason.
    """
    if len(data) < V9_HEADER.size:
        raise DecodeError("truncated_header", f"v9 header, {len(data)} bytes")
    _version, count, uptime, secs, seq, source_id = V9_HEADER.unpack_from(data, 0)
    header = MessageHeader(9, secs, uptime, seq, source_id, 0, count)
    sets, problem = _walk_sets(data, V9_HEADER.size, len(data))
    return header, sets, problem or _empty(sets)


def ipfix_messages(data: bytes) -> Iterator[tuple[MessageHeader, list[SetSpan], str | None]]:
    """Yield each IPFIX message of a buffer (its header length says where the next starts)."""
    pos, end = 0, len(data)
    while end - pos >= 2:
        if end - pos < IPFIX_HEADER.size:
            raise DecodeError("truncated_header", f"IPFIX header at {pos}")
        version, length, export_time, seq, domain = IPFIX_HEADER.unpack_from(data, pos)
        if version != 10:
            raise DecodeError("bad_version", f"{version} at offset {pos} of an IPFIX buffer")
        if length < IPFIX_HEADER.size:
            raise DecodeError("bad_message_length", f"IPFIX length {length}")
        message_end = pos + length
        problem = None
        if message_end > end:
            problem = "truncated_message"
            message_end = end
        header = MessageHeader(10, export_time, None, seq, domain, pos)
        sets, walk_problem = _walk_sets(data, pos + IPFIX_HEADER.size, message_end)
        yield header, sets, problem or walk_problem or _empty(sets)
        pos = message_end


def _empty(sets: list[SetSpan]) -> str | None:
    # A message carries at least one set (RFC 7011 §3, RFC 3954 §4); a bare header (or one
    # followed by zero padding) would otherwise be a datagram that left no trace.
    return None if sets else "empty_message"


def _walk_sets(data: bytes, pos: int, end: int) -> tuple[list[SetSpan], str | None]:
    sets: list[SetSpan] = []
    while end - pos >= SET_HEADER.size:
        set_id, length = SET_HEADER.unpack_from(data, pos)
        if length < SET_HEADER.size:
            # Some exporters (Palo Alto) send one flowset in a zero-filled datagram: a zero
            # tail is padding, anything else is a broken length.
            if set_id == 0 and length == 0 and not any(data[pos:end]):
                return sets, None
            return sets, "bad_set_length"
        if pos + length > end:
            return sets, "truncated_set"
        sets.append(SetSpan(set_id, pos, pos + SET_HEADER.size, pos + length))
        pos += length
    if pos < end and any(data[pos:end]):
        return sets, "trailing_bytes"
    return sets, None
