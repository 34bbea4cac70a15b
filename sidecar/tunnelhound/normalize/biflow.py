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

Pairing, evidence, merging and swapping are all done on whole columns (see
:class:`BiflowStitcher` for how pairing stays the one-by-one, first-in first-out rule).
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np

from tunnelhound.normalize.columns import Columns, Text
from tunnelhound.normalize.frame import ABSENT, COLUMNS, SWAP_PAIRS, FlowFrame
from tunnelhound.normalize.rows import Rows

_SYN, _ACK = 0x02, 0x10
_ICMP_PROTOS = np.array([1, 58])
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
_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(slots=True)
class StitchStats:
    """What the stitcher did."""

    stitched: int = 0
    unmatched: int = 0
    swapped: int = 0
    evicted: int = 0
    """Uniflows emitted early because ``max_pending`` was reached."""


@dataclass(slots=True)
class _Rows:
    """Uniflows as the stitcher sees them, one array each: where the row lives (its addresses
    stay there), its time span, protocol and ports (ICMP's zeroed), the hash of its key
    forward (``fwd``) and reversed (``rev``), and the 64-bit hashes of its exporter's, source
    and destination address texts (``obs``, ``src``, ``dst``)."""

    chunk: np.ndarray
    row: np.ndarray
    start: np.ndarray
    end: np.ndarray
    fwd: np.ndarray
    rev: np.ndarray
    proto: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    obs: np.ndarray
    src: np.ndarray
    dst: np.ndarray

    @staticmethod
    def of(frame: FlowFrame, chunk: int) -> _Rows:
        """The rows of a frame of uniflows stored as chunk ``chunk``."""
        c = frame.cols
        icmp = among(c["proto"], _ICMP_PROTOS)
        # ICMP "ports" are type/code, which differ between request and reply: pair on addresses.
        sport, dport = np.where(icmp, 0, c["src_port"]), np.where(icmp, 0, c["dst_port"])
        # Hashes of the address texts from their digests: the columns stay recipes of numbers
        # (no str per row), and rows of any chunk hash alike whatever form their column has.
        cols = frame.columns
        observer, src, dst = (cols.hashes(name) for name in _ADDRESSES)
        proto, up_sport, up_dport = (x.astype(np.uint64) for x in (c["proto"], sport, dport))
        return _Rows(
            np.full(frame.n, chunk, dtype=np.int64),
            np.arange(frame.n, dtype=np.int64),
            c["start_ns"],
            c["end_ns"],
            combine_hashes(observer, proto, src, up_sport, dst, up_dport),
            combine_hashes(observer, proto, dst, up_dport, src, up_sport),
            c["proto"],
            sport,
            dport,
            observer,
            src,
            dst,
        )

    @staticmethod
    def empty() -> _Rows:
        """No rows."""
        e = np.empty(0, dtype=np.int64)
        u = e.view(np.uint64)
        return _Rows(e, e, e, e, u, u, e, e, e, u, u, u)

    @property
    def n(self) -> int:
        """Number of rows."""
        return len(self.chunk)

    def take(self, index: np.ndarray | slice) -> _Rows:
        """The rows at ``index`` (int array or bool mask)."""
        return _Rows(*(getattr(self, f)[index] for f in self.__slots__))

    def then(self, other: _Rows) -> _Rows:
        """These rows followed by ``other``'s."""
        return _Rows(*(np.concatenate([getattr(self, f), getattr(other, f)]) for f in self.__slots__))


def combine_hashes(*parts: np.ndarray) -> np.ndarray:
    """An order-dependent 64-bit hash of the parts, row by row (wrapping arithmetic)."""
    h = np.zeros(len(parts[0]), dtype=np.uint64)
    for part in parts:
        h = (h ^ part) * _MIX
        h ^= h >> np.uint64(29)
    return h


