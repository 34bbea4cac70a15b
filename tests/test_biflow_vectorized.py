"""The vectorized biflow stitcher against its pre-vectorization reference, row for row.

``_ReferenceStitcher`` below is the stitcher as it was before pairing became array work
(a dict of waiting uniflows keyed by the 5-tuple, a Python loop per uniflow). It is kept here,
and only here, as the oracle: every output frame of ``push`` and ``flush``, the pending count
and the counters must come out identical, column by column, on the lab captures, the vendor
cases, softflowd's exports and Hypothesis-made streams (duplicate tuples, same-key
collisions, out-of-order times, timeouts and ``max_pending`` evictions).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exports import SPECS, export
from replay import DATA
from tunnelhound.decode.decoder import Decoder
from tunnelhound.model import Datagram
from tunnelhound.normalize import biflow
from tunnelhound.normalize.biflow import BiflowStitcher, StitchStats, merge_pairs, orient_exporter_biflows
from tunnelhound.normalize.ecs import Normalizer
from tunnelhound.normalize.frame import ABSENT, COLUMNS, FlowFrame
from tunnelhound.sources.files import iter_replay

__all__ = ["export"]
_NS = 1_000_000_000
_ICMP_PROTOS = (1, 58)
CASES = json.loads((DATA / "vendors" / "expectations.json").read_text())


# ------------------------------------------------ pre-vectorization reference (oracle only)
_Key = tuple[Any, int, Any, int, Any, int]
_Ref = tuple[int, int]


@dataclass(slots=True)
class _Waiting:
    ref: _Ref
    key: _Key
    start: int
    end: int
    done: bool = False


class _ReferenceStitcher:
    """PRE-VECTORIZATION REFERENCE: ``normalize.biflow.BiflowStitcher`` before the array rewrite.

    Copied unchanged (only renamed) as the oracle of the differential tests; not used elsewhere.
    """

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
        return self._count

    def push(self, frame: FlowFrame) -> FlowFrame:
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
        refs = []
        while self._order:
            entry = self._order.popleft()
            if not entry.done:
                refs.append(self._release(entry))
        self.stats.unmatched += len(refs)
        frame = self._gather(refs)
        self._free_dead_chunks()
        return frame

    def _pair(self, uni: FlowFrame) -> FlowFrame:
        cid = self._next_chunk
        self._next_chunk += 1
        self._chunks[cid] = uni
        self._alive[cid] = 0
        c = uni.cols
        icmp = np.isin(c["proto"], _ICMP_PROTOS)
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
        for cid in [cid for cid, alive in self._alive.items() if alive == 0]:
            del self._alive[cid]
            del self._chunks[cid]


# ------------------------------------------------------------------------------ comparison


def assert_frames_identical(got: FlowFrame, want: FlowFrame, where: str) -> None:
    """Same rows, same order, every column and feature equal (object columns by value)."""
    assert (got.n, got.namespace) == (want.n, want.namespace), where
    assert list(got.cols) == list(want.cols) and list(got.features) == list(want.features), where
    for name in [*got.cols, *got.features]:
        a = got.cols[name] if name in got.cols else got.features[name]
        b = want.cols[name] if name in want.cols else want.features[name]
        assert a.dtype == b.dtype, (where, name)
        if a.dtype == object:
            assert a.tolist() == b.tolist(), (where, name)
        else:
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), (where, name)


def assert_same_run(pushes: Sequence[FlowFrame], **options: Any) -> None:
    """Both stitchers over the same pushes, then flush: every output, pending count and counter."""
    new, old = BiflowStitcher(**options), _ReferenceStitcher(**options)
    for i, frame in enumerate(pushes):
        assert_frames_identical(new.push(frame), old.push(frame), f"push {i}")
        assert new.pending == old.pending, f"push {i}"
        assert new.stats == old.stats, f"push {i}"
    assert_frames_identical(new.flush(), old.flush(), "flush")
    assert new.pending == old.pending == 0
    assert new.stats == old.stats


OPTIONS = [
    {},
    {"timeout": 2.0, "max_pending": 50},
    {"timeout": 0.5, "max_pending": 3, "slack": 0.0},
]


def _lab_pushes(capture: str) -> list[FlowFrame]:
    decoder, normalizer = Decoder(), Normalizer()
    return [normalizer.frames(decoder.decode(dg).flows) for dg in iter_replay([str(DATA / "lab" / capture)])]


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("capture", ["netflow_v5.pcap", "netflow_v9.pcap", "ipfix.pcap"])
def test_lab_captures(capture: str, options: dict[str, Any]) -> None:
    pushes = _lab_pushes(capture)
    assert sum(p.n for p in pushes) == 3375
    assert_same_run(pushes, **options)  # datagram by datagram
    assert_same_run([FlowFrame.concat(pushes)], **options)  # one frame


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_vendor_cases(case: dict[str, Any]) -> None:
    decoder, normalizer = Decoder(), Normalizer()
    pushes = []
    for i, name in enumerate(case["files"]):
        data = (DATA / "vendors" / "dat" / name).read_bytes()
        pushes.append(normalizer.frames(decoder.decode(Datagram(data, "192.0.2.1", 4444, float(i))).flows))
    for options in OPTIONS:
        assert_same_run(pushes, **options)
        assert_same_run([FlowFrame.concat(pushes)], **options)


@pytest.mark.real_exporter
@pytest.mark.parametrize("name", list(SPECS))
def test_softflowd_exports(export: Any, name: str) -> None:
    decoder, normalizer = Decoder(), Normalizer()
    pushes = [
        normalizer.frames(decoder.decode(Datagram(data, "127.0.0.1", 9995, at)).flows)
        for data, at in export(name).datagrams
    ]
    for options in OPTIONS:
        assert_same_run(pushes, **options)
        assert_same_run([FlowFrame.concat(pushes)], **options)


# ------------------------------------------------------------------------ generated streams

_ADDRESSES = ["10.0.0.1", "10.0.0.2", "198.51.100.7", "2001:db8::1"]
_NEUTRAL: dict[str, Any] = {"i8": ABSENT, "?": False, "i1": 0, "f8": 1.0, "O": None}


def _frame(rows: list[dict[str, Any]], namespace: str) -> FlowFrame:
    cols = {}
    for name, dtype in COLUMNS.items():
        col = np.empty(len(rows), dtype=dtype)
        col[:] = [row.get(name, _NEUTRAL[dtype]) for row in rows]
        cols[name] = col
    return FlowFrame(len(rows), cols, namespace)


@st.composite
def _row(draw: Callable[..., Any]) -> dict[str, Any]:
    """A flow from a tiny space of tuples, so keys repeat, reverse each other and collide."""
    proto = draw(st.sampled_from([6, 6, 17, 1, 58]))
    icmp = proto in _ICMP_PROTOS
    start = draw(st.integers(0, 40)) * _NS // 4
    return {
        "observer": draw(st.sampled_from(["192.0.2.1", "192.0.2.1", "192.0.2.9", None])),
        "proto": proto,
        "src_ip": draw(st.sampled_from(_ADDRESSES)),
        "dst_ip": draw(st.sampled_from(_ADDRESSES)),
        "src_port": ABSENT if icmp else draw(st.sampled_from([53, 443, 40000, 40001, ABSENT])),
        "dst_port": ABSENT if icmp else draw(st.sampled_from([53, 443, 40000, 40001])),
        "icmp_type": draw(st.sampled_from([0, 8, 3])) if icmp else ABSENT,
        "icmp_code": 0 if icmp else ABSENT,
        "start_ns": start,
        "end_ns": start + draw(st.integers(0, 12)) * _NS // 4,
        "flags": draw(st.sampled_from([ABSENT, 0x02, 0x12, 0x10, 0x14])),
        "src_bytes": draw(st.integers(1, 9)),
        "src_packets": 1,
        "biflow": draw(st.sampled_from([0] * 9 + [1])),
        "biflow_direction": draw(st.sampled_from([ABSENT, 1, 2])),
        "event_id": f"e{draw(st.integers(0, 10**6))}",
        "start_iso": "s",
        "end_iso": "e",
        "created": "c",
        "netflow": "",
    }


_STREAMS = {
    "pushes": st.lists(st.lists(_row(), max_size=25), max_size=8),
    "namespaces": st.lists(st.sampled_from(["default", "other"]), min_size=8, max_size=8),
    "timeout": st.sampled_from([0.5, 2.0, 30.0]),
    "max_pending": st.integers(0, 12),
    "slack": st.sampled_from([0.0, 0.25, 1.0]),
}


def _same_on_stream(
    pushes: list[list[dict[str, Any]]], namespaces: list[str], timeout: float, max_pending: int, slack: float
) -> None:
    frames = [_frame(rows, ns) for rows, ns in zip(pushes, namespaces, strict=False)]
    assert_same_run(frames, timeout=timeout, max_pending=max_pending, slack=slack)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**_STREAMS)
def test_generated_streams(
    pushes: list[list[dict[str, Any]]], namespaces: list[str], timeout: float, max_pending: int, slack: float
) -> None:
    _same_on_stream(pushes, namespaces, timeout, max_pending, slack)


# Key hashes are 64 bits: collisions cannot be produced for real, so these two tests cut the
# hash to two bits (every conversation shares a group with others, keys collide with their own
# reverse) to prove that pairing only ever trusts exact keys.
_real_combine = biflow.combine_hashes


def _two_bit_hash(*parts: np.ndarray) -> np.ndarray:
    return _real_combine(*parts) & np.uint64(3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**_STREAMS)
def test_generated_streams_with_hash_collisions(
    pushes: list[list[dict[str, Any]]], namespaces: list[str], timeout: float, max_pending: int, slack: float
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(biflow, "combine_hashes", _two_bit_hash)
        _same_on_stream(pushes, namespaces, timeout, max_pending, slack)


def test_lab_capture_with_hash_collisions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(biflow, "combine_hashes", _two_bit_hash)
    pushes = _lab_pushes("ipfix.pcap")
    assert_same_run(pushes)
    assert_same_run([FlowFrame.concat(pushes)], timeout=2.0, max_pending=50)


# ---------------------------------------------------------------------------------- memory


def _conversations(push: int, answered: int, unanswered: int) -> list[dict[str, Any]]:
    """``answered`` request/response pairs and ``unanswered`` lone requests, all in push ``push``."""
    start = push * _NS // 10
    rows = []
    for k in range(answered + unanswered):
        client, port = f"10.1.{push % 250}.{1 + k}", 40000 + k
        common = {"observer": "192.0.2.1", "proto": 6, "start_ns": start, "end_ns": start + _NS // 100}
        rows.append(
            {**common, "src_ip": client, "src_port": port, "dst_ip": "198.51.100.7", "dst_port": 443}
            | {"flags": 0x1B, "src_bytes": 100, "src_packets": 2, "event_id": f"q{push}.{k}"}
        )
        if k < answered:
            rows.append(
                {**common, "src_ip": "198.51.100.7", "src_port": 443, "dst_ip": client, "dst_port": port}
                | {"flags": 0x1B, "src_bytes": 900, "src_packets": 2, "event_id": f"r{push}.{k}"}
            )
    return rows


def test_waiting_rows_do_not_keep_their_pushes() -> None:
    """Two lone requests in each of 300 pushes of 100 rows all wait (within the timeout); their
    pushes are compacted to just them, so the rows kept equal the rows waiting, not 30,000, and
    every output is the reference's."""
    pushes = [_frame(_conversations(i, answered=49, unanswered=2), "default") for i in range(300)]
    stitcher = BiflowStitcher()
    stitched = 0
    for i, frame in enumerate(pushes):
        stitched += stitcher.push(frame).n
        assert stitcher.pending == 2 * (i + 1)
        assert stitcher.retained_rows == stitcher.pending
    assert stitched == stitcher.stats.stitched == 49 * 300
    rest = stitcher.flush()
    assert rest.n == 600 and sorted(rest.cols["event_id"].tolist())[:2] == ["q0.49", "q0.50"]
    assert stitcher.retained_rows == 0
    assert_same_run(pushes)


