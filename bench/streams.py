"""Synthetic but realistic export streams for the benchmarks: NetFlow v9 and IPFIX.

Both streams carry the same kind of traffic, drawn from a seeded generator so every run
builds identical bytes:

* addresses: a pool of internal hosts in 10.0.0.0/8 and a popularity-skewed pool of public
  addresses; 55 % internal→external, 30 % external→internal, 12 % internal↔internal,
  3 % external↔external (transit);
* services: TCP 443/80/22/25/993/3389/445/8080, UDP 53/443 (QUIC)/123/5353, ICMP echo and
  unreachable (type and code in the destination port, as Cisco and softflowd send them);
  request records go ephemeral → service port, response records the other way; with
  ``paired=True`` every response mirrors a request (reversed 5-tuple, ends within 20 ms of
  it, as a router exports both halves of a conversation), so a biflow stitcher pairs them;
  without, responses are drawn independently and nothing pairs;
* counters: heavy-tailed packet counts (log-normal), bytes = packets x a per-flow mean size;
* times: flow ends spread over ``span_seconds`` (a 1 M-record stream is 50 s of a busy
  router), durations exponential with a 120 s active timeout.

Wire format:

* **v9** (:func:`build_v9`): one Cisco-IOS-like IPv4 template of 18 fields, 49 bytes a
  record, 28 records a 1400-byte datagram. Like softflowd, the template flowset rides at the
  front of a data datagram: the first one and every ``template_every``-th after it. The
  header count is data records plus template records (RFC 3954), sequence numbers count
  export packets, times are sysUpTime-relative (first/last switched).
* **IPFIX** (:func:`build_ipfix`): 13 fields, 56 bytes a record, 24 records a 1400-byte
  message, ``flowStart/EndMilliseconds`` absolute, 8-byte delta counters; sequence numbers
  count data records sent before the message (RFC 7011 §3.1); the template set is resent
  the same way (UDP transport requires it).

Headers and sets are packed with :mod:`struct`; record bodies are packed by a big-endian
numpy structured array whose layout is written out here field by field, independently of
the decoder's template compiler.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "IPFIX_TEMPLATE",
    "V9_TEMPLATE",
    "Cycle",
    "Stream",
    "build_ipfix",
    "build_v9",
    "describe",
]

T0 = 1_735_689_600
"""2025-01-01T00:00:00Z: the stream's first second."""
DEFAULT_SEED = 20_250_101
DATAGRAM_SIZE = 1400
TEMPLATE_ID = 256
ACTIVE_TIMEOUT_MS = 120_000

_V9_HEADER = struct.Struct("!HHIIII")
_IPFIX_HEADER = struct.Struct("!HHIII")
_SET_HEADER = struct.Struct("!HH")
_FIELD = struct.Struct("!HH")

# (element id, length, flow column): the order on the wire.
V9_TEMPLATE: tuple[tuple[int, int, str], ...] = (
    (8, 4, "src"),  # IPV4_SRC_ADDR
    (12, 4, "dst"),  # IPV4_DST_ADDR
    (15, 4, "next_hop"),  # IPV4_NEXT_HOP
    (10, 2, "in_if"),  # INPUT_SNMP
    (14, 2, "out_if"),  # OUTPUT_SNMP
    (2, 4, "packets"),  # IN_PKTS
    (1, 8, "octets"),  # IN_BYTES (64-bit, as current IOS/IOS-XE exports it)
    (22, 4, "first_uptime"),  # FIRST_SWITCHED
    (21, 4, "last_uptime"),  # LAST_SWITCHED
    (7, 2, "sport"),  # L4_SRC_PORT
    (11, 2, "dport"),  # L4_DST_PORT
    (6, 1, "flags"),  # TCP_FLAGS
    (4, 1, "proto"),  # PROTOCOL
    (5, 1, "tos"),  # SRC_TOS
    (16, 2, "src_as"),  # SRC_AS
    (17, 2, "dst_as"),  # DST_AS
    (9, 1, "src_mask"),  # SRC_MASK
    (13, 1, "dst_mask"),  # DST_MASK
)
"""softflowd/Cisco-like NetFlow v9 IPv4 template: 49-byte records."""

