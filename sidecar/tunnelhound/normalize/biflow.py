"""Biflow stitching and initiator choice (DESIGN §4), on :class:`FlowFrame` rows.

Request and response uniflows (same exporter, reversed 5-tuple, overlapping in time)
become one row carrying both directions' counters.  Which side started the conversation
is decided by evidence, strongest first:

1. the exporter's own ``biflow_direction`` element (RFC 5103: 1 initiator, 2 reverse initiator);
2. an ICMP request type (echo, timestamp, ... requests) against its reply;
3. TCP flags: the side that sent SYN when the other did not (YAF's initial flags first);
4. the earlier start time;
5. the side whose port is a well-known service port is the responder;
6. the lower port is the responder.

softflowd's biflows order endpoints by address, not by initiator, so exporter biflows go
through the same evidence and are swapped when it says so.

Pairing is a dict lookup per uniflow; everything else (evidence, merging, swapping) is
done on whole columns.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from tunnelhound.normalize.frame import ABSENT, SWAP_PAIRS, FlowFrame

_SYN, _ACK = 0x02, 0x10
_ICMP_PROTOS = (1, 58)
# ICMP/ICMPv6 message types sent by the side that starts an exchange, and their answers.
_ICMP_REQUESTS = np.array([8, 13, 15, 17, 128, 133, 135, 139])
_ICMP_REPLIES = np.array([0, 14, 16, 18, 129, 134, 136, 140])
WELL_KNOWN_SERVICES = np.array(
    [20, 21, 22, 23, 25, 53, 67, 68, 69, 80, 88, 110, 111, 119, 123, 135, 137, 138, 139, 143, 161, 162, 179,
     389, 443, 445, 465, 500, 514, 515, 587, 636, 853, 873, 989, 990, 993, 995, 1080, 1194, 1433, 1521, 1701,
     1723, 1812, 1813, 2049, 3128, 3306, 3389, 4500, 5060, 5061, 5222, 5432, 5900, 6379, 8000, 8008, 8080,
     8443, 8888, 9000, 9200, 9300, 11211, 27017]
)  # fmt: skip
"""Ports taken as a service (responder) side when nothing better decides."""

_NS = 1_000_000_000
_Key = tuple[str, int, str, int, str, int]
_Ref = tuple[int, int]
"""(chunk id, row) of a waiting uniflow."""


@dataclass(slots=True)
class StitchStats:
    """What the stitcher did."""

    stitched: int = 0
    unmatched: int = 0
    swapped: int = 0
    evicted: int = 0
    """Uniflows emitted early because ``max_pending`` was reached."""


@dataclass(slots=True)
class _Waiting:
    ref: _Ref
    key: _Key
    start: int
    end: int
    done: bool = False


class BiflowStitcher:
    """Pair uniflows into biflows within ``timeout`` seconds of flow time."""

    def __init__(self, *, timeout: float = 30.0, max_pending: int = 100_000, slack: float = 1.0) -> None:
        self.timeout_ns = int(timeout * _NS)
        self.max_pending = max_pending
        self.slack_ns = int(slack * _NS)
        self.stats = StitchStats()
        self._chunks: dict[int, FlowFrame] = {}
        self._alive: dict[int, int] = {}
        self._next_chunk = 0
        self._waiting: dict[_Key, list[_Waiting]] = {}
        self._order: deque[_Waiting] = deque()
        self._count = 0
        self._watermark = -(2**63)
        self._namespace = "default"

    @property
    def pending(self) -> int:
        """Uniflows waiting for their partner."""
        return self._count

    def push(self, frame: FlowFrame) -> FlowFrame:
        """Take normalized rows; return the rows ready to emit."""
        self._namespace = frame.namespace
        kinds = frame.cols["biflow"]
        out = [orient_exporter_biflows(frame.take(kinds != 0), self.stats)] if (kinds != 0).any() else []
        uni = frame.take(kinds == 0) if (kinds != 0).any() else frame
        if uni.n:
            out.append(self._pair(uni))
        out.append(self._expire())
        self._free_dead_chunks()
        return FlowFrame.concat(out, self._namespace)

    def flush(self) -> FlowFrame:
        """Emit everything still waiting (end of a replay, shutdown)."""
        refs = []
        while self._order:
            entry = self._order.popleft()
            if not entry.done:
                refs.append(self._release(entry))
        self.stats.unmatched += len(refs)
        frame = self._gather(refs)
        self._free_dead_chunks()
        return frame

    # ------------------------------------------------------------------ pairing

    def _pair(self, uni: FlowFrame) -> FlowFrame:
        cid = self._next_chunk
        self._next_chunk += 1
        self._chunks[cid] = uni
        self._alive[cid] = 0
        c = uni.cols
        icmp = np.isin(c["proto"], _ICMP_PROTOS)
        # ICMP "ports" are type/code, which differ between request and reply: pair on addresses.
        sport = np.where(icmp, 0, c["src_port"]).tolist()
        dport = np.where(icmp, 0, c["dst_port"]).tolist()
        observer, proto = c["observer"].tolist(), c["proto"].tolist()
        src, dst = c["src_ip"].tolist(), c["dst_ip"].tolist()
        starts, ends = c["start_ns"].tolist(), c["end_ns"].tolist()
        firsts: list[_Ref] = []
        seconds: list[_Ref] = []
        for i in range(uni.n):
            start, end = starts[i], ends[i]
            partner = self._take_partner(
                (observer[i], proto[i], dst[i], dport[i], src[i], sport[i]), start, end
            )
            if partner is not None:
                firsts.append(partner)
                seconds.append((cid, i))
                continue
            entry = _Waiting(
                (cid, i), (observer[i], proto[i], src[i], sport[i], dst[i], dport[i]), start, end
            )
            self._waiting.setdefault(entry.key, []).append(entry)
            self._order.append(entry)
            self._alive[cid] += 1
            self._count += 1
        self._watermark = max(self._watermark, int(c["end_ns"].max()))
        merged = merge_pairs(self._gather(firsts), self._gather(seconds)) if firsts else FlowFrame.empty()
        self.stats.stitched += merged.n
        return merged

    def _take_partner(self, key: _Key, start: int, end: int) -> _Ref | None:
        candidates = self._waiting.get(key)
        if not candidates:
            return None
        slack = self.slack_ns
        for i, entry in enumerate(candidates):
            if entry.start <= end + slack and start <= entry.end + slack:
                del candidates[i]
                if not candidates:
                    del self._waiting[key]
                entry.done = True
                return self._consume(entry)
        return None

    def _consume(self, entry: _Waiting) -> _Ref:
        self._count -= 1
        self._alive[entry.ref[0]] -= 1
        return entry.ref

    def _release(self, entry: _Waiting) -> _Ref:
        """Take a waiting uniflow out to emit it alone."""
        entry.done = True
        candidates = self._waiting.get(entry.key, [])
        if entry in candidates:
            candidates.remove(entry)
            if not candidates:
                del self._waiting[entry.key]
        return self._consume(entry)

    def _expire(self) -> FlowFrame:
        refs = []
        limit = self._watermark - self.timeout_ns
        while self._order and (self._order[0].done or self._order[0].end < limit):
            entry = self._order.popleft()
            if not entry.done:
                refs.append(self._release(entry))
        self.stats.unmatched += len(refs)
        while self._count > self.max_pending and self._order:
            entry = self._order.popleft()
            if not entry.done:
                refs.append(self._release(entry))
                self.stats.unmatched += 1
                self.stats.evicted += 1
        return self._gather(refs)

    def _gather(self, refs: list[_Ref]) -> FlowFrame:
        """Rows of waiting chunks, in the order of ``refs``."""
        if not refs:
            return FlowFrame.empty(self._namespace)
        by_chunk: dict[int, list[int]] = {}
        positions: dict[int, list[int]] = {}
        for pos, (cid, row) in enumerate(refs):
            by_chunk.setdefault(cid, []).append(row)
            positions.setdefault(cid, []).append(pos)
        parts = [self._chunks[cid].take(np.array(rows, dtype=np.intp)) for cid, rows in by_chunk.items()]
        order = np.concatenate([np.array(positions[cid], dtype=np.intp) for cid in by_chunk])
        gathered = FlowFrame.concat(parts, self._namespace)
        return gathered.take(np.argsort(order, kind="stable")) if len(by_chunk) > 1 else gathered

    def _free_dead_chunks(self) -> None:
        """Drop chunks in which no uniflow waits any more (after their rows were gathered)."""
        for cid in [cid for cid, alive in self._alive.items() if alive == 0]:
            del self._alive[cid]
            del self._chunks[cid]


# ---------------------------------------------------------------------------- evidence


def _syn_only(flags: np.ndarray, other: np.ndarray) -> np.ndarray:
    """The side that opened a TCP handshake: SYN set, unless it answered the other's bare SYN."""
    syn = (flags != ABSENT) & ((flags & _SYN) != 0)
    other_bare_syn = (other != ABSENT) & ((other & _SYN) != 0) & ((other & _ACK) == 0)
    answered = ((flags & _ACK) != 0) & other_bare_syn
    return syn & ~answered