def test_chunks_mostly_waiting_are_kept_whole() -> None:
    """A push in which most rows wait is kept as it came (compacting would copy nearly all of
    it), then shrunk once most of its rows have paired."""
    stitcher = BiflowStitcher()
    requests = _conversations(0, answered=0, unanswered=10)
    stitcher.push(_frame(requests, "default"))
    assert (stitcher.pending, stitcher.retained_rows) == (10, 10)
    answers = [r for r in _conversations(0, answered=8, unanswered=0) if r["event_id"].startswith("r")]
    assert stitcher.push(_frame(answers, "default")).n == 8
    assert (stitcher.pending, stitcher.retained_rows) == (2, 2)


def test_stitched_rows_keep_text_as_recipes_and_encode_alike() -> None:
    """The stitcher gathers the normalizer's text recipes (ISO times, digests) instead of
    building their strings; the merged times are rendered from the merged nanoseconds, and the
    NDJSON is the same as from the strings."""
    from tunnelhound.normalize.frame import encode_ndjson_block

    stitcher = BiflowStitcher()
    pushes = _lab_pushes("netflow_v9.pcap")
    out = FlowFrame.concat([stitcher.push(p) for p in pushes] + [stitcher.flush()])
    stitched = out.take(out.cols["biflow"] == 2)
    assert stitched.n > 1000
    for name in ("start_iso", "end_iso", "event_id", "community_id"):
        assert stitched.columns.recipe(name) is not None, name
    encoded = encode_ndjson_block(stitched)
    as_strings = FlowFrame(
        stitched.n, {name: stitched.cols[name] for name in stitched.cols}, stitched.namespace
    )
    assert stitched.columns.recipe("start_iso") is None  # read above: now strings
    assert encode_ndjson_block(as_strings) == encoded
    docs = [json.loads(line) for line in encoded.splitlines()]
    starts = stitched.cols["start_ns"].tolist()
    assert [d["event"]["start"] for d in docs] == [
        np.datetime_as_string(np.datetime64(ns, "ns"), unit="ms") + "Z" for ns in starts
    ]
