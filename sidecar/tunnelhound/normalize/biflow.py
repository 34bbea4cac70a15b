"""Biflow stitching and initiator choice (DESIGN §4).

Request and response uniflows (same exporter, reversed 5-tuple, overlapping in time)
become one document carrying both directions' counters.  Which side started the
conversation is decided by evidence, strongest first:

1. the exporter's own ``biflow_direction`` element (RFC 5103: 1 initiator, 2 reverse initiator);
2. TCP flags: the side that sent SYN when the other did not (YAF's initial flags first);
3. the earlier start time;
4. the side whose port is a well-known service port is the responder;
5. the lower port is the responder.

softflowd's biflows order endpoints by address, not by initiator, so exporter biflows go
through the same evidence and are swapped when it says so.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tunnelhound.normalize.locality import direction

_SYN, _ACK, _RST = 0x02, 0x10, 0x04
_ICMP = ("icmp", "ipv6-icmp")
# ICMP/ICMPv6 message types sent by the side that starts an exchange, and their answers.
_ICMP_REQUESTS = frozenset({8, 13, 15, 17, 128, 133, 135, 139})
_ICMP_REPLIES = frozenset({0, 14, 16, 18, 129, 134, 136, 140})
WELL_KNOWN_SERVICES = frozenset(
    {20, 21, 22, 23, 25, 53, 67, 68, 69, 80, 88, 110, 111, 119, 123, 135, 137, 138, 139, 143, 161, 162, 179,
     389, 443, 445, 465, 500, 514, 515, 587, 636, 853, 873, 989, 990, 993, 995, 1080, 1194, 1433, 1521, 1701,
     1723, 1812, 1813, 2049, 3128, 3306, 3389, 4500, 5060, 5061, 5222, 5432, 5900, 6379, 8000, 8008, 8080,
     8443, 8888, 9000, 9200, 9300, 11211, 27017}
)  # fmt: skip
"""Ports taken as a service (responder) side when nothing better decides."""

_FlowKey = tuple[str, str, str, int, str, int]


@dataclass(slots=True)
class StitchStats:
    """What the stitcher did."""

    stitched: int = 0
    unmatched: int = 0
    swapped: int = 0
    evicted: int = 0
    """Uniflows emitted early because ``max_pending`` was reached."""


@dataclass(slots=True)
class _Pending:
    doc: dict[str, Any]
    key: _FlowKey
    start: float
    end: float
    done: bool = False


class BiflowStitcher:
    """Pair uniflows into biflows within ``timeout`` seconds of flow time."""

    def __init__(self, *, timeout: float = 30.0, max_pending: int = 100_000, slack: float = 1.0) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        self.slack = slack
        self.stats = StitchStats()
        self._pending: dict[_FlowKey, list[_Pending]] = {}
        self._order: deque[_Pending] = deque()
        self._count = 0
        self._watermark = float("-inf")

    @property
    def pending(self) -> int:
        """Uniflows waiting for their partner."""
        return self._count

    def push(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Take normalized documents; return those ready to emit (in no guaranteed order)."""
        out: list[dict[str, Any]] = []
        for doc in docs:
            if doc["tunnelhound"]["biflow"] == "exporter":
                orient_exporter_biflow(doc, self.stats)
                out.append(doc)
                continue
            start, end = _seconds(doc["event"]["start"]), _seconds(doc["event"]["end"])
            self._watermark = max(self._watermark, end)
            key = _key(doc, reverse=False)
            partner = self._take_partner(_key(doc, reverse=True), start, end)
            if partner is not None:
                out.append(merge(partner.doc, doc, self.stats))
                continue
            entry = _Pending(doc, key, start, end)
            self._pending.setdefault(key, []).append(entry)
            self._order.append(entry)
            self._count += 1
            if self._count > self.max_pending:
                out.extend(self._emit_oldest(evicted=True))
        out.extend(self._expire())
        return out

    def flush(self) -> list[dict[str, Any]]:
        """Emit everything still waiting (end of a replay, shutdown)."""
        out: list[dict[str, Any]] = []
        while self._count:
            out.extend(self._emit_oldest(evicted=False))
        return out

    def _take_partner(self, key: _FlowKey, start: float, end: float) -> _Pending | None:
        candidates = self._pending.get(key)
        if not candidates:
            return None
        for i, entry in enumerate(candidates):
            if entry.start <= end + self.slack and start <= entry.end + self.slack:
                del candidates[i]
                if not candidates:
                    del self._pending[key]
                entry.done = True
                self._count -= 1
                return entry
        return None

    def _expire(self) -> list[dict[str, Any]]:
        out = []
        limit = self._watermark - self.timeout
        while self._order and (self._order[0].done or self._order[0].end < limit):
            entry = self._order.popleft()
            if not entry.done:
                out.append(self._unmatched(entry))
        return out

    def _emit_oldest(self, *, evicted: bool) -> list[dict[str, Any]]:
        while self._order:
            entry = self._order.popleft()
            if not entry.done:
                if evicted:
                    self.stats.evicted += 1
                return [self._unmatched(entry)]
        return []

    def _unmatched(self, entry: _Pending) -> dict[str, Any]:
        entry.done = True
        candidates = self._pending.get(entry.key, [])
        if entry in candidates:
            candidates.remove(entry)
            if not candidates:
                del self._pending[entry.key]
        self._count -= 1
        self.stats.unmatched += 1
        return entry.doc


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _key(doc: dict[str, Any], *, reverse: bool) -> _FlowKey:
    src, dst, net = doc["source"], doc["destination"], doc["network"]
    transport = net["transport"]
    # ICMP "ports" are type/code, which differ between request and reply: pair on addresses.
    sport, dport = (0, 0) if transport in _ICMP else (src["port"], dst["port"])
    observer = doc["observer"]["ip"]
    if reverse:
        return (observer, transport, dst["ip"], dport, src["ip"], sport)
    return (observer, transport, src["ip"], sport, dst["ip"], dport)