IPFIX_TEMPLATE: tuple[tuple[int, int, str], ...] = (
    (8, 4, "src"),  # sourceIPv4Address
    (12, 4, "dst"),  # destinationIPv4Address
    (7, 2, "sport"),  # sourceTransportPort
    (11, 2, "dport"),  # destinationTransportPort
    (4, 1, "proto"),  # protocolIdentifier
    (5, 1, "tos"),  # ipClassOfService
    (6, 2, "flags"),  # tcpControlBits
    (10, 4, "in_if"),  # ingressInterface
    (14, 4, "out_if"),  # egressInterface
    (1, 8, "octets"),  # octetDeltaCount
    (2, 8, "packets"),  # packetDeltaCount
    (152, 8, "start_ms"),  # flowStartMilliseconds
    (153, 8, "end_ms"),  # flowEndMilliseconds
)
"""IPFIX IPv4 template (YAF/nProbe-like): 56-byte records."""

# Service mix: (protocol, port, weight, lowest and highest mean packet size).
_SERVICES: tuple[tuple[int, int, float, int, int], ...] = (
    (6, 443, 0.38, 80, 1400),
    (6, 80, 0.08, 80, 1200),
    (17, 53, 0.16, 60, 300),
    (17, 443, 0.08, 200, 1350),
    (6, 22, 0.03, 60, 600),
    (17, 123, 0.03, 76, 76),
    (6, 25, 0.02, 60, 1000),
    (6, 993, 0.03, 60, 900),
    (6, 3389, 0.02, 60, 1100),
    (6, 445, 0.03, 60, 1400),
    (6, 8080, 0.04, 60, 1300),
    (17, 5353, 0.02, 60, 400),
    (1, 0, 0.08, 28, 84),
)
# TCP flag unions a flow ends with: full sessions mostly, some SYN-only (scans) and resets.
_TCP_FLAGS = np.array([0x1B, 0x1A, 0x18, 0x10, 0x02, 0x12, 0x14, 0x11, 0x19, 0x1F], dtype=np.uint8)
_TCP_FLAG_WEIGHTS = np.array([0.46, 0.14, 0.12, 0.08, 0.07, 0.03, 0.04, 0.03, 0.02, 0.01])
_TOS = np.array([0x00, 0x28, 0xB8, 0x10], dtype=np.uint8)
_TOS_WEIGHTS = np.array([0.86, 0.06, 0.05, 0.03])
# ICMP type<<8|code: echo request, echo reply, port/host unreachable, time exceeded.
_ICMP_CODES = np.array([0x0800, 0x0000, 0x0303, 0x0301, 0x0B00], dtype=np.uint16)
_ICMP_WEIGHTS = np.array([0.45, 0.40, 0.08, 0.04, 0.03])


@dataclass(frozen=True, slots=True)
class Stream:
    """A built stream: datagrams in send order plus what they contain."""

    name: str
    version: int
    datagrams: list[bytes]
    records: int
    """Data records in the stream (the figure our decode must reproduce exactly)."""
    record_length: int
    records_per_datagram: int
    template_datagrams: int
    """Datagrams that carry the template set ahead of their data."""
    octets: int
    """Sum of the raw byte counters, to check decoded values, not just counts."""
    packets: int
    exporter_ip: str
    exporter_port: int
    first_export_time: int
    """Header export time of the first datagram, Unix seconds."""

    @property
    def wire_bytes(self) -> int:
        """Total datagram bytes."""
        return sum(len(d) for d in self.datagrams)


