"""Deterministic synthetic packet traffic, for feeding a real flow exporter (softflowd).

Nothing here is NetFlow: it builds ordinary Ethernet/IPv4/IPv6 packets (TCP, UDP, ICMP,
ICMPv6) with correct lengths and checksums and writes them as a classic pcap (microsecond
timestamps, link type Ethernet).  ``scripts/make_traffic_pcap.py`` turns :func:`mixed_traffic`
into ``tests/data/traffic/mixed.pcap``; ``tests/oracles.py`` reuses :func:`write_pcap` and
:func:`udp_frame` to wrap export datagrams for tshark.

The conversations use distinct 5-tuples (and ICMP host pairs), so every conversation
direction becomes exactly one exporter flow unless a timeout splits it; :class:`Conversation`
records what was generated.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BASE_TIME_US",
    "SEED",
    "Capture",
    "Conversation",
    "MeteredFlow",
    "Packet",
    "ip_frame",
    "meter",
    "mixed_traffic",
    "read_pcap",
    "udp_frame",
    "write_pcap",
]

SEED = 20240601
"""Seed of the committed capture."""
BASE_TIME_US = 1_717_236_000 * 1_000_000
"""Capture start, 2024-06-01T10:00:00Z, in Unix microseconds."""
CAPTURE_SECONDS = 600

PCAP_MAGIC_US = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
SNAPLEN = 65535
_PCAP_HEADER = struct.Struct("<IHHiIII")
_PCAP_RECORD = struct.Struct("<IIII")

ETHERNET_HEADER_LEN = 14
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Packet:
    """One captured frame: Unix time in microseconds and the Ethernet frame."""

    ts_us: int
    frame: bytes


@dataclass(frozen=True, slots=True)
class Conversation:
    """What the generator made: one bidirectional exchange between two endpoints."""

    kind: str
    protocol: int
    client: str
    server: str
    client_port: int
    server_port: int
    packets_out: int
    """Packets client -> server."""
    packets_back: int
    """Packets server -> client."""
    octets_out: int
    """IP bytes (IP header and payload, as NetFlow counts them) client -> server."""
    octets_back: int
    """IP bytes server -> client."""
    first_us: int
    last_us: int


@dataclass(frozen=True, slots=True)
class Capture:
    """Generated packets in time order, plus the conversations they belong to."""

    packets: list[Packet]
    conversations: list[Conversation]


# --------------------------------------------------------------------------- pcap I/O


def write_pcap(packets: Iterable[Packet], path: Path) -> int:
    """Write ``packets`` as a little-endian microsecond pcap (Ethernet); return the count."""
    count = 0
    with path.open("wb") as out:
        out.write(_PCAP_HEADER.pack(PCAP_MAGIC_US, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        for pkt in packets:
            sec, usec = divmod(pkt.ts_us, 1_000_000)
            out.write(_PCAP_RECORD.pack(sec, usec, len(pkt.frame), len(pkt.frame)))
            out.write(pkt.frame)
            count += 1
    return count


def read_pcap(path: Path) -> list[Packet]:
    """Read a little-endian microsecond pcap as written by :func:`write_pcap`."""
    data = path.read_bytes()
    magic, _major, _minor, _zone, _sigfigs, _snaplen, linktype = _PCAP_HEADER.unpack_from(data)
    if magic != PCAP_MAGIC_US or linktype != LINKTYPE_ETHERNET:
        raise ValueError(f"{path}: not a little-endian microsecond Ethernet pcap")
    packets: list[Packet] = []
    offset = _PCAP_HEADER.size
    while offset < len(data):
        sec, usec, caplen, _wirelen = _PCAP_RECORD.unpack_from(data, offset)
        offset += _PCAP_RECORD.size
        packets.append(Packet(sec * 1_000_000 + usec, data[offset : offset + caplen]))
        offset += caplen
    return packets


# --------------------------------------------------------------------------- a reference flow meter


@dataclass(slots=True)
class MeteredFlow:
    """One bidirectional flow as :func:`meter` sees it; side ``a`` is the lower (address, port)."""

    protocol: int
    a_addr: str
    a_port: int
    b_addr: str
    b_port: int
    packets: list[int]
    """``[a -> b, b -> a]``."""
    octets: list[int]
    """IP bytes (header and payload) ``[a -> b, b -> a]``."""
    first_us: int
    last_us: int


def meter(packets: Iterable[Packet]) -> list[MeteredFlow]:
    """Aggregate packets into flows the way softflowd keys them, with no timeouts.

    Key: protocol and the two (address, port) endpoints, unordered.  TCP/UDP use their
    ports; ICMP and ICMPv6 use port 0 for the sender and ``type * 256 + code`` for the
    receiver (so echo requests and replies are separate flows, as in NetFlow v5).  Times
    span both directions.  Only what :func:`ip_frame` writes is understood (no IP options,
    no extension headers); other frames raise ``ValueError``.
    """
    flows: dict[tuple[int, tuple[bytes, int], tuple[bytes, int]], MeteredFlow] = {}
    for pkt in packets:
        frame = pkt.frame
        (ethertype,) = struct.unpack_from("!H", frame, 12)
        if ethertype == ETHERTYPE_IPV4:
            ip_len = struct.unpack_from("!H", frame, 16)[0]
            proto, l4 = frame[23], ETHERNET_HEADER_LEN + 20
            src, dst = frame[26:30], frame[30:34]
        elif ethertype == ETHERTYPE_IPV6:
            ip_len = 40 + struct.unpack_from("!H", frame, 18)[0]
            proto, l4 = frame[20], ETHERNET_HEADER_LEN + 40
            src, dst = frame[22:38], frame[38:54]
        else:
            raise ValueError(f"not an IP frame at {pkt.ts_us}")
        if proto in (PROTO_TCP, PROTO_UDP):
            sport, dport = struct.unpack_from("!HH", frame, l4)
        elif proto in (PROTO_ICMP, PROTO_ICMPV6):
            sport, dport = 0, frame[l4] << 8 | frame[l4 + 1]
        else:
            sport = dport = 0
        here, there = (src, sport), (dst, dport)
        forward = here <= there
        key = (proto, here, there) if forward else (proto, there, here)
        flow = flows.get(key)
        if flow is None:
            (a_addr, a_port), (b_addr, b_port) = key[1], key[2]
            flow = flows[key] = MeteredFlow(
                protocol=proto,
                a_addr=str(ipaddress.ip_address(a_addr)),
                a_port=a_port,
                b_addr=str(ipaddress.ip_address(b_addr)),
                b_port=b_port,
                packets=[0, 0],
                octets=[0, 0],
                first_us=pkt.ts_us,
                last_us=pkt.ts_us,
            )
        side = 0 if forward else 1
        flow.packets[side] += 1
        flow.octets[side] += ip_len
        flow.first_us = min(flow.first_us, pkt.ts_us)
        flow.last_us = max(flow.last_us, pkt.ts_us)
    return list(flows.values())


# --------------------------------------------------------------------------- packet builders


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _mac(addr: IPAddress) -> bytes:
    # Locally administered MAC derived from the address: stable and unique enough.
    return b"\x02\x00" + addr.packed[-4:]


def _pseudo_header(src: IPAddress, dst: IPAddress, proto: int, length: int) -> bytes:
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, proto, length)
    return src.packed + dst.packed + struct.pack("!I3xB", length, proto)


def ip_frame(src: str, dst: str, proto: int, l4: bytes, *, ttl: int = 64, ident: int = 0) -> bytes:
    """Ethernet + IPv4/IPv6 header (by address family) around an already built L4 payload."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 4:
        header = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident, 0x4000, ttl, proto, 0, s.packed, d.packed
        )
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        ethertype = ETHERTYPE_IPV4
    else:
        header = struct.pack("!IHBB16s16s", 0x60000000, len(l4), proto, ttl, s.packed, d.packed)
        ethertype = ETHERTYPE_IPV6
    return _mac(d) + _mac(s) + struct.pack("!H", ethertype) + header + l4