class BiflowStitcher:
    """Pair uniflows into biflows within ``timeout`` seconds of flow time.

    Which uniflow pairs with which is decided as if they arrived one by one (push order, then
    row order): an arriving uniflow takes the earliest-arrived waiting uniflow of the reversed
    key whose time span overlaps its own (``slack`` seconds of tolerance), or waits itself.
    That is computed per push with arrays: rows are grouped by conversation (the unordered pair
    of the forward and reversed key hashes, so partners always share a group), and in a group
    the k-th uniflow of one direction pairs with the k-th of the other (first-in, first-out).
    That equals the one-by-one rule when every pair so formed overlaps in time, has exactly
    reversed keys (hashes only group) and is completed by an arriving row, and no key in the
    group is its own reverse; other groups are replayed one by one.

    Waiting uniflows stay in the frames they came in (chunks); their keys and times are kept as
    arrays in arrival order, which is also the order they time out and are evicted in.  A chunk
    in which at most half the rows still wait is replaced by a frame of only those rows, so a
    few uniflows waiting for a reverse that never comes do not keep whole pushes alive
    (:attr:`retained_rows` stays below twice :attr:`pending`).
    """

    def __init__(self, *, timeout: float = 30.0, max_pending: int = 100_000, slack: float = 1.0) -> None:
        self.timeout_ns = int(timeout * _NS)
        self.max_pending = max_pending
        self.slack_ns = int(slack * _NS)
        self.stats = StitchStats()
        self._chunks: dict[int, FlowFrame] = {}
        self._next_chunk = 0
        self._waiting = _Rows.empty()
        self._watermark = -(2**63)
        self._namespace = "default"

    @property
    def pending(self) -> int:
        """Uniflows waiting for their partner."""
        return self._waiting.n

    @property
    def retained_rows(self) -> int:
        """Rows of the frames kept for the waiting uniflows (at most twice :attr:`pending`)."""
        return sum(frame.n for frame in self._chunks.values())

    def push(self, frame: FlowFrame) -> FlowFrame:
        """Take normalized rows; return the rows ready to emit."""
        self._namespace = frame.namespace
        kinds = frame.cols["biflow"]
        out = [orient_exporter_biflows(frame.take(kinds != 0), self.stats)] if (kinds != 0).any() else []
        uni = frame.take(kinds == 0) if (kinds != 0).any() else frame
        if uni.n:
            out.append(self._pair(uni))
        out.append(self._expire())
        self._compact_chunks()
        return FlowFrame.concat(out, self._namespace)

    def flush(self) -> FlowFrame:
        """Emit everything still waiting (end of a replay, shutdown)."""
        rest, self._waiting = self._waiting, _Rows.empty()
        self.stats.unmatched += rest.n
        frame = self._gather(rest)
        self._compact_chunks()
        return frame

    # ------------------------------------------------------------------ pairing

    def _pair(self, uni: FlowFrame) -> FlowFrame:
        cid = self._next_chunk
        self._next_chunk += 1
        self._chunks[cid] = uni
        arrived = _Rows.of(uni, cid)
        waiting = self._waiting
        # Only waiting rows of a conversation seen in this push can pair now.
        seen = np.sort(np.minimum(arrived.fwd, arrived.rev))
        waiting_conv = np.minimum(waiting.fwd, waiting.rev)
        at = np.minimum(np.searchsorted(seen, waiting_conv), len(seen) - 1)
        near = np.flatnonzero(seen[at] == waiting_conv)
        rows = waiting.take(near).then(arrived)
        first, second = self._match(rows, len(near))
        paired = np.zeros(rows.n, dtype=bool)
        paired[first] = paired[second] = True
        kept = np.ones(waiting.n, dtype=bool)
        kept[near[paired[: len(near)]]] = False
        self._waiting = waiting.take(kept).then(arrived.take(~paired[len(near) :]))
        self._watermark = max(self._watermark, int(uni.cols["end_ns"].max()))
        if not len(first):
            return FlowFrame.empty()
        # merge_pairs on the gathered pairs, without gathering every column of both sides first.
        chunk, row = rows.chunk, rows.row
        a_first = _a_initiates(
            self._columns(chunk[first], row[first], _EVIDENCE),
            self._columns(chunk[second], row[second], _EVIDENCE),
        )
        init_at, resp_at = np.where(a_first, first, second), np.where(a_first, second, first)
        init = self._columns(chunk[init_at], row[init_at], _FROM_INITIATOR)
        resp = self._columns(chunk[resp_at], row[resp_at], _FROM_RESPONDER)
        merged = _biflow_columns(init, resp)
        frame = self._chunks[int(chunk[first[0]])]
        self.stats.stitched += len(first)
        return FlowFrame(len(first), merged.select(list(frame.cols)), frame.namespace)

    def _match(self, rows: _Rows, n_waiting: int) -> tuple[np.ndarray, np.ndarray]:
        """Pairs (earlier, later) of positions in ``rows``, ordered by the later one.

        ``rows`` holds ``n_waiting`` waiting rows (in arrival order), then the arriving ones.
        """
        n = rows.n
        # Sort by conversation, arrival order within: the position goes into the low bits of
        # the sort key (the hash's low bits make way; coarser groups only mean more checks).
        bits = np.uint64(max(1, n.bit_length()))
        keys = np.sort((np.minimum(rows.fwd, rows.rev) >> bits << bits) | np.arange(n, dtype=np.uint64))
        order = (keys & ((np.uint64(1) << bits) - np.uint64(1))).astype(np.intp)
        sorted_conv = keys >> bits
        opens = np.empty(n, dtype=bool)
        opens[:1] = True
        opens[1:] = sorted_conv[1:] != sorted_conv[:-1]
        group = np.cumsum(opens) - 1  # by sorted position
        heads = np.flatnonzero(opens)
        forward = rows.fwd < rows.rev
        side = forward[order]
        # Each row's rank among the rows of its group and direction; the k-th of one
        # direction pairs with the k-th of the other.
        fwd_before: np.ndarray = np.cumsum(side) - side
        back_before = np.arange(n) - fwd_before
        rank = np.where(side, fwd_before - fwd_before[heads][group], back_before - back_before[heads][group])
        code = group * n + rank  # ascending along each direction's rows in sorted order
        f_code, b_code = code[side], code[~side]
        at = np.searchsorted(b_code, f_code)
        hit = at < len(b_code)
        hit[hit] = b_code[at[hit]] == f_code[hit]
        a, b = order[side][hit], order[~side][at[hit]]
        first, second = np.minimum(a, b), np.maximum(a, b)
        # Groups where that shortcut may not be what one-by-one arrival gives.
        group_of = np.empty(n, dtype=np.int64)
        group_of[order] = group
        slack = self.slack_ns
        apart = (rows.start[first] > rows.end[second] + slack) | (
            rows.start[second] > rows.end[first] + slack
        )
        dirty = np.zeros(len(heads), dtype=bool)
        dirty[group_of[first[apart | (second < n_waiting)]]] = True
        dirty[group_of[rows.fwd == rows.rev]] = True
        if len(first):
            dirty[group_of[first[~self._partners(rows, first, second)]]] = True
        if dirty.any():
            clean = ~dirty[group_of[first]]
            slow_first, slow_second = self._one_by_one(rows, np.flatnonzero(dirty[group_of]), n_waiting)
            first = np.concatenate([first[clean], slow_first])
            second = np.concatenate([second[clean], slow_second])
        # Each row completes at most one pair: order the pairs by scattering on the later row.
        partner_of = np.full(n, -1, dtype=np.int64)
        partner_of[second] = first
        second = np.flatnonzero(partner_of >= 0)
        return partner_of[second], second

    def _one_by_one(
        self, rows: _Rows, positions: np.ndarray, n_waiting: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pair ``positions`` (ascending) of ``rows`` one row at a time, by exact key."""
        waiting: dict[tuple[object, ...], list[int]] = {}
        firsts: list[int] = []
        seconds: list[int] = []
        starts, ends, slack = rows.start, rows.end, self.slack_ns
        for i in positions.tolist():
            candidates = waiting.get(self._key(rows, i, reverse=True), []) if i >= n_waiting else []
            for k, j in enumerate(candidates):
                if starts[j] <= ends[i] + slack and starts[i] <= ends[j] + slack:
                    firsts.append(candidates.pop(k))
                    seconds.append(i)
                    break
            else:
                waiting.setdefault(self._key(rows, i), []).append(i)
        return np.array(firsts, dtype=np.int64), np.array(seconds, dtype=np.int64)

    def _key(self, rows: _Rows, i: int, *, reverse: bool = False) -> tuple[object, ...]:
        """Row ``i``'s exact key, or the key its partner has."""
        cols, row = self._chunks[int(rows.chunk[i])].columns, int(rows.row[i])
        # One row's texts: reading the columns would turn the chunk's recipes into strings.
        observer, src, dst = (cols.text_at(name, row) for name in _ADDRESSES)
        if reverse:
            return observer, rows.proto[i], dst, rows.dport[i], src, rows.sport[i]
        return observer, rows.proto[i], src, rows.sport[i], dst, rows.dport[i]

    def _partners(self, rows: _Rows, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Whether each pair's keys are each other's reverse: ports and protocol equal, and each
        address by the 64-bit hash of its text (the combined key hashes only group rows)."""
        same = (rows.proto[first] == rows.proto[second]) & (rows.sport[first] == rows.dport[second])
        same &= rows.dport[first] == rows.sport[second]
        same &= rows.obs[first] == rows.obs[second]
        return same & (rows.src[first] == rows.dst[second]) & (rows.dst[first] == rows.src[second])

    def _expire(self) -> FlowFrame:
        """Release, in arrival order, the waiting rows that timed out, then those over ``max_pending``."""
        waiting = self._waiting
        late = waiting.end < self._watermark - self.timeout_ns
        timed_out = waiting.n if late.all() else int(np.argmin(late))
        evicted = max(0, waiting.n - timed_out - self.max_pending)
        self.stats.unmatched += timed_out + evicted
        self.stats.evicted += evicted
        released = timed_out + evicted
        self._waiting = waiting.take(slice(released, None))
        return self._gather(waiting.take(slice(released)))

    def _gather(self, rows: _Rows) -> FlowFrame:
        """The frame rows behind waiting ``rows`` (in arrival order, hence chunk after chunk)."""
        if not rows.n:
            return FlowFrame.empty(self._namespace)
        cuts = np.flatnonzero(rows.chunk[1:] != rows.chunk[:-1]) + 1
        chunks, index = np.split(rows.chunk, cuts), np.split(rows.row, cuts)
        parts = [self._chunks[int(c[0])].take(r) for c, r in zip(chunks, index, strict=True)]
        return FlowFrame.concat(parts, self._namespace)

    def _columns(self, chunk: np.ndarray, row: np.ndarray, names: tuple[str, ...]) -> Columns:
        """Columns ``names`` of the frame rows (``chunk``, ``row``)."""
        lowest = int(chunk.min())
        counts = np.bincount(chunk - lowest)
        major = lowest + int(np.argmax(counts))
        cols = self._chunks[major].columns
        if counts[major - lowest] == len(chunk):
            return cols.gather(names, row)
        # Most rows come from one chunk: index it for every row, then overwrite the others.
        index = np.where(chunk == major, row, 0)
        others = [
            (self._chunks[cid].columns, np.flatnonzero(chunk == cid))
            for cid in (np.flatnonzero(counts) + lowest).tolist()
            if cid != major
        ]
        out = Columns()
        for name in names:
            if (text := _gathered_text(cols, others, name, index, chunk == major, row)) is not None:
                out.put(name, text)
                continue
            col = cols[name][index]
            for other, at in others:
                col[at] = other[name][row[at]]
            out[name] = col
        return out

    def _compact_chunks(self) -> None:
        """Drop chunks in which no uniflow waits any more (after their rows were gathered), and
        shrink those in which at most half the rows wait to just these rows: a chunk must not
        stay whole for a few uniflows whose reverse may never come."""
        waiting = self._waiting
        chunk = waiting.chunk  # ascending: waiting rows are in arrival order
        heads = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]]) if len(chunk) else chunk
        ends = np.append(heads[1:], len(chunk)) if len(chunk) else chunk
        spans = {
            cid: (head, end)
            for cid, head, end in zip(*(x.tolist() for x in (chunk[heads], heads, ends)), strict=True)
        }
        for cid in [cid for cid in self._chunks if cid not in spans]:
            del self._chunks[cid]
        row = waiting.row
        for cid, (head, end) in spans.items():
            frame = self._chunks[cid]
            if 2 * (end - head) > frame.n:
                continue
            if row is waiting.row:
                row = row.copy()  # may be a view of an earlier push's arrays
            self._chunks[cid] = frame.take(row[head:end])
            row[head:end] = np.arange(end - head)
        waiting.row = row


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


_EVIDENCE = ("icmp_type", "initial_flags", "flags", "proto", "src_port", "start_ns")
"""Columns the initiator of a stitched pair is decided on."""
_FROM_RESPONDER = (
    *("src_bytes", "src_packets", "flags", "src_mac", "application"),
    *("start_ns", "start_iso", "end_ns", "end_iso", "event_id"),
)
"""Columns of the responder's uniflow that go into the stitched row."""
_FROM_INITIATOR = tuple(
    name
    for name in COLUMNS
    if name not in ("dst_bytes", "dst_packets", "rev_flags", "biflow", "reverse_event_id")
)
"""Columns of the initiator's uniflow that go into the stitched row."""
_ADDRESSES = ("observer", "src_ip", "dst_ip")
_Columns = MutableMapping[str, np.ndarray]


def merge_pairs(a: FlowFrame, b: FlowFrame) -> FlowFrame:
    """Merge row i of ``a`` with row i of ``b`` (opposite uniflows) into one biflow row each."""
    ca, cb = a.cols, b.cols
    a_first = _a_initiates(ca, cb)
    init = Columns({name: np.where(a_first, ca[name], cb[name]) for name in ca})
    resp = Columns({name: np.where(a_first, cb[name], ca[name]) for name in _FROM_RESPONDER})
    return FlowFrame(a.n, _biflow_columns(init, resp), a.namespace)


def _a_initiates(ca: _Columns, cb: _Columns) -> np.ndarray:
    """Where side a of each pair started the conversation (ties: a), by the evidence in order."""
    a_req, b_req = among(ca["icmp_type"], _ICMP_REQUESTS), among(cb["icmp_type"], _ICMP_REQUESTS)
    a_rep, b_rep = among(ca["icmp_type"], _ICMP_REPLIES), among(cb["icmp_type"], _ICMP_REPLIES)
    fa = np.where(ca["initial_flags"] != ABSENT, ca["initial_flags"], ca["flags"])
    fb = np.where(cb["initial_flags"] != ABSENT, cb["initial_flags"], cb["flags"])
    tcp = ca["proto"] == 6
    a_syn, b_syn = _syn_only(fa, fb) & tcp, _syn_only(fb, fa) & tcp
    a_port, b_port = np.maximum(ca["src_port"], 0), np.maximum(cb["src_port"], 0)
    a_svc, b_svc = among(a_port, WELL_KNOWN_SERVICES), among(b_port, WELL_KNOWN_SERVICES)
    verdict = _decide(
        (a_req | b_rep | b_req | a_rep, a_req | b_rep),
        (a_syn != b_syn, a_syn),
        (ca["start_ns"] != cb["start_ns"], ca["start_ns"] < cb["start_ns"]),
        (a_svc != b_svc, b_svc),
        (a_port != b_port, a_port > b_port),
    )
    return verdict >= 0


def _gathered_text(
    major: Columns,
    others: list[tuple[Columns, np.ndarray]],
    name: str,
    index: np.ndarray,
    from_major: np.ndarray,
    row: np.ndarray,
) -> Text | None:
    """Text column ``name`` of rows gathered from several chunks, as a recipe, if every chunk
    holds it as one (else None: the caller gathers strings)."""
    if (head := major.recipe(name)) is None:
        return None
    parts, order = [head.take(index[from_major])], [np.flatnonzero(from_major)]
    for other, at in others:
        if (recipe := other.recipe(name)) is None:
            return None
        parts.append(recipe.take(row[at]))
        order.append(at)
    joined = Text.concat(parts)
    # Rows come out chunk by chunk; put each back at its position.
    return joined.take(np.argsort(np.concatenate(order), kind="stable"))


def _biflow_columns(init: Columns, resp: Columns) -> Columns:
    """The initiator's columns (``init``, updated in place) completed by the responder's."""
    init["dst_bytes"], init["dst_packets"] = resp["src_bytes"], resp["src_packets"]
    init["rev_flags"] = resp["flags"]  # what the responder sent: RST answers, SYN-ACKs (scan features)
    init["dst_mac"] = np.where(_none(init["dst_mac"]), resp["src_mac"], init["dst_mac"])
    init["application"] = np.where(_none(init["application"]), resp["application"], init["application"])
    earlier = resp["start_ns"] < init["start_ns"]
    later = resp["end_ns"] > init["end_ns"]
    for ns, iso, take in (("start_ns", "start_iso", earlier), ("end_ns", "end_iso", later)):
        init[ns] = np.where(take, resp[ns], init[ns])
        if init.recipe(iso) is not None and resp.recipe(iso) is not None:
            # Both sides' text is the ISO form of their nanoseconds: render the merged ones.
            init.put(iso, Text(Rows(len(take)).iso(init[ns])))
        else:
            init[iso] = np.where(take, resp[iso], init[iso])
    init["biflow"] = np.full(len(earlier), 2, dtype=np.int8)
    init.put("reverse_event_id", resp.recipe("event_id") or resp["event_id"])
    return init


def among(values: np.ndarray, members: np.ndarray | Sequence[int]) -> np.ndarray:
    """``np.isin`` for small sets of small integers (ports, protocol and ICMP type numbers), by
    lookup table (much faster than sorting); ``members`` may be empty."""
    table = np.asarray(members, dtype=np.int64)
    if not len(table):
        return np.zeros(len(values), dtype=bool)
    return np.isin(values, table, kind="table")


_NONE = np.array([None], dtype=object)


def _none(values: np.ndarray) -> np.ndarray:
    """Where an object column (str or None) holds None."""
    return np.equal(values, _NONE)


def orient_exporter_biflows(frame: FlowFrame, stats: StitchStats) -> FlowFrame:
    """Swap exporter-made biflows whose destination initiated, by the evidence above."""
    c = frame.cols
    declared = c["biflow_direction"]
    tcp = c["proto"] == 6
    fwd_syn, rev_syn = (
        _syn_only(c["flags"], c["rev_flags"]) & tcp,
        _syn_only(c["rev_flags"], c["flags"]) & tcp,
    )
    icmp = among(c["proto"], _ICMP_PROTOS)
    sport, dport = c["src_port"], c["dst_port"]
    s_svc, d_svc = among(sport, WELL_KNOWN_SERVICES), among(dport, WELL_KNOWN_SERVICES)
    verdict = _decide(
        (among(declared, (1, 2)), declared == 1),
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