def _flags(doc: dict[str, Any]) -> int:
    nf = doc.get("netflow", {})
    value = nf.get("initial_tcp_flags", nf.get("tcp_control_bits", 0))
    return value if isinstance(value, int) else 0


def _initiator_score(a: dict[str, Any], b: dict[str, Any], a_flags: int, b_flags: int) -> int:
    """+1 when ``a`` started the conversation, -1 when ``b`` did, 0 when nothing tells."""
    transport = a["network"]["transport"]
    if transport in _ICMP:
        a_type, b_type = _icmp_type(a), _icmp_type(b)
        if a_type in _ICMP_REQUESTS or b_type in _ICMP_REPLIES:
            return 1
        if b_type in _ICMP_REQUESTS or a_type in _ICMP_REPLIES:
            return -1
    if transport == "tcp":
        a_syn = bool(a_flags & _SYN) and not (a_flags & _ACK and b_flags & _SYN and not b_flags & _ACK)
        b_syn = bool(b_flags & _SYN) and not (b_flags & _ACK and a_flags & _SYN and not a_flags & _ACK)
        if a_syn != b_syn:
            return 1 if a_syn else -1
    a_start, b_start = a["event"]["start"], b["event"]["start"]
    if a_start != b_start:
        return 1 if a_start < b_start else -1  # ISO strings of one format sort as times
    a_port, b_port = a["source"].get("port", 0), b["source"].get("port", 0)
    a_service, b_service = a_port in WELL_KNOWN_SERVICES, b_port in WELL_KNOWN_SERVICES
    if a_service != b_service:
        return -1 if a_service else 1
    if a_port != b_port:
        return 1 if a_port > b_port else -1
    return 0


def _icmp_type(doc: dict[str, Any]) -> int | None:
    th = doc["tunnelhound"]
    icmp = th.get("icmp") or th.get("icmpv6") or {}
    value = icmp.get("type")
    return value if isinstance(value, int) else None


def merge(first: dict[str, Any], second: dict[str, Any], stats: StitchStats) -> dict[str, Any]:
    """Merge two opposite uniflows into one biflow document based on the initiator's."""
    score = _initiator_score(first, second, _flags(first), _flags(second))
    initiator, responder = (second, first) if score < 0 else (first, second)
    src, dst, net, event = (
        initiator["source"],
        initiator["destination"],
        initiator["network"],
        initiator["event"],
    )
    rsrc = responder["source"]
    dst["bytes"], dst["packets"] = rsrc["bytes"], rsrc["packets"]
    if "mac" in rsrc and "mac" not in dst:
        dst["mac"] = rsrc["mac"]
    net["bytes"] = src["bytes"] + dst["bytes"]
    net["packets"] = src["packets"] + dst["packets"]
    r_event = responder["event"]
    start = min(event["start"], r_event["start"])
    end = max(event["end"], r_event["end"])
    event["duration"] = max(event["duration"], r_event["duration"], _span_ns(start, end))
    event["start"], event["end"] = start, end
    initiator["@timestamp"] = end
    th = initiator["tunnelhound"]
    th["biflow"] = "stitched"
    th["reverse_event_id"] = r_event["id"]
    if "application" not in net and "application" in responder["network"]:
        net["application"] = responder["network"]["application"]
    stats.stitched += 1
    return initiator


def _span_ns(start: str, end: str) -> int:
    return round((_seconds(end) - _seconds(start)) * 1e9)


def orient_exporter_biflow(doc: dict[str, Any], stats: StitchStats) -> None:
    """Swap an exporter-made biflow when the evidence says its destination initiated."""
    nf = doc.get("netflow", {})
    declared = nf.get("biflow_direction")
    if declared in (1, 2):
        if declared == 2:
            swap_sides(doc)
            stats.swapped += 1
        return
    fwd, rev = nf.get("tcp_control_bits", 0), nf.get("reverse_tcp_control_bits", 0)
    if doc["network"]["transport"] == "tcp" and isinstance(fwd, int) and isinstance(rev, int):
        fwd_syn = bool(fwd & _SYN) and not (rev & _SYN and not rev & _ACK)
        rev_syn = bool(rev & _SYN) and not (fwd & _SYN and not fwd & _ACK)
        if fwd_syn != rev_syn:
            if rev_syn:
                swap_sides(doc)
                stats.swapped += 1
            return
    if doc["network"]["transport"] in _ICMP:
        return
    src_port, dst_port = doc["source"]["port"], doc["destination"]["port"]
    src_service, dst_service = src_port in WELL_KNOWN_SERVICES, dst_port in WELL_KNOWN_SERVICES
    if (src_service and not dst_service) or (src_service == dst_service and src_port < dst_port):
        swap_sides(doc)
        stats.swapped += 1


def swap_sides(doc: dict[str, Any]) -> None:
    """Exchange source and destination (ip, port, counters, locality, mac) and fix direction."""
    doc["source"], doc["destination"] = doc["destination"], doc["source"]
    src_internal = doc["source"].get("locality") == "internal"
    dst_internal = doc["destination"].get("locality") == "internal"
    doc["network"]["direction"] = direction(src_internal, dst_internal)
    doc["related"]["ip"] = list(dict.fromkeys([doc["source"]["ip"], doc["destination"]["ip"]]))