def _l4_checksummed(src: str, dst: str, proto: int, segment: bytes, offset: int) -> bytes:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    csum = _checksum(_pseudo_header(s, d, proto, len(segment)) + segment)
    if proto == PROTO_UDP and csum == 0:
        csum = 0xFFFF
    return segment[:offset] + struct.pack("!H", csum) + segment[offset + 2 :]


def tcp_frame(
    src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b""
) -> bytes:
    """A TCP segment (20-byte header, window 64240) in an IP frame."""
    ack_no = ack if flags & TCP_ACK else 0
    segment = struct.pack("!HHIIBBHHH", sport, dport, seq, ack_no, 5 << 4, flags, 64240, 0, 0) + payload
    return ip_frame(src, dst, PROTO_TCP, _l4_checksummed(src, dst, PROTO_TCP, segment, 16))


def udp_frame(src: str, dst: str, sport: int, dport: int, payload: bytes, *, checksum: bool = True) -> bytes:
    """A UDP datagram in an IP frame (IPv4 checksum may be left 0 with ``checksum=False``)."""
    segment = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if checksum:
        segment = _l4_checksummed(src, dst, PROTO_UDP, segment, 6)
    return ip_frame(src, dst, PROTO_UDP, segment)


def icmp_echo_frame(src: str, dst: str, reply: bool, ident: int, seq: int, payload: bytes) -> bytes:
    """ICMP (IPv4) or ICMPv6 echo request/reply in an IP frame."""
    if ipaddress.ip_address(src).version == 4:
        body = struct.pack("!BBHHH", 0 if reply else 8, 0, 0, ident, seq) + payload
        body = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
        return ip_frame(src, dst, PROTO_ICMP, body)
    body = struct.pack("!BBHHH", 129 if reply else 128, 0, 0, ident, seq) + payload
    return ip_frame(src, dst, PROTO_ICMPV6, _l4_checksummed(src, dst, PROTO_ICMPV6, body, 2))


