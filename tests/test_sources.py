"""Tests for tunnelhound.sources: capture files, .dat files, replay sniffing and UDP sockets.

Synthetic captures are written here with ``struct`` so every header the reader must walk
(VLAN tags, IPv6 extension headers, cooked-capture headers, pcapng options) is spelled out
next to the expected result.  The lab and vendor files under ``tests/data`` are real.
"""

from __future__ import annotations

import socket
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

import tunnelhound.sources as sources
from tunnelhound.errors import SourceError
from tunnelhound.model import Datagram
from tunnelhound.sources import (
    CaptureReader,
    CaptureStats,
    UdpListener,
    iter_replay,
    open_replay,
    parse_exporter,
    read_capture,
    read_dat,
    sniff_format,
)
from tunnelhound.sources import udp as udp_module

DATA = Path(__file__).resolve().parent / "data"
LAB = DATA / "lab"
VENDOR_DAT = DATA / "vendors" / "dat"

T0 = 1_700_000_000  # whole seconds of every synthetic timestamp


# --- packet builders -------------------------------------------------------------------------


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(sport: int, dport: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 1024, 0, 0)


def ipv4(src: str, dst: str, proto: int, payload: bytes, flags_offset: int = 0) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        0x1234,
        flags_offset,
        64,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return header + payload


def ipv6(src: str, dst: str, next_header: int, payload: bytes) -> bytes:
    return (
        struct.pack("!IHBB", 6 << 28, len(payload), next_header, 64)
        + socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + payload
    )


def ext8(next_header: int) -> bytes:
    """An 8-byte hop-by-hop / destination-options header (PadN filler)."""
    return bytes([next_header, 0, 1, 4, 0, 0, 0, 0])


def ext_fragment(next_header: int, offset: int, more: bool) -> bytes:
    return struct.pack("!BBHI", next_header, 0, (offset << 3) | int(more), 0xABCD)


def ether(ethertype: int, payload: bytes, vlans: tuple[int, ...] = ()) -> bytes:
    frame = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01"
    for i, tpid in enumerate(vlans):
        frame += struct.pack("!HH", tpid, 100 + i)
    return frame + struct.pack("!H", ethertype) + payload


def sll(ethertype: int, payload: bytes) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00", ethertype) + payload


