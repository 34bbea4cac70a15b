"""Read UDP datagrams out of pcap and pcapng capture files, in pure Python.

Every UDP packet on any port becomes a :class:`~tunnelhound.model.Datagram` carrying the UDP
payload, the IP source address and port, and the capture timestamp.  Packets that cannot
yield one (not UDP, IP fragments, cut short by the snap length, unknown link types) are
counted in :class:`CaptureStats`, never raised: one odd packet must not stop a replay.  Only a
file that is not a capture at all raises :class:`~tunnelhound.errors.SourceError`.

Supported: pcap in both byte orders with micro- or nanosecond timestamps; pcapng sections in
either byte order with per-interface link type, ``if_tsresol`` and ``if_tsoffset``, Enhanced,
Simple and (obsolete) Packet Blocks.  Link types: Ethernet (with 802.1Q/802.1ad tags), raw IP,
BSD null/loopback, Linux cooked capture v1 and v2.
"""

from __future__ import annotations

import mmap
import os
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Final

from tunnelhound.errors import SourceError
from tunnelhound.model import Datagram

__all__ = ["PCAPNG_MAGIC", "PCAP_MAGICS", "CaptureReader", "CaptureStats", "read_capture"]

# First four bytes of a pcap file, as stored on disk, mapped to (byte order, ticks per second).
PCAP_MAGICS: Final[dict[bytes, tuple[str, int]]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
# The Section Header Block type reads the same in both byte orders (a palindrome on purpose).
PCAPNG_MAGIC: Final = b"\x0a\x0d\x0d\x0a"

# pcap: global header after the magic, then a 16-byte header per record.
_PCAP_GLOBAL = {bo: struct.Struct(bo + "HHiIII") for bo in "<>"}
_PCAP_RECORD = {bo: struct.Struct(bo + "IIII") for bo in "<>"}
_PCAP_GLOBAL_LEN: Final = 24
_PCAP_RECORD_LEN: Final = 16

# pcapng: every block starts with type and total length; bodies per block type.
_BLOCK_HEAD = {bo: struct.Struct(bo + "II") for bo in "<>"}
_U32 = {bo: struct.Struct(bo + "I") for bo in "<>"}
_U64 = {bo: struct.Struct(bo + "q") for bo in "<>"}
_OPTION_HEAD = {bo: struct.Struct(bo + "HH") for bo in "<>"}
_IDB = {bo: struct.Struct(bo + "HHI") for bo in "<>"}
_EPB = {bo: struct.Struct(bo + "IIIII") for bo in "<>"}
_PB = {bo: struct.Struct(bo + "HHIIII") for bo in "<>"}
_SPB = {bo: struct.Struct(bo + "I") for bo in "<>"}
_BYTE_ORDER_MAGICS: Final = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_BLOCK_SHB: Final = 0x0A0D0D0A
_BLOCK_IDB: Final = 1
_BLOCK_PB: Final = 2
_BLOCK_SPB: Final = 3
_BLOCK_EPB: Final = 6
_OPT_END: Final = 0
_OPT_TSRESOL: Final = 9
_OPT_TSOFFSET: Final = 14

# Network headers are big-endian whatever the file's byte order.
_U16BE = struct.Struct("!H")
_U32BE = struct.Struct("!I")
_U32LE = struct.Struct("<I")
_IPV4_HEAD = struct.Struct("!BBHHHBB")  # version/ihl, tos, total length, id, flags/offset, ttl, proto
_IPV6_HEAD = struct.Struct("!IHBB")  # version/class/label, payload length, next header, hop limit
_UDP_HEAD = struct.Struct("!HHH")  # source port, destination port, length (checksum unused)

_ETHERTYPE_IPV4: Final = 0x0800
_ETHERTYPE_IPV6: Final = 0x86DD
_ETHERTYPE_VLAN: Final = frozenset({0x8100, 0x88A8, 0x9100})  # 802.1Q, 802.1ad, pre-standard QinQ
_PROTO_UDP: Final = 17
_IPV6_SKIP_8: Final = frozenset({0, 43, 60, 135, 139, 140})  # hop-by-hop, routing, dest-opts, ...
_IPV6_FRAGMENT: Final = 44
_IPV6_AH: Final = 51
# AF_INET6 differs per OS that wrote a DLT_NULL capture: Linux 10, NetBSD/OpenBSD 24,
# FreeBSD 28, macOS 30; AF_INET is 2 everywhere.
_AF_INET: Final = 2
_AF_INET6: Final = frozenset({10, 24, 28, 30})

_LINK_NULL: Final = 0
_LINK_ETHERNET: Final = 1
_LINK_RAW: Final = 101
_LINK_LOOP: Final = 108
_LINK_SLL: Final = 113
_LINK_IPV4: Final = 228
_LINK_IPV6: Final = 229
_LINK_SLL2: Final = 276

_MAX_BLOCK: Final = 256 * 1024 * 1024  # larger than any sane block: the length field is garbage


@dataclass(slots=True)
class CaptureStats:
    """What a capture read found; every packet lands in exactly one of the outcome counters."""

    packets: int = 0
    udp_datagrams: int = 0
    skipped_non_udp: int = 0
    skipped_fragments: int = 0
    skipped_link_type: int = 0
    truncated: int = 0
    """Cut short by the snap length or the end of the file, or with impossible length fields."""

    def as_dict(self) -> dict[str, int]:
        """Return the counters by name (for metrics and logs)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# Outcome of decoding one packet: a (payload, ip, port) triple or the name of the counter to bump.
_Decoded = tuple[bytes, str, int] | str
_LinkDecoder = Callable[[bytes], _Decoded]


def _ip_layer(data: bytes, offset: int, version: int) -> _Decoded:
    """Decode IPv4/IPv6 + UDP starting at ``offset``; ``version`` 0 means read it from the header."""
    if len(data) < offset + 1:
        return "truncated"
    if version == 0:
        version = data[offset] >> 4
    if version == 4:
        if len(data) < offset + 20:
            return "truncated"
        ver_ihl, _tos, total, _ident, frag, _ttl, proto = _IPV4_HEAD.unpack_from(data, offset)
        header_len = (ver_ihl & 0x0F) * 4
        if header_len < 20 or total < header_len:
            return "truncated"
        if frag & 0x3FFF:  # more-fragments flag or a non-zero offset: only the reassembly has it all
            return "skipped_fragments"
        if proto != _PROTO_UDP:
            return "skipped_non_udp"
        ip = socket.inet_ntoa(data[offset + 12 : offset + 16])
        return _udp_layer(data, offset + header_len, offset + total, ip)
    if version == 6:
        if len(data) < offset + 40:
            return "truncated"
        _flow, payload_len, next_header, _hops = _IPV6_HEAD.unpack_from(data, offset)
        ip = socket.inet_ntop(socket.AF_INET6, data[offset + 8 : offset + 24])
        end = offset + 40 + payload_len
        pos = offset + 40
        # Walk the extension header chain until UDP or something we do not look into.
        while next_header != _PROTO_UDP:
            if len(data) < pos + 8:
                return "truncated"
            if next_header in _IPV6_SKIP_8:
                length = (data[pos + 1] + 1) * 8
            elif next_header == _IPV6_AH:
                length = (data[pos + 1] + 2) * 4
            elif next_header == _IPV6_FRAGMENT:
                if _U16BE.unpack_from(data, pos + 2)[0] & 0xFFF9:  # offset or M flag: a real fragment
                    return "skipped_fragments"
                length = 8  # an atomic fragment (RFC 6946) is a whole packet: keep walking
            else:
                return "skipped_non_udp"
            next_header = data[pos]
            pos += length
        return _udp_layer(data, pos, end, ip)
    return "skipped_non_udp"


def _udp_layer(data: bytes, offset: int, ip_end: int, ip: str) -> _Decoded:
    """Decode the UDP header at ``offset``; ``ip_end`` is where the IP packet says it ends."""
    if len(data) < offset + 8:
        return "truncated"
    src_port, _dst_port, length = _UDP_HEAD.unpack_from(data, offset)
    end = offset + length
    # A UDP length below its own header or past the IP packet is corrupt; past the captured
    # bytes it was cut by the snap length.  Either way there is no trustworthy payload.
    if length < 8 or end > ip_end or end > len(data):
        return "truncated"
    return data[offset + 8 : end], ip, src_port


def _link_ethernet(data: bytes) -> _Decoded:
    """Ethernet II, stepping over any stack of VLAN tags."""
    if len(data) < 14:
        return "truncated"
    return _after_vlans(data, 14, _U16BE.unpack_from(data, 12)[0])


def _after_vlans(data: bytes, offset: int, ethertype: int) -> _Decoded:
    """Step over any stack of 802.1Q/802.1ad tags, then dispatch on the inner ethertype."""
    while ethertype in _ETHERTYPE_VLAN:
        if len(data) < offset + 4:
            return "truncated"
        ethertype = _U16BE.unpack_from(data, offset + 2)[0]
        offset += 4
    return _by_ethertype(data, offset, ethertype)


def _by_ethertype(data: bytes, offset: int, ethertype: int) -> _Decoded:
    if ethertype == _ETHERTYPE_IPV4:
        return _ip_layer(data, offset, 4)
    if ethertype == _ETHERTYPE_IPV6:
        return _ip_layer(data, offset, 6)
    return "skipped_non_udp"


def _link_raw(data: bytes) -> _Decoded:
    return _ip_layer(data, 0, 0)


def _link_ipv4(data: bytes) -> _Decoded:
    return _ip_layer(data, 0, 4)


def _link_ipv6(data: bytes) -> _Decoded:
    return _ip_layer(data, 0, 6)


def _link_null(data: bytes) -> _Decoded:
    """BSD loopback: a 4-byte address family in the writer's byte order (DLT_NULL) or big-endian
    (DLT_LOOP); reading it both ways costs nothing and handles captures from either endianness."""
    if len(data) < 4:
        return "truncated"
    family_le = _U32LE.unpack_from(data, 0)[0]
    family_be = _U32BE.unpack_from(data, 0)[0]
    if _AF_INET in (family_le, family_be):
        return _ip_layer(data, 4, 4)
    if family_le in _AF_INET6 or family_be in _AF_INET6:
        return _ip_layer(data, 4, 6)
    return "skipped_non_udp"


def _link_sll(data: bytes) -> _Decoded:
    """Linux cooked capture v1: the protocol (an ethertype) sits at bytes 14-15 of 16."""
    if len(data) < 16:
        return "truncated"
    return _after_vlans(data, 16, _U16BE.unpack_from(data, 14)[0])


def _link_sll2(data: bytes) -> _Decoded:
    """Linux cooked capture v2: the protocol comes first, the header is 20 bytes."""
    if len(data) < 20:
        return "truncated"
    return _by_ethertype(data, 20, _U16BE.unpack_from(data, 0)[0])


def _link_unknown(data: bytes) -> _Decoded:
    return "skipped_link_type"


_LINK_DECODERS: Final[dict[int, _LinkDecoder]] = {
    _LINK_NULL: _link_null,
    _LINK_ETHERNET: _link_ethernet,
    _LINK_RAW: _link_raw,
    _LINK_LOOP: _link_null,
    _LINK_SLL: _link_sll,
    _LINK_IPV4: _link_ipv4,
    _LINK_IPV6: _link_ipv6,
    _LINK_SLL2: _link_sll2,
}


def _link_decoder(link_type: int) -> _LinkDecoder:
    # The pcap link-type field carries FCS flags in its upper bits; only the low 16 are the type.
    return _LINK_DECODERS.get(link_type & 0xFFFF, _link_unknown)


@dataclass(slots=True)
class _Interface:
    """One pcapng interface: how to decode its frames and turn its timestamps into seconds."""

    decode: _LinkDecoder
    ticks_per_second: int
    offset_seconds: int


class CaptureReader:
    """Iterate the UDP datagrams of one pcap or pcapng file.

    The file's format is checked when the reader is made, so a file that is not a capture
    raises :class:`SourceError` at once.  Each iteration re-reads the file from the start and
    resets :attr:`stats`; :attr:`bytes_read` follows the position in the file, for progress.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.stats = CaptureStats()
        self.bytes_read = 0
        try:
            with open(self.path, "rb") as handle:
                self.size = os.fstat(handle.fileno()).st_size
                head = handle.read(_PCAP_GLOBAL_LEN)
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot read capture: {exc.strerror or exc}") from exc
        magic = head[:4]
        # Check the file header here too, so a broken file fails when opened, not mid-replay.
        if magic in PCAP_MAGICS:
            self.format = "pcap"
            if len(head) < _PCAP_GLOBAL_LEN:
                raise SourceError(f"{self.path}: pcap global header cut short ({len(head)} bytes)")
        elif magic == PCAPNG_MAGIC:
            self.format = "pcapng"
            order = _BYTE_ORDER_MAGICS.get(head[8:12])
            if order is None:
                raise SourceError(f"{self.path}: pcapng section header at byte 0 has a bad byte-order magic")
            block_len = _U32[order].unpack_from(head, 4)[0]
            if block_len < 28 or block_len % 4 or block_len > self.size:
                raise SourceError(f"{self.path}: pcapng section header has a bad length {block_len}")
        else:
            raise SourceError(
                f"{self.path}: not a pcap or pcapng capture (starts with {magic.hex() or 'nothing'})"
            )

    def __repr__(self) -> str:
        return f"CaptureReader({self.path!r}, format={self.format!r})"

    def __iter__(self) -> Iterator[Datagram]:
        self.stats = CaptureStats()
        self.bytes_read = 0
        try:
            # mmap lets struct read headers in place and slices copy only the packet bytes;
            # the OS pages the file in as we go, so large captures do not sit in memory.
            with (
                open(self.path, "rb") as handle,
                mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view,
            ):
                if self.format == "pcap":
                    yield from self._read_pcap(view)
                else:
                    yield from self._read_pcapng(view)
        except (OSError, ValueError) as exc:  # mmap raises ValueError on a file emptied since __init__
            raise SourceError(f"{self.path}: cannot read capture: {exc}") from exc

    def _emit(self, decode: _LinkDecoder, frame: bytes, received: float) -> Datagram | None:
        """Decode one frame, count its outcome, and return its datagram if it has one."""
        stats = self.stats
        stats.packets += 1
        outcome = decode(frame)
        if isinstance(outcome, str):
            setattr(stats, outcome, getattr(stats, outcome) + 1)
            return None
        stats.udp_datagrams += 1
        payload, ip, port = outcome
        return Datagram(data=payload, exporter_ip=ip, exporter_port=port, received=received)

    def _read_pcap(self, view: mmap.mmap) -> Iterator[Datagram]:
        size = len(view)
        byte_order, ticks = PCAP_MAGICS[view[:4]]
        if size < _PCAP_GLOBAL_LEN:
            raise SourceError(f"{self.path}: pcap global header cut short ({size} bytes)")
        link_type = _PCAP_GLOBAL[byte_order].unpack_from(view, 4)[5]
        decode = _link_decoder(link_type)
        record = _PCAP_RECORD[byte_order]
        emit = self._emit
        pos = _PCAP_GLOBAL_LEN
        while pos < size:
            if size - pos < _PCAP_RECORD_LEN:
                self._truncated_at_end(size)
                return
            seconds, fraction, captured, _original = record.unpack_from(view, pos)
            start = pos + _PCAP_RECORD_LEN
            pos = start + captured
            if pos > size:
                self._truncated_at_end(size)
                return
            self.bytes_read = pos
            datagram = emit(decode, view[start:pos], seconds + fraction / ticks)
            if datagram is not None:
                yield datagram

    def _read_pcapng(self, view: mmap.mmap) -> Iterator[Datagram]:
        size = len(view)
        pos = 0
        byte_order = "<"
        interfaces: list[_Interface] = []
        last_time = 0.0  # a Simple Packet Block has no timestamp: it inherits the previous one
        emit = self._emit
        while pos < size:
            if size - pos < 12:
                self._truncated_at_end(size)
                return
            if view[pos : pos + 4] == PCAPNG_MAGIC:
                # A new section may switch byte order and forgets the previous interfaces.
                order = _BYTE_ORDER_MAGICS.get(view[pos + 8 : pos + 12])
                if order is None:
                    raise SourceError(
                        f"{self.path}: pcapng section header at byte {pos} has a bad byte-order magic"
                    )
                byte_order = order
                interfaces = []
            elif pos == 0:
                raise SourceError(f"{self.path}: pcapng file does not start with a section header")
            block_type, block_len = _BLOCK_HEAD[byte_order].unpack_from(view, pos)
            if block_len < 12 or block_len % 4 or block_len > _MAX_BLOCK:
                if pos == 0:
                    raise SourceError(f"{self.path}: pcapng section header has a bad length {block_len}")
                # Without a sane length there is no next block to resync on: stop, counted.
                self._truncated_at_end(size)
                return
            if pos + block_len > size:
                self._truncated_at_end(size)
                return
            body = pos + 8
            end = pos + block_len - 4  # the trailing copy of the length is not part of the body
            pos += block_len
            self.bytes_read = pos
            if block_type in (_BLOCK_EPB, _BLOCK_PB):
                # Both have a 20-byte fixed part; the obsolete Packet Block squeezes a drop
                # counter next to a 16-bit interface id.
                if end - body < 20:
                    self._count_truncated()
                    continue
                if block_type == _BLOCK_EPB:
                    iface, ts_high, ts_low, captured, _original = _EPB[byte_order].unpack_from(view, body)
                else:
                    iface, _drops, ts_high, ts_low, captured, _original = _PB[byte_order].unpack_from(
                        view, body
                    )
                data_start = body + 20
                if iface >= len(interfaces) or data_start + captured > end:
                    self._count_truncated()
                    continue
                interface = interfaces[iface]
                whole, part = divmod((ts_high << 32) | ts_low, interface.ticks_per_second)
                last_time = interface.offset_seconds + whole + part / interface.ticks_per_second
                datagram = emit(interface.decode, view[data_start : data_start + captured], last_time)
                if datagram is not None:
                    yield datagram
            elif block_type == _BLOCK_SPB:
                if end - body < 4 or not interfaces:
                    self._count_truncated()
                    continue
                original = _SPB[byte_order].unpack_from(view, body)[0]
                # The captured length is implied: the original length, capped by the block body.
                captured = min(original, end - body - 4)
                datagram = emit(interfaces[0].decode, view[body + 4 : body + 4 + captured], last_time)
                if datagram is not None:
                    yield datagram
            elif block_type == _BLOCK_IDB:
                if end - body < 8:
                    raise SourceError(f"{self.path}: pcapng interface block at byte {body - 8} is too short")
                link_type = _IDB[byte_order].unpack_from(view, body)[0]
                ticks, offset_seconds = self._interface_options(view, body + 8, end, byte_order)
                interfaces.append(_Interface(_link_decoder(link_type), ticks, offset_seconds))
            # Any other block (name resolution, statistics, custom, ...) carries no packets.

    @staticmethod
    def _interface_options(view: mmap.mmap, pos: int, end: int, byte_order: str) -> tuple[int, int]:
        """Return (ticks per second, offset in seconds) from an interface block's options."""
        ticks = 1_000_000  # the default resolution is microseconds
        offset_seconds = 0
        head = _OPTION_HEAD[byte_order]
        while pos + 4 <= end:
            code, length = head.unpack_from(view, pos)
            value = pos + 4
            if code == _OPT_END or value + length > end:
                break
            if code == _OPT_TSRESOL and length >= 1:
                resolution = view[value]
                # High bit set: a power of two; clear: a power of ten.
                ticks = 2 ** (resolution & 0x7F) if resolution & 0x80 else 10**resolution
            elif code == _OPT_TSOFFSET and length >= 8:
                offset_seconds = _U64[byte_order].unpack_from(view, value)[0]
            pos = value + ((length + 3) & ~3)  # option values are padded to 32 bits
        return ticks, offset_seconds

    def _count_truncated(self) -> None:
        self.stats.packets += 1
        self.stats.truncated += 1

    def _truncated_at_end(self, size: int) -> None:
        # The file stops inside a record: a capture still being written, or a cut copy.
        self._count_truncated()
        self.bytes_read = size


def read_capture(path: str | os.PathLike[str]) -> Iterator[Datagram]:
    """Yield one Datagram per UDP packet of a pcap or pcapng file (see :class:`CaptureReader`)."""
    return iter(CaptureReader(path))