def _dns_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"


def dns_query(txid: int, name: str, qtype: int) -> bytes:
    """A recursive DNS query for ``name``."""
    return struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + _dns_name(name) + struct.pack("!HH", qtype, 1)


def dns_response(txid: int, name: str, qtype: int, answers: Sequence[bytes]) -> bytes:
    """A DNS response with one answer per rdata in ``answers`` (NXDOMAIN when empty)."""
    rcode = 0 if answers else 3
    head = struct.pack("!HHHHHH", txid, 0x8180 | rcode, 1, len(answers), 0, 0)
    body = _dns_name(name) + struct.pack("!HH", qtype, 1)
    for rdata in answers:
        body += struct.pack("!HHHIH", 0xC00C, qtype, 1, 300, len(rdata)) + rdata
    return head + body


# --------------------------------------------------------------------------- conversations


class _Builder:
    """Accumulates packets and conversations; hands out unique ports and host pairs."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.packets: list[tuple[int, int, bytes]] = []
        self.conversations: list[Conversation] = []
        self._used_ports: set[tuple[str, int]] = set()
        self._used_pairs: set[tuple[str, str]] = set()

    def payload(self, size: int) -> bytes:
        return self.rng.randbytes(size)

    def ephemeral_port(self, host: str) -> int:
        while True:
            port = self.rng.randint(32768, 60999)
            if (host, port) not in self._used_ports:
                self._used_ports.add((host, port))
                return port

    def fresh_pair(self, clients: Sequence[str], servers: Sequence[str]) -> tuple[str, str]:
        while True:
            pair = (self.rng.choice(clients), self.rng.choice(servers))
            if pair not in self._used_pairs:
                self._used_pairs.add(pair)
                return pair

    def start_time(self, span_s: float = 0.0) -> int:
        """A random conversation start that leaves ``span_s`` before the capture ends."""
        latest = max(1.0, CAPTURE_SECONDS - 5 - span_s)
        return BASE_TIME_US + int(self.rng.uniform(0.5, latest) * 1_000_000)

    def add(
        self,
        kind: str,
        proto: int,
        client: str,
        server: str,
        cport: int,
        sport: int,
        frames: list[tuple[int, bool, bytes]],
    ) -> None:
        """Record a conversation; ``frames`` are (time_us, from_client, frame) in time order."""
        for ts, _out, frame in frames:
            self.packets.append((ts, len(self.packets), frame))
        self.conversations.append(
            Conversation(
                kind=kind,
                protocol=proto,
                client=client,
                server=server,
                client_port=cport,
                server_port=sport,
                packets_out=sum(1 for _, out, _ in frames if out),
                packets_back=sum(1 for _, out, _ in frames if not out),
                octets_out=sum(len(frame) - ETHERNET_HEADER_LEN for _, out, frame in frames if out),
                octets_back=sum(len(frame) - ETHERNET_HEADER_LEN for _, out, frame in frames if not out),
                first_us=frames[0][0],
                last_us=frames[-1][0],
            )
        )

    # ---------------------------------------------------------------- TCP

    def tcp_session(
        self,
        kind: str,
        client: str,
        server: str,
        sport: int,
        exchanges: Sequence[tuple[int, int]],
        *,
        t0: int,
        rtt_us: int,
        think_us: tuple[int, int] = (2_000, 400_000),
    ) -> None:
        """Handshake, request/response ``exchanges`` (bytes each way), FIN teardown."""
        rng = self.rng
        cport = self.ephemeral_port(client)
        mss = 1460 if ":" not in client else 1440
        cseq, sseq = rng.getrandbits(32), rng.getrandbits(32)
        frames: list[tuple[int, bool, bytes]] = []
        t = t0

        def c2s(flags: int, data: bytes = b"") -> None:
            nonlocal cseq
            frames.append((t, True, tcp_frame(client, server, cport, sport, cseq, sseq, flags, data)))
            cseq = (cseq + len(data) + (1 if flags & (TCP_SYN | TCP_FIN) else 0)) & 0xFFFFFFFF

        def s2c(flags: int, data: bytes = b"") -> None:
            nonlocal sseq
            frames.append((t, False, tcp_frame(server, client, sport, cport, sseq, cseq, flags, data)))
            sseq = (sseq + len(data) + (1 if flags & (TCP_SYN | TCP_FIN) else 0)) & 0xFFFFFFFF

        half = rtt_us // 2
        c2s(TCP_SYN)
        t += half
        s2c(TCP_SYN | TCP_ACK)
        t += half
        c2s(TCP_ACK)
        for request, response in exchanges:
            t += rng.randint(*think_us)
            for i, chunk in enumerate(_chunks(request, mss)):
                t += 0 if i == 0 else rng.randint(50, 400)
                c2s(TCP_ACK | TCP_PSH, self.payload(chunk))
            t += half + rng.randint(100, 20_000)
            chunks = _chunks(response, mss)
            if not chunks:
                s2c(TCP_ACK)
            for i, chunk in enumerate(chunks):
                t += 0 if i == 0 else rng.randint(50, 1_500)
                s2c(TCP_ACK | TCP_PSH, self.payload(chunk))
                if i % 2 == 1 or i == len(chunks) - 1:
                    t += rng.randint(20, 300)
                    c2s(TCP_ACK)
        t += rng.randint(1_000, 200_000)
        c2s(TCP_FIN | TCP_ACK)
        t += half
        s2c(TCP_FIN | TCP_ACK)
        t += half
        c2s(TCP_ACK)
        self.add(kind, PROTO_TCP, client, server, cport, sport, frames)

    def tcp_refused(self, client: str, server: str, sport: int, *, t0: int, attempts: int) -> None:
        """SYN answered by RST|ACK (closed port), ``attempts`` times from one source port."""
        rng = self.rng
        cport = self.ephemeral_port(client)
        seq = rng.getrandbits(32)
        frames: list[tuple[int, bool, bytes]] = []
        t = t0
        for attempt in range(attempts):
            t += 0 if attempt == 0 else 1_000_000 * 2**attempt
            frames.append((t, True, tcp_frame(client, server, cport, sport, seq, 0, TCP_SYN)))
            t += rng.randint(200, 30_000)
            frames.append((t, False, tcp_frame(server, client, sport, cport, 0, seq + 1, TCP_RST | TCP_ACK)))
        self.add("tcp_refused", PROTO_TCP, client, server, cport, sport, frames)

    def syn_probe(self, scanner: str, target: str, dport: int, *, t0: int, retries: int) -> None:
        """SYN-only probe to a filtered port (no answer), with SYN retransmissions."""
        cport = self.ephemeral_port(scanner)
        seq = self.rng.getrandbits(32)
        frames = [
            (t0 + i * 1_000_000, True, tcp_frame(scanner, target, cport, dport, seq, 0, TCP_SYN))
            for i in range(1 + retries)
        ]
        self.add("syn_probe", PROTO_TCP, scanner, target, cport, dport, frames)

    # ---------------------------------------------------------------- UDP / ICMP

    def dns_lookup(self, client: str, resolver: str, name: str, *, t0: int) -> None:
        """One query and its response, from a fresh source port."""
        rng = self.rng
        cport = self.ephemeral_port(client)
        txid = rng.getrandbits(16)
        v6 = ":" in client
        qtype = 28 if v6 and rng.random() < 0.6 else 1
        answers: list[bytes] = []
        if rng.random() > 0.1:
            size = 16 if qtype == 28 else 4
            answers = [rng.randbytes(size) for _ in range(rng.randint(1, 4))]
        t1 = t0 + rng.randint(300, 80_000)
        frames = [
            (t0, True, udp_frame(client, resolver, cport, 53, dns_query(txid, name, qtype))),
            (t1, False, udp_frame(resolver, client, 53, cport, dns_response(txid, name, qtype, answers))),
        ]
        self.add("dns", PROTO_UDP, client, resolver, cport, 53, frames)

    def udp_stream(
        self,
        kind: str,
        client: str,
        server: str,
        sport: int,
        *,
        t0: int,
        count: int,
        interval_us: tuple[int, int],
        sizes: tuple[int, int],
        reply_every: int,
    ) -> None:
        """``count`` datagrams client -> server; every ``reply_every``-th is answered (0: never)."""
        rng = self.rng
        cport = self.ephemeral_port(client)
        frames: list[tuple[int, bool, bytes]] = []
        t = t0
        for i in range(count):
            frames.append(
                (t, True, udp_frame(client, server, cport, sport, self.payload(rng.randint(*sizes))))
            )
            if reply_every and i % reply_every == reply_every - 1:
                reply = self.payload(rng.randint(*sizes))
                frames.append(
                    (t + rng.randint(100, 5_000), False, udp_frame(server, client, sport, cport, reply))
                )
            t += rng.randint(*interval_us)
        frames.sort(key=lambda f: f[0])
        self.add(kind, PROTO_UDP, client, server, cport, sport, frames)

    def ping(self, client: str, server: str, *, t0: int, count: int, size: int, lost: int = 0) -> None:
        """``count`` echo requests one second apart; the last ``lost`` get no reply."""
        rng = self.rng
        ident = rng.getrandbits(16)
        payload = self.payload(size)
        proto = PROTO_ICMP if ":" not in client else PROTO_ICMPV6
        frames: list[tuple[int, bool, bytes]] = []
        for seq in range(1, count + 1):
            t = t0 + (seq - 1) * 1_000_000 + rng.randint(0, 3_000)
            frames.append((t, True, icmp_echo_frame(client, server, False, ident, seq, payload)))
            if seq <= count - lost:
                t += rng.randint(300, 60_000)
                frames.append((t, False, icmp_echo_frame(server, client, True, ident, seq, payload)))
        self.add("ping", proto, client, server, 0, 0, frames)

    def capture(self) -> Capture:
        self.packets.sort()
        return Capture([Packet(ts, frame) for ts, _, frame in self.packets], self.conversations)


def _chunks(size: int, mss: int) -> list[int]:
    return [min(mss, size - off) for off in range(0, size, mss)]


# --------------------------------------------------------------------------- the mix

_INTERNAL = [f"10.0.{net}.{host}" for net in (1, 2, 3) for host in range(10, 40)]
_INTERNAL_SERVERS = ["10.0.0.25", "10.0.0.80", "10.0.0.88", "10.0.0.139", "10.0.0.200"]
_EXTERNAL = [f"198.51.100.{h}" for h in range(1, 255, 7)] + [f"203.0.113.{h}" for h in range(2, 255, 9)]
_RESOLVERS = ["10.0.0.53", "198.51.100.53"]
_SCANNER = "203.0.113.66"
_V6_CLIENTS = [f"2001:db8:1::{h:x}" for h in range(0x10, 0x30)]
_V6_SERVERS = ["2001:db8:100::80", "2001:db8:100::443", "2001:db8:200::25"]
_V6_RESOLVER = "2001:db8:100::53"
_NAMES = [
    "www.example.com",
    "mail.example.org",
    "api.example.net",
    "cdn.example.com",
    "updates.example.org",
    "time.example.net",
    "login.example.com",
    "static.example.net",
]


def mixed_traffic(seed: int = SEED) -> Capture:
    """About 300 conversations over ten minutes of capture time (see tests/data/traffic/README.md)."""
    b = _Builder(seed)
    rng = b.rng

    # Web/mail/ssh over TCP/IPv4, to external and internal servers.
    for _ in range(120):
        client = rng.choice(_INTERNAL)
        if rng.random() < 0.75:
            server, port = rng.choice(_EXTERNAL), rng.choice((80, 443, 443, 443, 22, 25))
        else:
            server, port = rng.choice(_INTERNAL_SERVERS), rng.choice((25, 80, 88, 139, 445, 3389))
        exchanges = [
            (rng.randint(60, 700), rng.choice((0, rng.randint(40, 600), rng.randint(600, 4500))))
            for _ in range(rng.choice((1, 1, 1, 2, 3)))
        ]
        b.tcp_session(
            "tcp", client, server, port, exchanges, t0=b.start_time(3), rtt_us=rng.randint(300, 90_000)
        )
    # A long, quiet TCP session (interactive SSH) spanning well over two minutes.
    t0 = b.start_time(240)
    keystrokes = [(rng.choice((36, 52, 68)), rng.choice((36, 52, 100, 420))) for _ in range(60)]
    b.tcp_session(
        "tcp_long",
        "10.0.1.20",
        "198.51.100.22",
        22,
        keystrokes,
        t0=t0,
        rtt_us=30_000,
        think_us=(1_000_000, 7_000_000),
    )
    # Refused connections (closed port: SYN, RST|ACK), some retried from the same port.
    for _ in range(8):
        client = rng.choice(_INTERNAL)
        server = rng.choice(_EXTERNAL + _INTERNAL_SERVERS)
        b.tcp_refused(
            client, server, rng.choice((23, 81, 8081, 1433)), t0=b.start_time(8), attempts=rng.randint(1, 3)
        )
    # SYN-only probes from an external scanner to filtered internal ports.
    for _ in range(20):
        target = rng.choice(_INTERNAL + _INTERNAL_SERVERS)
        b.syn_probe(
            _SCANNER,
            target,
            rng.choice((21, 23, 135, 445, 1433, 3306, 5900, 8080)),
            t0=b.start_time(3),
            retries=rng.randint(0, 2),
        )
    # DNS lookups over UDP/IPv4, one per source port.
    for _ in range(80):
        b.dns_lookup(rng.choice(_INTERNAL), rng.choice(_RESOLVERS), rng.choice(_NAMES), t0=b.start_time(1))
    # Busy UDP flows: voice-like streams with sparse reverse traffic, and syslog (one way).
    for _ in range(4):
        b.udp_stream(
            "udp_bulk",
            rng.choice(_INTERNAL),
            rng.choice(_EXTERNAL),
            rng.choice((5004, 16384, 3478)),
            t0=b.start_time(10),
            count=rng.randint(60, 140),
            interval_us=(15_000, 25_000),
            sizes=(120, 220),
            reply_every=rng.choice((2, 4, 8)),
        )
    # Syslog spanning nearly the whole capture: one long one-way UDP flow.
    b.udp_stream(
        "udp_long",
        "10.0.2.15",
        "10.0.0.200",
        514,
        t0=BASE_TIME_US + 2_000_000,
        count=55,
        interval_us=(8_000_000, 12_000_000),
        sizes=(60, 400),
        reply_every=0,
    )
    # ICMP echo between distinct host pairs (softflowd keys ICMP by type/code, not id).
    for _ in range(20):
        client, server = b.fresh_pair(_INTERNAL, _EXTERNAL + _INTERNAL_SERVERS)
        b.ping(
            client,
            server,
            t0=b.start_time(8),
            count=rng.randint(1, 5),
            size=rng.choice((0, 56, 56, 56, 1000)),
            lost=rng.choice((0, 0, 0, 1)),
        )
    # IPv6: TCP sessions, DNS lookups, ICMPv6 echo.
    for _ in range(15):
        exchanges = [(rng.randint(60, 600), rng.randint(0, 3000)) for _ in range(rng.randint(1, 2))]
        b.tcp_session(
            "tcp6",
            rng.choice(_V6_CLIENTS),
            rng.choice(_V6_SERVERS),
            rng.choice((80, 443, 25)),
            exchanges,
            t0=b.start_time(3),
            rtt_us=rng.randint(500, 60_000),
        )
    for _ in range(15):
        b.dns_lookup(rng.choice(_V6_CLIENTS), _V6_RESOLVER, rng.choice(_NAMES), t0=b.start_time(1))
    for _ in range(8):
        client, server = b.fresh_pair(_V6_CLIENTS, [*_V6_SERVERS, _V6_RESOLVER])
        b.ping(client, server, t0=b.start_time(5), count=rng.randint(1, 4), size=rng.choice((8, 56, 1200)))
    return b.capture()