def build_v9(
    records: int,
    *,
    seed: int = DEFAULT_SEED,
    template_every: int = 20,
    datagram_size: int = DATAGRAM_SIZE,
    span_seconds: float | None = None,
    source_id: int = 1,
    paired: bool = False,
    t0: int = T0,
) -> Stream:
    """NetFlow v9 stream of ``records`` data records (see the module doc); flows end from
    ``t0`` (Unix seconds) on."""
    flows = _flows(records, seed, span_seconds, paired, t0)
    boot_uptime_ms = 3 * 86_400_000 + 12_345  # the router has been up three days
    flows["first_uptime"] = (flows["start_ms"] - t0 * 1000 + boot_uptime_ms).astype(np.uint32)
    flows["last_uptime"] = (flows["end_ms"] - t0 * 1000 + boot_uptime_ms).astype(np.uint32)

    def header(sequence: int, pos: int, count: int, export_s: int, payload: bytes) -> bytes:
        uptime = (export_s - t0) * 1000 + boot_uptime_ms
        return _V9_HEADER.pack(9, count, uptime & 0xFFFFFFFF, export_s, sequence & 0xFFFFFFFF, source_id)

    return _stream("v9", 9, flows, V9_TEMPLATE, 0, _V9_HEADER.size, header, template_every, datagram_size,
                   exporter=("192.0.2.10", 2055))  # fmt: skip


def build_ipfix(
    records: int,
    *,
    seed: int = DEFAULT_SEED + 1,
    template_every: int = 20,
    datagram_size: int = DATAGRAM_SIZE,
    span_seconds: float | None = None,
    domain: int = 7,
    paired: bool = False,
    t0: int = T0,
) -> Stream:
    """IPFIX stream of ``records`` data records, one message a datagram (see the module doc);
    flows end from ``t0`` (Unix seconds) on."""
    flows = _flows(records, seed, span_seconds, paired, t0)

    def header(message: int, pos: int, count: int, export_s: int, payload: bytes) -> bytes:
        # Sequence: data records sent in earlier messages of this domain, modulo 2**32.
        return _IPFIX_HEADER.pack(10, _IPFIX_HEADER.size + len(payload), export_s, pos & 0xFFFFFFFF, domain)

    return _stream("ipfix", 10, flows, IPFIX_TEMPLATE, 2, _IPFIX_HEADER.size, header, template_every,
                   datagram_size, exporter=("192.0.2.20", 4739))  # fmt: skip


def _stream(
    name: str,
    version: int,
    flows: dict[str, np.ndarray],
    template: tuple[tuple[int, int, str], ...],
    template_set_id: int,
    header_size: int,
    header: Callable[[int, int, int, int, bytes], bytes],
    template_every: int,
    datagram_size: int,
    *,
    exporter: tuple[str, int],
) -> Stream:
    """Pack ``flows`` into datagrams of one template, the template set in front every
    ``template_every`` datagrams; ``header(n, pos, count, export_s, payload)`` makes each header."""
    records = len(flows["end_ms"])
    body = _pack(template, flows)
    reclen = body.dtype.itemsize
    template_set = _template_set(template_set_id, template)
    per_plain = (datagram_size - header_size - _SET_HEADER.size) // reclen
    per_with_template = (datagram_size - header_size - len(template_set) - _SET_HEADER.size) // reclen
    datagrams: list[bytes] = []
    pos = number = templates = 0
    while pos < records:
        with_template = number % template_every == 0
        take = min(per_with_template if with_template else per_plain, records - pos)
        export_s = _export_second(flows["end_ms"], pos, take)
        sets = [template_set] if with_template else []
        templates += with_template
        sets.append(_data_set(TEMPLATE_ID, body[pos : pos + take].tobytes()))
        payload = b"".join(sets)
        # v9's header count includes the template record, as RFC 3954 says.
        datagrams.append(header(number, pos, take + with_template, export_s, payload) + payload)
        pos += take
        number += 1
    return Stream(
        name=name,
        version=version,
        datagrams=datagrams,
        records=records,
        record_length=reclen,
        records_per_datagram=per_plain,
        template_datagrams=templates,
        octets=int(flows["octets"].sum()),
        packets=int(flows["packets"].sum()),
        exporter_ip=exporter[0],
        exporter_port=exporter[1],
        first_export_time=_export_second(flows["end_ms"], 0, min(per_with_template, records)),
    )