def sll2(ethertype: int, payload: bytes) -> bytes:
    return struct.pack("!HHIHBB8s", ethertype, 0, 2, 1, 0, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00") + payload


# --- capture writers -------------------------------------------------------------------------

PCAP_MAGIC_VARIANTS = [  # (byte order, nanosecond timestamps)
    ("<", False),
    (">", False),
    ("<", True),
    (">", True),
]


def pcap_bytes(
    link_type: int,
    frames: Sequence[tuple[float, bytes]],
    byte_order: str = "<",
    nanos: bool = False,
    snaplen: int = 65535,
    tail: bytes = b"",
) -> bytes:
    """A pcap file; frames longer than ``snaplen`` are cut as tcpdump would cut them."""
    ticks = 1_000_000_000 if nanos else 1_000_000
    out = struct.pack(
        byte_order + "IHHiIII", 0xA1B23C4D if nanos else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, link_type
    )
    for when, frame in frames:
        seconds = int(when)  # split first: when * ticks would lose the fraction to rounding
        fraction = round((when - seconds) * ticks)
        kept = frame[:snaplen]
        out += struct.pack(byte_order + "IIII", seconds, fraction, len(kept), len(frame)) + kept
    return out + tail


def block(byte_order: str, block_type: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(byte_order + "II", block_type, length) + body + struct.pack(byte_order + "I", length)


def option(byte_order: str, code: int, value: bytes) -> bytes:
    return struct.pack(byte_order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(byte_order: str) -> bytes:
    return block(byte_order, 0x0A0D0D0A, struct.pack(byte_order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(byte_order: str, link_type: int, tsresol: int | None = None, tsoffset: int | None = None) -> bytes:
    body = struct.pack(byte_order + "HHI", link_type, 0, 0)
    options = b""
    if tsresol is not None:
        options += option(byte_order, 9, bytes([tsresol]))
    if tsoffset is not None:
        options += option(byte_order, 14, struct.pack(byte_order + "q", tsoffset))
    if options:
        body += options + option(byte_order, 0, b"")
    return block(byte_order, 1, body)


def epb(byte_order: str, interface: int, ticks: int, frame: bytes, captured: int | None = None) -> bytes:
    kept = frame if captured is None else frame[:captured]
    head = struct.pack(
        byte_order + "IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(kept), len(frame)
    )
    return block(byte_order, 6, head + kept)


def spb(byte_order: str, frame: bytes) -> bytes:
    return block(byte_order, 3, struct.pack(byte_order + "I", len(frame)) + frame)


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def dg(data: bytes, ip: str, port: int, received: float) -> Datagram:
    return Datagram(data=data, exporter_ip=ip, exporter_port=port, received=received)


def assert_outcomes_add_up(stats: CaptureStats) -> None:
    outcomes = (
        stats.udp_datagrams
        + stats.skipped_non_udp
        + stats.skipped_fragments
        + stats.skipped_link_type
        + stats.truncated
    )
    assert outcomes == stats.packets


# --- pcap ------------------------------------------------------------------------------------


def ethernet_frames() -> list[tuple[float, bytes]]:
    """Ethernet capture: two datagrams among every kind of packet the reader must skip."""
    return [
        (
            T0 + 0.25,
            ether(0x0800, ipv4("10.0.0.1", "10.0.0.9", 17, udp(2055, 9995, b"v5-one")), vlans=(0x8100,)),
        ),
        (
            T0 + 0.5,
            ether(
                0x0800, ipv4("10.0.0.2", "10.0.0.9", 17, udp(40000, 4739, b"ipfix!")), vlans=(0x88A8, 0x8100)
            ),
        ),
        (T0 + 0.75, ether(0x0800, ipv4("10.0.0.1", "10.0.0.9", 6, tcp(2055, 80)))),
        (T0 + 1.0, ether(0x0806, b"\0" * 28)),  # ARP
        # First fragment (more-fragments set) and a later one (offset 185 * 8): both skipped.
        (T0 + 1.25, ether(0x0800, ipv4("10.0.0.3", "10.0.0.9", 17, udp(1, 2, b"x" * 40), 0x2000))),
        (T0 + 1.5, ether(0x0800, ipv4("10.0.0.3", "10.0.0.9", 17, b"y" * 40, 185))),
        # Don't-fragment flag alone is not a fragment.
        (T0 + 1.75, ether(0x0800, ipv4("10.0.0.4", "10.0.0.9", 17, udp(9, 2055, b"df"), 0x4000))),
    ]


ETHERNET_EXPECTED = [
    dg(b"v5-one", "10.0.0.1", 2055, T0 + 0.25),
    dg(b"ipfix!", "10.0.0.2", 40000, T0 + 0.5),
    dg(b"df", "10.0.0.4", 9, T0 + 1.75),
]


@pytest.mark.parametrize(("byte_order", "nanos"), PCAP_MAGIC_VARIANTS)
def test_pcap_ethernet_all_magics(tmp_path: Path, byte_order: str, nanos: bool) -> None:
    path = write(tmp_path, "eth.pcap", pcap_bytes(1, ethernet_frames(), byte_order, nanos))
    reader = CaptureReader(path)
    assert reader.format == "pcap"
    assert list(reader) == ETHERNET_EXPECTED
    assert reader.stats == CaptureStats(
        packets=7, udp_datagrams=3, skipped_non_udp=2, skipped_fragments=2, skipped_link_type=0, truncated=0
    )
    assert reader.bytes_read == reader.size == path.stat().st_size


def test_pcap_truncated_by_snaplen_and_end_of_file(tmp_path: Path) -> None:
    frames = [
        (T0 + 0.0, ether(0x0800, ipv4("10.0.0.1", "10.0.0.9", 17, udp(2055, 9995, b"a" * 20)))),
        (T0 + 1.0, ether(0x0800, ipv4("10.0.0.1", "10.0.0.9", 17, udp(2055, 9995, b"b" * 200)))),  # cut
        (T0 + 2.0, ether(0x0800, ipv4("10.0.0.1", "10.0.0.9", 17, udp(2055, 9995, b"c" * 30)))),
    ]
    # A record header promising 100 bytes, followed by only 10: a capture cut mid-write.
    tail = struct.pack("<IIII", T0 + 3, 0, 100, 100) + b"z" * 10
    path = write(tmp_path, "cut.pcap", pcap_bytes(1, frames, snaplen=96, tail=tail))
    reader = CaptureReader(path)
    assert list(reader) == [
        dg(b"a" * 20, "10.0.0.1", 2055, T0 + 0.0),
        dg(b"c" * 30, "10.0.0.1", 2055, T0 + 2.0),
    ]
    assert reader.stats.packets == 4
    assert reader.stats.truncated == 2
    assert reader.stats.udp_datagrams == 2
    assert_outcomes_add_up(reader.stats)
    assert reader.bytes_read == path.stat().st_size


def test_pcap_trailing_partial_record_header(tmp_path: Path) -> None:
    frame = ether(0x0800, ipv4("10.0.0.1", "10.0.0.9", 17, udp(2055, 9995, b"ok")))
    path = write(tmp_path, "tail.pcap", pcap_bytes(1, [(T0, frame)], tail=b"\x01\x02\x03"))
    reader = CaptureReader(path)
    assert list(reader) == [dg(b"ok", "10.0.0.1", 2055, T0)]
    assert (reader.stats.packets, reader.stats.truncated) == (2, 1)


def raw_ipv6_packets() -> list[tuple[float, bytes]]:
    payload = udp(9995, 2055, b"v9-over-v6")
    return [
        # Hop-by-hop, then destination options, then UDP.
        (T0 + 0.5, ipv6("2001:db8::1", "2001:db8::9", 0, ext8(60) + ext8(17) + payload)),
        # A real fragment (more-fragments set): skipped.
        (T0 + 1.0, ipv6("2001:db8::2", "2001:db8::9", 44, ext_fragment(17, 0, True) + payload)),
        # An atomic fragment (offset 0, no more fragments) is a whole packet.
        (T0 + 1.5, ipv6("2001:db8::3", "2001:db8::9", 44, ext_fragment(17, 0, False) + payload)),
        # ICMPv6 behind a routing header: not UDP.
        (T0 + 2.0, ipv6("2001:db8::4", "2001:db8::9", 43, ext8(58) + b"\x80\0\0\0\0\0\0\0")),
        # Extension header chain cut short by the capture.
        (T0 + 2.5, ipv6("2001:db8::5", "2001:db8::9", 0, b"\x11\x00\x01")),
    ]


@pytest.mark.parametrize("link_type", [101, 229])
def test_pcap_raw_ipv6_extension_headers(tmp_path: Path, link_type: int) -> None:
    path = write(tmp_path, "v6.pcap", pcap_bytes(link_type, raw_ipv6_packets()))
    reader = CaptureReader(path)
    assert list(reader) == [
        dg(b"v9-over-v6", "2001:db8::1", 9995, T0 + 0.5),
        dg(b"v9-over-v6", "2001:db8::3", 9995, T0 + 1.5),
    ]
    assert reader.stats == CaptureStats(
        packets=5, udp_datagrams=2, skipped_non_udp=1, skipped_fragments=1, skipped_link_type=0, truncated=1
    )


def test_pcap_raw_ipv4_link_type_228(tmp_path: Path) -> None:
    frame = ipv4("192.0.2.7", "192.0.2.8", 17, udp(6343, 2055, b"raw4"))
    path = write(tmp_path, "raw4.pcap", pcap_bytes(228, [(T0, frame)]))
    assert list(read_capture(path)) == [dg(b"raw4", "192.0.2.7", 6343, T0)]


def test_pcap_linux_cooked_v1_and_v2(tmp_path: Path) -> None:
    v4 = ipv4("10.1.1.1", "10.1.1.2", 17, udp(1000, 2055, b"sll2-v4"))
    v6 = ipv6("fe80::1", "fe80::2", 17, udp(1001, 2055, b"sll-v6"))
    sll2_path = write(
        tmp_path, "sll2.pcap", pcap_bytes(276, [(T0, sll2(0x0800, v4)), (T0 + 1, sll2(0x0806, b""))])
    )
    sll_path = write(tmp_path, "sll.pcap", pcap_bytes(113, [(T0, sll(0x86DD, v6))]))
    sll2_reader = CaptureReader(sll2_path)
    assert list(sll2_reader) == [dg(b"sll2-v4", "10.1.1.1", 1000, T0)]
    assert sll2_reader.stats.skipped_non_udp == 1
    assert list(read_capture(sll_path)) == [dg(b"sll-v6", "fe80::1", 1001, T0)]


def test_pcap_null_and_loop_both_family_byte_orders(tmp_path: Path) -> None:
    v4 = ipv4("127.0.0.1", "127.0.0.1", 17, udp(5000, 2055, b"lo4"))
    v6 = ipv6("::1", "::1", 17, udp(5001, 2055, b"lo6"))
    null_frames = [
        (T0, struct.pack("<I", 2) + v4),  # little-endian writer, AF_INET
        (T0 + 1, struct.pack(">I", 2) + v4),  # big-endian writer
        (T0 + 2, struct.pack("<I", 24) + v6),  # OpenBSD AF_INET6
        (T0 + 3, struct.pack("<I", 7) + v4),  # unknown family
    ]
    null_reader = CaptureReader(write(tmp_path, "null.pcap", pcap_bytes(0, null_frames)))
    assert list(null_reader) == [
        dg(b"lo4", "127.0.0.1", 5000, T0),
        dg(b"lo4", "127.0.0.1", 5000, T0 + 1),
        dg(b"lo6", "::1", 5001, T0 + 2),
    ]
    assert null_reader.stats.skipped_non_udp == 1
    loop_frames = [(T0, struct.pack(">I", 30) + v6), (T0 + 1, struct.pack(">I", 2) + v4)]
    assert list(read_capture(write(tmp_path, "loop.pcap", pcap_bytes(108, loop_frames)))) == [
        dg(b"lo6", "::1", 5001, T0),
        dg(b"lo4", "127.0.0.1", 5000, T0 + 1),
    ]


def test_pcap_unknown_link_type_is_counted(tmp_path: Path) -> None:
    path = write(tmp_path, "user0.pcap", pcap_bytes(147, [(T0, b"\0" * 60), (T0 + 1, b"\0" * 60)]))
    reader = CaptureReader(path)
    assert list(reader) == []
    assert reader.stats == CaptureStats(packets=2, skipped_link_type=2)


def test_pcap_link_type_fcs_flag_bits_are_ignored(tmp_path: Path) -> None:
    # Bits 26-31 of the link-type field announce a trailing FCS; the type is the low 16 bits.
    frame = ether(0x0800, ipv4("10.0.0.1", "10.0.0.9", 17, udp(2055, 9995, b"fcs"))) + b"\xde\xad\xbe\xef"
    path = write(tmp_path, "fcs.pcap", pcap_bytes(1 | (1 << 26) | (4 << 28), [(T0, frame)]))
    assert list(read_capture(path)) == [dg(b"fcs", "10.0.0.1", 2055, T0)]


def test_capture_reader_iterates_again_from_the_start(tmp_path: Path) -> None:
    reader = CaptureReader(write(tmp_path, "eth.pcap", pcap_bytes(1, ethernet_frames())))
    assert list(reader) == list(reader) == ETHERNET_EXPECTED
    assert reader.stats.packets == 7  # reset per pass, not doubled


# --- pcapng ----------------------------------------------------------------------------------


@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_pcapng_interfaces_resolutions_and_block_kinds(tmp_path: Path, byte_order: str) -> None:
    bo = byte_order
    v4 = ipv4("10.2.0.1", "10.2.0.9", 17, udp(2055, 9995, b"eth-us"))
    v6 = ipv6("2001:db8::7", "2001:db8::9", 0, ext8(17) + udp(4739, 4739, b"sll2-ns"))
    raw = ipv4("10.2.0.3", "10.2.0.9", 17, udp(6000, 2055, b"raw-2^-20"))
    content = (
        shb(bo)
        + idb(bo, 1)  # 0: Ethernet, default microseconds
        + idb(bo, 276, tsresol=9)  # 1: SLL2, nanoseconds
        + idb(bo, 101, tsresol=0x80 | 20, tsoffset=1000)  # 2: raw IP, 2^-20 s ticks, +1000 s
        + epb(bo, 0, T0 * 1_000_000 + 250_000, ether(0x0800, v4))
        + block(bo, 4, b"\0\0\0\0")  # name resolution block: skipped
        + epb(bo, 1, T0 * 1_000_000_000 + 500_000_000, sll2(0x86DD, v6))
        + spb(bo, ether(0x0800, v4))  # no timestamp: inherits the previous packet's
        + epb(bo, 2, (T0 << 20) + (3 << 18), raw)  # 3/4 of a second in 2^-20 s ticks
        + epb(bo, 0, T0 * 1_000_000, ether(0x0800, ipv4("10.2.0.1", "10.2.0.9", 6, tcp(1, 2))))
        + epb(bo, 0, T0 * 1_000_000, ether(0x0800, v4), captured=40)  # cut in the UDP header
        + block(bo, 0x00000BAD, b"custom block payload")  # custom block: skipped
    )
    reader = CaptureReader(write(tmp_path, "multi.pcapng", content))
    assert reader.format == "pcapng"
    assert list(reader) == [
        dg(b"eth-us", "10.2.0.1", 2055, T0 + 0.25),
        dg(b"sll2-ns", "2001:db8::7", 4739, T0 + 0.5),
        dg(b"eth-us", "10.2.0.1", 2055, T0 + 0.5),
        dg(b"raw-2^-20", "10.2.0.3", 6000, T0 + 1000 + 0.75),
    ]
    assert reader.stats == CaptureStats(
        packets=6, udp_datagrams=4, skipped_non_udp=1, skipped_fragments=0, skipped_link_type=0, truncated=1
    )
    assert reader.bytes_read == len(content)


def test_pcapng_second_section_switches_byte_order_and_resets_interfaces(tmp_path: Path) -> None:
    first = ipv4("10.3.0.1", "10.3.0.9", 17, udp(1111, 2055, b"little"))
    second = ipv4("10.3.0.2", "10.3.0.9", 17, udp(2222, 2055, b"big"))
    content = (
        shb("<")
        + idb("<", 101)
        + epb("<", 0, T0 * 1_000_000, first)
        + shb(">")
        + idb(">", 1, tsresol=3)  # milliseconds; interface 0 is now Ethernet
        + epb(">", 0, T0 * 1000 + 125, ether(0x0800, second))
        + epb(">", 1, T0 * 1000, ether(0x0800, second))  # interface 1 does not exist here
    )
    reader = CaptureReader(write(tmp_path, "sections.pcapng", content))
    assert list(reader) == [
        dg(b"little", "10.3.0.1", 1111, T0),
        dg(b"big", "10.3.0.2", 2222, T0 + 0.125),
    ]
    assert (reader.stats.packets, reader.stats.truncated) == (3, 1)


def test_pcapng_block_cut_at_end_of_file(tmp_path: Path) -> None:
    v4 = ipv4("10.4.0.1", "10.4.0.9", 17, udp(3333, 2055, b"whole"))
    content = shb("<") + idb("<", 101) + epb("<", 0, T0 * 1_000_000, v4)
    content += epb("<", 0, T0 * 1_000_000, v4)[:30]
    reader = CaptureReader(write(tmp_path, "cut.pcapng", content))
    assert list(reader) == [dg(b"whole", "10.4.0.1", 3333, T0)]
    assert (reader.stats.packets, reader.stats.truncated) == (2, 1)
    assert reader.bytes_read == len(content)


def test_not_a_capture_raises_source_error_naming_the_file(tmp_path: Path) -> None:
    text = write(tmp_path, "notes.txt", b"hello, this is not a capture")
    with pytest.raises(
        SourceError, match=r"notes\.txt: not a pcap or pcapng capture \(starts with 68656c6c\)"
    ):
        CaptureReader(text)
    empty = write(tmp_path, "empty.pcap", b"")
    with pytest.raises(
        SourceError, match=r"empty\.pcap: not a pcap or pcapng capture \(starts with nothing\)"
    ):
        read_capture(empty)
    with pytest.raises(SourceError, match=r"missing\.pcap: cannot read capture"):
        CaptureReader(tmp_path / "missing.pcap")


def test_broken_headers_raise_source_error(tmp_path: Path) -> None:
    short = write(tmp_path, "short.pcap", b"\xd4\xc3\xb2\xa1\x02\x00")
    with pytest.raises(SourceError, match=r"short\.pcap: pcap global header cut short \(6 bytes\)"):
        CaptureReader(short)
    bad_order = shb("<").replace(struct.pack("<I", 0x1A2B3C4D), b"XXXX")
    with pytest.raises(
        SourceError, match=r"order\.pcapng: pcapng section header at byte 0 has a bad byte-order"
    ):
        CaptureReader(write(tmp_path, "order.pcapng", bad_order))
    bad_length = shb("<")[:4] + struct.pack("<I", 13) + shb("<")[8:]
    with pytest.raises(SourceError, match=r"length\.pcapng: pcapng section header has a bad length 13"):
        CaptureReader(write(tmp_path, "length.pcapng", bad_length))
    # A later section with a broken header: the packets before it were already yielded.
    good = ipv4("10.4.0.1", "10.4.0.9", 17, udp(3333, 2055, b"before"))
    head = shb("<") + idb("<", 101) + epb("<", 0, T0 * 1_000_000, good)
    reader = iter(CaptureReader(write(tmp_path, "later.pcapng", head + bad_order)))
    assert next(reader) == dg(b"before", "10.4.0.1", 3333, T0)
    with pytest.raises(
        SourceError, match=rf"later\.pcapng: pcapng section header at byte {len(head)} has a bad"
    ):
        next(reader)


# --- real lab captures -----------------------------------------------------------------------

# From `tshark -r tests/data/lab/FILE -T fields -e udp.srcport -Y udp | sort | uniq -c`
# (tshark 4.0.17): every UDP packet comes from 127.0.0.1 and one source port per file.  First
# timestamp and length from `-e frame.time_epoch -e udp.length` (payload = udp.length - 8).
LAB_CAPTURES = [
    ("netflow_v5.pcap", 191, 45503, 1795441731.565405, 704 - 8, 5),
    ("netflow_v9.pcap", 184, 33806, 1795441735.236287, 948 - 8, 9),
    ("ipfix.pcap", 199, 52438, 1795441738.905802, 1076 - 8, 10),
]


@pytest.mark.parametrize(("name", "count", "port", "first_time", "first_len", "version"), LAB_CAPTURES)
def test_lab_captures_match_tshark(
    name: str, count: int, port: int, first_time: float, first_len: int, version: int
) -> None:
    reader = CaptureReader(LAB / name)
    datagrams = list(reader)
    assert len(datagrams) == count
    assert {(d.exporter_ip, d.exporter_port) for d in datagrams} == {("127.0.0.1", port)}
    assert datagrams[0].received == pytest.approx(first_time, abs=1e-6)
    assert len(datagrams[0].data) == first_len
    assert {int.from_bytes(d.data[:2], "big") for d in datagrams} == {version}
    assert reader.stats == CaptureStats(packets=count, udp_datagrams=count)
    assert reader.bytes_read == (LAB / name).stat().st_size


# --- .dat files ------------------------------------------------------------------------------


def test_read_dat_is_one_datagram_with_default_exporter_and_mtime() -> None:
    path = VENDOR_DAT / "netflow5.dat"
    datagrams = list(read_dat(path))
    assert datagrams == [dg(path.read_bytes(), "192.0.2.1", 4444, path.stat().st_mtime)]
    # 12 concatenated v5 packets stay in one buffer: the decoder splits them.
    assert len(datagrams[0].data) == 1728
    assert datagrams[0].data[:2] == b"\x00\x05"


def test_read_dat_with_explicit_exporter_and_time(tmp_path: Path) -> None:
    path = write(tmp_path, "x.dat", b"\x00\x0a\x00\x10payload")
    assert list(read_dat(path, "2001:DB8::5", 2055, received=12.5)) == [
        dg(b"\x00\x0a\x00\x10payload", "2001:db8::5", 2055, 12.5)
    ]
    assert list(read_dat(write(tmp_path, "empty.dat", b""))) == []
    with pytest.raises(SourceError, match=r"nope\.dat: cannot read \.dat file"):
        read_dat(tmp_path / "nope.dat")
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        read_dat(path, "exporter.example", 2055)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1:4444", ("192.0.2.1", 4444)),
        ("10.0.0.1:0", ("10.0.0.1", 0)),
        ("[2001:DB8::1]:2055", ("2001:db8::1", 2055)),
        ("[::1]:65535", ("::1", 65535)),
        ("[::ffff:10.0.0.1]:9995", ("::ffff:10.0.0.1", 9995)),
        ("[192.0.2.1]:2055", ("192.0.2.1", 2055)),  # brackets are harmless around IPv4
    ],
)
def test_parse_exporter_accepts(text: str, expected: tuple[str, int]) -> None:
    assert parse_exporter(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("192.0.2.1", r"expected IPv4:PORT or \[IPv6\]:PORT"),
        ("2001:db8::1:2055", r"IPv6 addresses need brackets"),
        ("[2001:db8::1]2055", r"expected IPv4:PORT or \[IPv6\]:PORT"),
        ("192.0.2.1:", r"port '' is not a number"),
        ("192.0.2.1:http", r"port 'http' is not a number"),
        ("192.0.2.1:-1", r"port '-1' is not a number"),
        ("192.0.2.1:70000", r"port 70000 is out of range 0-65535"),
        ("router.example:2055", r"'router.example' is not an IP address"),
        ("300.1.1.1:2055", r"'300.1.1.1' is not an IP address"),
    ],
)
def test_parse_exporter_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_exporter(text)


# --- replay ----------------------------------------------------------------------------------


def test_open_replay_sniffs_magic_bytes(tmp_path: Path) -> None:
    frame = ipv4("10.9.0.1", "10.9.0.2", 17, udp(7777, 2055, b"sniff"))
    expected = [dg(b"sniff", "10.9.0.1", 7777, T0)]
    files = {
        "pcap": pcap_bytes(101, [(T0, frame)]),
        "pcap-be-ns": pcap_bytes(101, [(T0, frame)], ">", True),
        "pcapng": shb(">") + idb(">", 101) + epb(">", 0, T0 * 1_000_000, frame),
    }
    for name, content in files.items():
        # The extension is deliberately misleading: only the magic bytes decide.
        path = write(tmp_path, f"{name}.dat", content)
        source = open_replay(path)
        assert source.format == name.split("-")[0]
        assert source.size == len(content)
        assert source.bytes_read == 0
        assert list(source) == expected
        assert source.bytes_read == source.size
        assert source.stats is not None and source.stats.udp_datagrams == 1

    dat = open_replay(VENDOR_DAT / "ipfix.dat")
    assert (dat.format, dat.size, dat.stats) == ("dat", 788, None)
    [only] = list(dat)
    assert (only.exporter_ip, only.exporter_port, len(only.data)) == ("192.0.2.1", 4444, 788)
    assert dat.bytes_read == 788
    assert sniff_format(VENDOR_DAT / "netflow5.dat") == "dat"
    assert sniff_format(LAB / "ipfix.pcap") == "pcap"


def test_open_replay_exporter_override(tmp_path: Path) -> None:
    frame = ipv4("10.9.0.1", "10.9.0.2", 17, udp(7777, 2055, b"override"))
    pcap = write(tmp_path, "o.pcap", pcap_bytes(101, [(T0, frame)]))
    assert list(open_replay(pcap, ("198.51.100.1", 2055))) == [dg(b"override", "198.51.100.1", 2055, T0)]
    dat = write(tmp_path, "o.dat", b"raw")
    [only] = list(open_replay(dat, parse_exporter("[2001:db8::2]:9996")))
    assert (only.exporter_ip, only.exporter_port) == ("2001:db8::2", 9996)
    with pytest.raises(SourceError, match=r"absent\.pcap: cannot open replay file"):
        open_replay(tmp_path / "absent.pcap")
    with pytest.raises(SourceError, match=r"o\.pcapng: pcapng section header at byte 0 has a bad byte-order"):
        # pcapng magic is sniffed, but a broken header still fails at open, not halfway through.
        open_replay(write(tmp_path, "o.pcapng", b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00XXXX"))
    assert open_replay(write(tmp_path, "almost.pcapng", b"\x0a\x0d\x0d")).format == "dat"


def test_iter_replay_chains_files_with_one_progress_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dat = write(tmp_path, "one.dat", b"\x00\x09first")
    paths = [LAB / "netflow_v9.pcap", dat]
    quiet = list(iter_replay(paths, progress=False))
    assert len(quiet) == 184 + 1
    assert quiet[-1].data == b"\x00\x09first"
    assert quiet[-1].exporter_ip == "192.0.2.1"
    assert capsys.readouterr().err == ""

    loud = list(iter_replay(paths, progress=True))
    assert loud == quiet
    err = capsys.readouterr().err
    total = (LAB / "netflow_v9.pcap").stat().st_size + dat.stat().st_size
    assert "100%" in err
    assert f"{total / 1024:.0f}k" in err or f"{total / 1024:.1f}k" in err  # one bar over all bytes
    assert err.count("100%") == 1

    with pytest.raises(SourceError, match=r"gone\.pcap"):
        iter_replay([dat, tmp_path / "gone.pcap"]).__next__()


# --- UDP -------------------------------------------------------------------------------------


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def collect(listener: UdpListener, want: int, deadline: float = 5.0) -> list[Datagram]:
    """Receive until ``want`` datagrams arrived or the deadline passed."""
    got: list[Datagram] = []
    end = time.monotonic() + deadline
    while len(got) < want and time.monotonic() < end:
        got.extend(listener.recv_batch(timeout=0.2))
    return got


def test_udp_listener_ipv4_and_ipv6() -> None:
    binds = [("127.0.0.1", 0)]
    if has_ipv6_loopback():
        binds.append(("::1", 0))
    before = time.time()
    with UdpListener(binds, receive_buffer=1 << 20) as listener:
        addresses = listener.addresses
        assert [a[0] for a in addresses] == [b[0] for b in binds]
        assert all(port > 0 for _ip, port in addresses)
        assert listener.effective_receive_buffer >= 1 << 20
        expected = set()
        senders = []
        for ip, port in addresses:
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            sender = socket.socket(family, socket.SOCK_DGRAM)
            sender.bind((ip, 0))
            senders.append(sender)
            sender_port = sender.getsockname()[1]
            for i in range(5):
                payload = f"{ip}#{i}".encode()
                sender.sendto(payload, (ip, port))
                expected.add((payload, ip, sender_port))
        got = collect(listener, len(expected))
        after = time.time()
        for sender in senders:
            sender.close()
    assert {(d.data, d.exporter_ip, d.exporter_port) for d in got} == expected
    assert len(got) == len(expected)
    assert all(before <= d.received <= after for d in got)


def test_udp_listener_batch_limits_timeout_and_fairness() -> None:
    with (
        UdpListener([("127.0.0.1", 0), ("127.0.0.1", 0)], receive_buffer=1 << 20) as listener,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        assert listener.recv_batch(timeout=0.05) == []
        first, second = listener.addresses
        for i in range(20):
            sender.sendto(b"a%d" % i, first)
            sender.sendto(b"b%d" % i, second)
        batch = listener.recv_batch(max_datagrams=10, timeout=1.0)
        # Both sockets were ready: each got half the budget, in arrival order.
        assert [d.data for d in batch] == [b"a%d" % i for i in range(5)] + [b"b%d" % i for i in range(5)]
        assert len({d.received for d in batch}) == 1  # one clock read per drain
        rest = collect(listener, 30)
        assert len(rest) == 30
        with pytest.raises(ValueError, match="max_datagrams must be at least 1"):
            listener.recv_batch(max_datagrams=0)
    with pytest.raises(SourceError, match="closed"):
        listener.recv_batch()
    listener.close()  # a second close is harmless


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_RXQ_OVFL is Linux-only")
def test_udp_listener_counts_kernel_drops() -> None:
    # The smallest buffer the kernel allows holds only a few datagrams; the rest are dropped.
    with (
        UdpListener([("127.0.0.1", 0)], receive_buffer=1) as listener,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        target = listener.addresses[0]
        sent = 200
        for _ in range(sent):
            sender.sendto(b"x" * 1000, target)
        kept = len(collect(listener, sent, deadline=0.5))
        assert 0 < kept < sent
        # The drop counter rides on the next datagram queued, which sees every earlier drop.
        sender.sendto(b"last", target)
        assert [d.data for d in collect(listener, 1)] == [b"last"]
        assert listener.kernel_drops == sent - kept


def test_udp_listener_reports_a_capped_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    rmem_max = Path("/proc/sys/net/core/rmem_max")
    if not rmem_max.exists():
        pytest.skip("needs Linux's net.core.rmem_max")
    cap = int(rmem_max.read_text())
    if cap >= 1 << 30:
        pytest.skip("rmem_max allows 1 GiB")
    # Without SO_RCVBUFFORCE (no CAP_NET_ADMIN) the kernel caps SO_RCVBUF at rmem_max.
    monkeypatch.setattr(udp_module, "_SO_RCVBUFFORCE", None)
    with UdpListener([("127.0.0.1", 0)], receive_buffer=1 << 30) as listener:
        assert listener.buffer_capped is True
        assert listener.effective_receive_buffer == 2 * cap
    with UdpListener([("127.0.0.1", 0)], receive_buffer=cap // 2) as listener:
        assert listener.buffer_capped is False


def test_udp_listener_rejects_bad_binds() -> None:
    with pytest.raises(ValueError, match="'localhost' is not an IP address"):
        UdpListener([("localhost", 0)])
    with pytest.raises(ValueError, match="at least one bind address"):
        UdpListener([])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(SourceError, match=rf"cannot listen on UDP 127\.0\.0\.1:{port}"):
            UdpListener([("127.0.0.1", 0), ("127.0.0.1", port)])


# --- package surface -------------------------------------------------------------------------


def test_exported_members() -> None:
    assert sorted(sources.__all__) == sorted(
        [
            "DEFAULT_EXPORTER",
            "DEFAULT_RECEIVE_BUFFER",
            "CaptureReader",
            "CaptureStats",
            "ReplaySource",
            "UdpListener",
            "iter_replay",
            "open_replay",
            "parse_exporter",
            "read_capture",
            "read_dat",
            "sniff_format",
        ]
    )
    for name in sources.__all__:
        assert getattr(sources, name) is not None
    assert sources.DEFAULT_EXPORTER == ("192.0.2.1", 4444)
    assert sources.DEFAULT_RECEIVE_BUFFER == 32 * 1024 * 1024