def _decide(*rules: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Apply (decided, a_wins) rules in order: the first rule that decides a row wins.

    Returns +1 where side a is the initiator, -1 where side b is, 0 where nothing decided.
    """
    n = len(rules[0][0])
    verdict = np.zeros(n, dtype=np.int8)
    open_rows = np.ones(n, dtype=bool)
    for decided, a_wins in rules:
        apply = open_rows & decided
        verdict[apply] = np.where(a_wins[apply], 1, -1)
        open_rows &= ~decided
    return verdict


def merge_pairs(a: FlowFrame, b: FlowFrame) -> FlowFrame:
    """Merge row i of ``a`` with row i of ``b`` (opposite uniflows) into one biflow row each."""
    ca, cb = a.cols, b.cols
    a_req, b_req = np.isin(ca["icmp_type"], _ICMP_REQUESTS), np.isin(cb["icmp_type"], _ICMP_REQUESTS)
    a_rep, b_rep = np.isin(ca["icmp_type"], _ICMP_REPLIES), np.isin(cb["icmp_type"], _ICMP_REPLIES)
    fa = np.where(ca["initial_flags"] != ABSENT, ca["initial_flags"], ca["flags"])
    fb = np.where(cb["initial_flags"] != ABSENT, cb["initial_flags"], cb["flags"])
    tcp = ca["proto"] == 6
    a_syn, b_syn = _syn_only(fa, fb) & tcp, _syn_only(fb, fa) & tcp
    a_port, b_port = np.maximum(ca["src_port"], 0), np.maximum(cb["src_port"], 0)
    a_svc, b_svc = np.isin(a_port, WELL_KNOWN_SERVICES), np.isin(b_port, WELL_KNOWN_SERVICES)
    verdict = _decide(
        (a_req | b_rep | b_req | a_rep, a_req | b_rep),
        (a_syn != b_syn, a_syn),
        (ca["start_ns"] != cb["start_ns"], ca["start_ns"] < cb["start_ns"]),
        (a_svc != b_svc, b_svc),
        (a_port != b_port, a_port > b_port),
    )
    a_first = verdict >= 0
    init = {name: np.where(a_first, ca[name], cb[name]) for name in ca}
    resp = {name: np.where(a_first, cb[name], ca[name]) for name in ca}
    init["dst_bytes"], init["dst_packets"] = resp["src_bytes"], resp["src_packets"]
    init["rev_flags"] = resp["flags"]  # what the responder sent: RST answers, SYN-ACKs (scan features)
    init["dst_mac"] = np.where(_none(init["dst_mac"]), resp["src_mac"], init["dst_mac"])
    init["application"] = np.where(_none(init["application"]), resp["application"], init["application"])
    earlier = resp["start_ns"] < init["start_ns"]
    later = resp["end_ns"] > init["end_ns"]
    init["start_ns"] = np.where(earlier, resp["start_ns"], init["start_ns"])
    init["start_iso"] = np.where(earlier, resp["start_iso"], init["start_iso"])
    init["end_ns"] = np.where(later, resp["end_ns"], init["end_ns"])
    init["end_iso"] = np.where(later, resp["end_iso"], init["end_iso"])
    init["biflow"] = np.full(a.n, 2, dtype=np.int8)
    init["reverse_event_id"] = resp["event_id"]
    return FlowFrame(a.n, init, a.namespace)


def _none(values: np.ndarray) -> np.ndarray:
    return np.array([v is None for v in values.tolist()], dtype=bool)


def orient_exporter_biflows(frame: FlowFrame, stats: StitchStats) -> FlowFrame:
    """Swap exporter-made biflows whose destination initiated, by the evidence above."""
    c = frame.cols
    declared = c["biflow_direction"]
    tcp = c["proto"] == 6
    fwd_syn, rev_syn = (
        _syn_only(c["flags"], c["rev_flags"]) & tcp,
        _syn_only(c["rev_flags"], c["flags"]) & tcp,
    )
    icmp = np.isin(c["proto"], _ICMP_PROTOS)
    sport, dport = c["src_port"], c["dst_port"]
    s_svc, d_svc = np.isin(sport, WELL_KNOWN_SERVICES), np.isin(dport, WELL_KNOWN_SERVICES)
    verdict = _decide(
        (np.isin(declared, (1, 2)), declared == 1),
        (fwd_syn != rev_syn, fwd_syn),
        (icmp, np.ones(frame.n, dtype=bool)),
        (s_svc != d_svc, d_svc),
        (sport != dport, sport > dport),
    )
    swap = verdict < 0
    stats.swapped += int(swap.sum())
    return swap_sides(frame, swap) if swap.any() else frame


def swap_sides(frame: FlowFrame, mask: np.ndarray) -> FlowFrame:
    """Exchange source and destination on the rows of ``mask``."""
    cols = dict(frame.cols)
    for left, right in SWAP_PAIRS:
        cols[left] = np.where(mask, frame.cols[right], frame.cols[left])
        cols[right] = np.where(mask, frame.cols[left], frame.cols[right])
    return FlowFrame(frame.n, cols, frame.namespace)