class Cycle:
    """A stream sent over and over as one exporter running on: lap ``k`` is the stream with
    every time (header, records, v9 uptime) ``k * seconds`` later and sequence numbers going on
    from lap ``k - 1``, so a collector sees neither a replay nor a reboot.  A soak cycles a
    short stream this way with flow times that follow the clock.

    The datagrams are kept as one buffer with the byte positions of every time and sequence
    field, so a lap is a few numpy operations, not a parse of each datagram.
    """

    def __init__(self, stream: Stream, seconds: int, later: int = 0) -> None:
        """``seconds``: one lap's span; ``later``: seconds every lap moves on besides (a
        stream built before a soak started then ends its first flows at the start)."""
        self.stream = stream
        self.seconds = seconds
        self.later = later
        self._blob = np.frombuffer(b"".join(stream.datagrams), dtype=np.uint8)
        self._bounds = np.cumsum([0, *(len(d) for d in stream.datagrams)]).tolist()
        v9 = stream.version == 9
        template = V9_TEMPLATE if v9 else IPFIX_TEMPLATE
        reclen = sum(length for _, length, _ in template)
        starts = np.cumsum([0, *(length for _, length, _ in template)]).tolist()
        offsets = {name: starts[i] for i, (_, _, name) in enumerate(template)}
        times = ("first_uptime", "last_uptime") if v9 else ("start_ms", "end_ms")
        header = _V9_HEADER.size if v9 else _IPFIX_HEADER.size
        records: list[int] = []
        for start, datagram in zip(self._bounds, stream.datagrams, strict=False):
            pos = header
            while pos + _SET_HEADER.size <= len(datagram):
                set_id, length = _SET_HEADER.unpack_from(datagram, pos)
                if set_id == TEMPLATE_ID:
                    first = start + pos + _SET_HEADER.size
                    records.extend(
                        range(first, first + (length - _SET_HEADER.size) // reclen * reclen, reclen)
                    )
                pos += max(length, _SET_HEADER.size)
        at = np.array(records, dtype=np.int64)
        heads = np.array(self._bounds[:-1], dtype=np.int64)
        per_lap = len(stream.datagrams) if v9 else stream.records
        # (byte positions, width, unit): v9 header uptime, Unix seconds, packet sequence;
        # IPFIX export seconds, record sequence; then the records' two times.
        self._fields: list[tuple[np.ndarray, int, str]] = (
            [(heads + 4, 4, "ms"), (heads + 8, 4, "s"), (heads + 12, 4, "seq")]
            if v9
            else [(heads + 4, 4, "s"), (heads + 8, 4, "seq")]
        )
        width = 4 if v9 else 8
        self._fields += [(at + offsets[name], width, "ms") for name in times]
        self._per_lap = per_lap

    def lap(self, k: int) -> list[bytes]:
        """The datagrams of lap ``k`` (lap 0 with ``later == 0``: the stream as built)."""
        seconds = self.later + k * self.seconds
        step = {"s": seconds, "ms": seconds * 1000, "seq": k * self._per_lap}
        blob = self._blob.copy()
        for positions, width, unit in self._fields:
            index = positions[:, None] + np.arange(width)
            values = blob[index].view(f">u{width}")[:, 0].astype(np.uint64)
            moved = (values + np.uint64(step[unit])) & np.uint64(2 ** (8 * width) - 1)
            blob[index] = moved.astype(f">u{width}").view(np.uint8).reshape(-1, width)
        data = blob.tobytes()
        bounds = self._bounds
        return [data[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]


# --------------------------------------------------------------------------- pieces


def _template_set(set_id: int, template: tuple[tuple[int, int, str], ...]) -> bytes:
    fields = b"".join(_FIELD.pack(element, length) for element, length, _ in template)
    record = _FIELD.pack(TEMPLATE_ID, len(template)) + fields
    return _SET_HEADER.pack(set_id, _SET_HEADER.size + len(record)) + record


def _data_set(set_id: int, records: bytes) -> bytes:
    # v9 pads flowsets to 32 bits (RFC 3954 §5.3); IPFIX allows the same padding.
    padding = -(len(records) + _SET_HEADER.size) % 4
    return _SET_HEADER.pack(set_id, _SET_HEADER.size + len(records) + padding) + records + b"\0" * padding


def _pack(template: tuple[tuple[int, int, str], ...], flows: dict[str, np.ndarray]) -> np.ndarray:
    """Big-endian packed records, fields in template order, no alignment padding."""
    dtype = np.dtype([(name, f">u{length}") for _, length, name in template])
    n = len(flows["src"])
    out = np.empty(n, dtype=dtype)
    for _, _, name in template:
        out[name] = flows[name]
    return out


def _export_second(end_ms: np.ndarray, pos: int, take: int) -> int:
    """Export time of a datagram: the second after its newest flow ended."""
    return int(end_ms[pos : pos + take].max()) // 1000 + 1


def _flows(
    n: int, seed: int, span_seconds: float | None, paired: bool = False, t0: int = T0
) -> dict[str, np.ndarray]:
    """Draw ``n`` flow records (columns keyed by the names the templates use); ``paired``:
    requests and the responses that mirror them (:func:`_answer`).  The unpaired stream draws
    exactly what it always did, so its bytes do not change."""
    rng = np.random.default_rng(seed)
    span_ms = int((span_seconds if span_seconds is not None else max(1.0, n / 20_000)) * 1000)

    internal = _internal_pool(rng, 4096)
    external = _external_pool(rng, 20_000)
    ranks = np.arange(1, len(external) + 1, dtype=np.float64)
    popularity = 1.0 / ranks**1.1
    popularity /= popularity.sum()

    def pick_internal(k: int) -> np.ndarray:
        return internal[rng.integers(0, len(internal), k)]

    def pick_external(k: int) -> np.ndarray:
        return external[rng.choice(len(external), size=k, p=popularity)]

    # Endpoint kinds: 0 in→ex, 1 ex→in, 2 in→in, 3 ex→ex.
    kind = rng.choice(4, size=n, p=[0.55, 0.30, 0.12, 0.03])
    src = np.where(kind % 2 == 0, pick_internal(n), pick_external(n))
    src = np.where(kind == 3, pick_external(n), src)
    dst = np.where((kind == 0) | (kind == 3), pick_external(n), pick_internal(n))

    weights = np.array([s[2] for s in _SERVICES])
    service = rng.choice(len(_SERVICES), size=n, p=weights / weights.sum())
    proto = np.array([s[0] for s in _SERVICES], dtype=np.uint8)[service]
    port = np.array([s[1] for s in _SERVICES], dtype=np.uint16)[service]
    low = np.array([s[3] for s in _SERVICES])[service]
    high = np.array([s[4] for s in _SERVICES])[service]
    ephemeral = rng.integers(32_768, 61_000, n).astype(np.uint16)
    response = rng.random(n) < 0.45
    if paired:
        response[:] = False  # every drawn record is a request; _answer adds the responses
    sport = np.where(response, port, ephemeral)
    dport = np.where(response, ephemeral, port)
    icmp = proto == 1
    icmp_codes = rng.choice(_ICMP_CODES, size=n, p=_ICMP_WEIGHTS)
    if paired:
        icmp_codes = np.where(icmp_codes == 0, 0x0800, icmp_codes)  # replies come from _answer
    sport = np.where(icmp, 0, sport).astype(np.uint16)
    dport = np.where(icmp, icmp_codes, dport).astype(np.uint16)

    packets = np.maximum(1, np.rint(rng.lognormal(1.6, 1.5, n))).astype(np.uint64)
    packets = np.minimum(packets, 5_000_000)
    mean_size = low + (rng.random(n) * (high - low + 1)).astype(np.int64)
    octets = packets * mean_size.astype(np.uint64)

    flags = np.where(proto == 6, rng.choice(_TCP_FLAGS, size=n, p=_TCP_FLAG_WEIGHTS), 0).astype(np.uint8)
    tos = rng.choice(_TOS, size=n, p=_TOS_WEIGHTS)
    in_if = rng.integers(1, 9, n).astype(np.uint16)
    out_if = rng.integers(1, 9, n).astype(np.uint16)

    end_ms = t0 * 1000 + np.sort(rng.integers(0, span_ms, n))
    duration = np.where(packets > 1, np.minimum(rng.exponential(6_000, n), ACTIVE_TIMEOUT_MS), 0).astype(
        np.int64
    )
    start_ms = end_ms - duration

    gateway = np.uint32(0xC0000201)  # 192.0.2.1
    next_hop = np.where(kind % 2 == 0, gateway + rng.integers(0, 4, n).astype(np.uint32), 0)
    public_as = rng.integers(1_000, 64_000, n).astype(np.uint16)
    src_internal = (kind == 0) | (kind == 2)
    dst_internal = (kind == 1) | (kind == 2)
    src_as = np.where(src_internal, 0, public_as).astype(np.uint16)
    dst_as = np.where(dst_internal, 0, public_as).astype(np.uint16)
    src_mask = np.where(src_internal, 24, rng.integers(16, 25, n)).astype(np.uint8)
    dst_mask = np.where(dst_internal, 24, rng.integers(16, 25, n)).astype(np.uint8)

    flows = {
        "src": src.astype(np.uint32),
        "dst": dst.astype(np.uint32),
        "next_hop": next_hop.astype(np.uint32),
        "in_if": in_if,
        "out_if": out_if,
        "packets": packets,
        "octets": octets,
        "start_ms": start_ms.astype(np.uint64),
        "end_ms": end_ms.astype(np.uint64),
        "sport": sport,
        "dport": dport,
        "flags": flags,
        "proto": proto,
        "tos": tos,
        "src_as": src_as,
        "dst_as": dst_as,
        "src_mask": src_mask,
        "dst_mask": dst_mask,
    }
    return _answer(flows, n, rng) if paired else flows


def _answer(requests: dict[str, np.ndarray], n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` records: the first requests of ``requests`` and a response to each one answered,
    in flow-end order.  Unanswered: 60 % of SYN-only TCP attempts (filtered; the rest get a
    RST), 4 % of UDP requests, 3 % of echo requests, every ICMP error.  A response reverses
    the 5-tuple (ICMP: echo reply), starts one round trip (1 to 50 ms) after its request and ends
    within 20 ms of it; its packets are 0.5 to 1.5 times the request's, its packet size 0.5 to 2.5
    times (echo replies: the same).  DNS and NTP are one datagram each way (5 % of requests
    retried once, a second later); other byte counts vary by up to a byte a packet, as packets
    of a real flow differ in size."""
    proto, flags, dport = requests["proto"], requests["flags"], requests["dport"]
    tcp, icmp = proto == 6, proto == 1
    lookup = (proto == 17) & np.isin(dport, (53, 123))
    # DNS and NTP ask in one datagram (a retry now and then), answered within the round trip.
    requests["packets"] = np.where(lookup, 1 + (rng.random(len(proto)) < 0.05), requests["packets"]).astype(
        np.uint64
    )
    requests["octets"] = np.where(
        lookup, requests["packets"] * rng.integers(60, 120, len(proto)), requests["octets"]
    ).astype(np.uint64)
    requests["start_ms"] = np.where(
        lookup, requests["end_ms"] - (requests["packets"] - 1) * 1000, requests["start_ms"]
    )
    syn_only = tcp & (flags == 0x02)
    draw = rng.random(len(proto))
    answered = np.where(
        tcp, ~syn_only | (draw >= 0.6), np.where(icmp, (dport == 0x0800) & (draw >= 0.03), draw >= 0.04)
    )
    # Fewest requests q whose answers make n records with them: q + answered among them >= n.
    requests["octets"] += np.where(icmp, 0, rng.integers(0, requests["packets"])).astype(np.uint64)
    q = int(np.searchsorted(np.arange(1, len(proto) + 1) + np.cumsum(answered), n)) + 1
    r = np.flatnonzero(answered[:q])[: n - q]
    k = len(r)
    req = {name: col[:q] for name, col in requests.items()}
    packets = req["packets"][r]
    rtcp, ricmp, rsyn = tcp[r], icmp[r], syn_only[r]
    one = rsyn | lookup[r]
    resp_packets = np.where(
        one | ricmp, np.where(one, 1, packets), np.maximum(1, np.rint(packets * rng.uniform(0.5, 1.5, k)))
    ).astype(np.uint64)
    size = req["octets"][r] // np.maximum(packets, 1)
    resp_size = np.where(ricmp, size, np.clip(size * rng.uniform(0.5, 2.5, k), 40, 1500)).astype(np.uint64)
    # Packets of one flow differ in size: the total is not an exact multiple (echo replies are).
    resp_octets = resp_packets * resp_size + np.where(ricmp, 0, rng.integers(0, resp_packets)).astype(
        np.uint64
    )
    end = req["end_ms"][r] + rng.integers(0, 20, k).astype(np.uint64)
    start = np.minimum(req["start_ms"][r] + rng.integers(1, 50, k).astype(np.uint64), end)
    outward = req["src_as"][r] != 0  # the request came from outside: the answer leaves
    gateway = np.uint32(0xC0000201)
    responses = {
        "src": req["dst"][r],
        "dst": req["src"][r],
        "next_hop": np.where(outward, gateway + rng.integers(0, 4, k).astype(np.uint32), 0).astype(np.uint32),
        "in_if": req["out_if"][r],
        "out_if": req["in_if"][r],
        "packets": resp_packets,
        "octets": resp_octets,
        "start_ms": start,
        "end_ms": end,
        "sport": np.where(ricmp, 0, req["dport"][r]).astype(np.uint16),
        "dport": np.where(ricmp, 0x0000, req["sport"][r]).astype(np.uint16),
        "flags": np.where(rtcp, np.where(rsyn, 0x14, req["flags"][r] | 0x10), 0).astype(np.uint8),
        "proto": req["proto"][r],
        "tos": req["tos"][r],
        "src_as": req["dst_as"][r],
        "dst_as": req["src_as"][r],
        "src_mask": req["dst_mask"][r],
        "dst_mask": req["src_mask"][r],
    }
    order = np.argsort(np.concatenate([req["end_ms"], end]), kind="stable")
    return {name: np.concatenate([req[name], responses[name]])[order] for name in requests}


def _internal_pool(rng: np.random.Generator, k: int) -> npt.NDArray[np.uint32]:
    """Hosts in 10.0.0.0/8, clustered in a few hundred /24s like real subnets."""
    subnets = (10 << 24) | (rng.integers(0, 1 << 16, max(1, k // 16)) << 8)
    hosts = rng.integers(1, 255, k)
    return (subnets[rng.integers(0, len(subnets), k)] | hosts).astype(np.uint32)


def _external_pool(rng: np.random.Generator, k: int) -> npt.NDArray[np.uint32]:
    """Public unicast IPv4 addresses (no private, loopback, link-local, CGNAT, multicast)."""
    out: list[np.ndarray] = []
    have = 0
    while have < k:
        draw = rng.integers(1 << 24, 224 << 24, 2 * k, dtype=np.int64).astype(np.uint32)
        first = draw >> 24
        second = (draw >> 16) & 0xFF
        reserved = (
            (first == 10)
            | (first == 127)
            | ((first == 172) & (second >= 16) & (second < 32))
            | ((first == 192) & (second == 168))
            | ((first == 169) & (second == 254))
            | ((first == 100) & (second >= 64) & (second < 128))
            | (first == 0)
        )
        keep = draw[~reserved]
        out.append(keep)
        have += len(keep)
    return np.concatenate(out)[:k]


def describe(stream: Stream) -> str:
    """One line about a stream, for the benchmark's header."""
    return (
        f"{stream.name}: {stream.records:,} records in {len(stream.datagrams):,} datagrams "
        f"({stream.wire_bytes / 1e6:.1f} MB, {stream.record_length} B/record, "
        f"{stream.records_per_datagram}/datagram, template in {stream.template_datagrams}), "
        f"{stream.octets / 1e9:.1f} GB of traffic described"
    )
