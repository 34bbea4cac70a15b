"""Biflow stitching and initiator choice, on the lab corpus and on softflowd biflows."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from exports import MIXED, export
from replay import DATA, documents
from traffic import read_pcap
from tunnelhound.decode.decoder import Decoder
from tunnelhound.model import Datagram
from tunnelhound.normalize.biflow import BiflowStitcher, merge_pairs, swap_sides
from tunnelhound.normalize.ecs import Normalizer
from tunnelhound.normalize.frame import ABSENT, COLUMNS, FlowFrame

__all__ = ["export"]
MIB = 1024 * 1024


@pytest.fixture(scope="module", params=["netflow_v5.pcap", "netflow_v9.pcap", "ipfix.pcap"])
def lab(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return documents([DATA / "lab" / request.param], stitch=True)


def test_lab_conversations_all_start_inside(lab: list[dict[str, Any]]) -> None:
    # In the lab every conversation was opened by an internal client (labels.json), so
    # every document, stitched or not, must come out with the internal host as source.
    assert {d["network"]["direction"] for d in lab} == {"outbound"}
    kinds = {d["tunnelhound"]["biflow"] for d in lab}
    assert kinds == {"stitched", "uniflow"}
    # 3,375 one-way records: 1,456 pairs stitched, the rest (unanswered probes, one-way
    # beacons) left alone.
    assert sum(2 if d["tunnelhound"]["biflow"] == "stitched" else 1 for d in lab) == 3375


def test_lab_upload_and_download_keep_their_direction(lab: list[dict[str, Any]]) -> None:
    def sums(src: str, dst: str) -> tuple[int, int]:
        docs = [d for d in lab if d["source"]["ip"] == src and d["destination"]["ip"] == dst]
        assert docs and all(d["destination"]["port"] == 443 for d in docs)
        return sum(d["source"]["bytes"] for d in docs), sum(d["destination"]["bytes"] for d in docs)

    up_sent, up_received = sums("10.77.1.69", "198.18.4.43")
    assert up_sent > 30 * MIB > 20 * MIB > up_received
    down_sent, down_received = sums("10.77.1.25", "198.18.3.43")
    assert down_received > 30 * MIB and down_sent < MIB


def test_lab_scan_probes_are_from_the_scanner(lab: list[dict[str, Any]]) -> None:
    # nmap -sS ports 1-300 (200-299 filtered); the slow scan later covers 300-500.
    probes = [d for d in lab if d["destination"]["ip"] == "198.18.5.10" and d["destination"]["port"] < 300]
    assert {d["destination"]["port"] for d in probes} == set(range(1, 300))
    assert {d["source"]["ip"] for d in probes} == {"10.77.1.68"}
    unanswered = {d["destination"]["port"] for d in probes if d["destination"]["packets"] == 0}
    answered = {d["destination"]["port"] for d in probes if d["destination"]["packets"] > 0}
    assert unanswered == set(range(200, 300))
    assert answered == set(range(1, 200))


def _first_senders() -> dict[tuple[int, frozenset[tuple[str, int]]], tuple[str, int]]:
    """Conversation → (address, port) of whoever sent its first packet, from mixed.pcap."""
    import ipaddress

    first: dict[tuple[int, frozenset[tuple[str, int]]], tuple[str, int]] = {}
    for pkt in read_pcap(MIXED):
        frame = pkt.frame
        (ethertype,) = struct.unpack_from("!H", frame, 12)
        if ethertype == 0x0800:
            proto, l4, src, dst = frame[23], 34, frame[26:30], frame[30:34]
        else:
            proto, l4, src, dst = frame[20], 54, frame[22:38], frame[38:54]
        if proto not in (6, 17):
            continue
        sport, dport = struct.unpack_from("!HH", frame, l4)
        a = (str(ipaddress.ip_address(src)), sport)
        b = (str(ipaddress.ip_address(dst)), dport)
        first.setdefault((proto, frozenset((a, b))), a)
    return first


def test_softflowd_biflows_are_oriented_by_initiator(export: Any) -> None:
    # softflowd -b puts the lower address first, whoever spoke first; we must swap back.
    run = export("v10_biflow")
    decoder, normalizer, stitcher = Decoder(), Normalizer(), BiflowStitcher()
    batches = [
        b for data, at in run.datagrams for b in decoder.decode(Datagram(data, "127.0.0.1", 9995, at)).flows
    ]
    oriented = FlowFrame.concat([stitcher.push(normalizer.frames(batches)), stitcher.flush()]).documents()
    first = _first_senders()
    checked = 0
    for doc in oriented:
        if doc["network"]["transport"] not in ("tcp", "udp"):
            continue
        src = (doc["source"]["ip"], doc["source"]["port"])
        dst = (doc["destination"]["ip"], doc["destination"]["port"])
        assert first[(int(doc["network"]["iana_number"]), frozenset((src, dst)))] == src, doc["flow"]["id"]
        checked += 1
    assert checked > 250
    assert stitcher.stats.swapped > 0


# ---------------------------------------------------------------------------- units


def _frame(rows: list[dict[str, Any]]) -> FlowFrame:
    """A frame from a few hand-written rows (columns not given take neutral values)."""
    n = len(rows)
    neutral: dict[str, Any] = {"i8": ABSENT, "?": False, "i1": 0, "f8": 1.0, "O": None}
    cols = {}
    for name, dtype in COLUMNS.items():
        values = [row.get(name, neutral[dtype]) for row in rows]
        col = np.empty(n, dtype=dtype)
        col[:] = values
        cols[name] = col
    return FlowFrame(n, cols)


def _uni(src: str, sport: int, dst: str, dport: int, *, flags: int = 0, start: int = 0, end: int = 1,
         nbytes: int = 100) -> dict[str, Any]:  # fmt: skip
    return {
        "event_id": f"{src}:{sport}", "start_ns": start * NS, "end_ns": end * NS,
        "start_iso": f"start{start}", "end_iso": f"end{end}",
        "src_ip": src, "src_port": sport, "dst_ip": dst, "dst_port": dport,
        "src_bytes": nbytes, "src_packets": 1, "dst_bytes": 0, "dst_packets": 0,
        "src_internal": src.startswith("10."), "dst_internal": dst.startswith("10."),
        "proto": 6, "flags": flags, "observer": "192.0.2.1", "netflow": "", "created": "c",
    }  # fmt: skip


NS = 1_000_000_000


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    (doc,) = merge_pairs(_frame([a]), _frame([b])).documents()
    return doc


def test_syn_side_wins_over_earlier_start() -> None:
    client = _uni("10.0.0.1", 40000, "198.51.100.1", 443, flags=0x02, start=5)
    server = _uni("198.51.100.1", 443, "10.0.0.1", 40000, flags=0x12, nbytes=5000, start=0)
    merged = _merge(server, client)
    assert (merged["source"]["ip"], merged["destination"]["bytes"], merged["network"]["bytes"]) == (
        "10.0.0.1",
        5000,
        5100,
    )
    assert merged["event"]["start"] == "start0" and merged["event"]["duration"] == NS
    assert merged["tunnelhound"] == {"biflow": "stitched", "reverse_event_id": "198.51.100.1:443"}


def test_stitched_flow_keeps_each_sides_tcp_flags() -> None:
    # A closed port answers a SYN with RST+ACK: the scan features read it from rev_flags.
    probe = _uni("10.0.0.1", 40000, "198.51.100.1", 23, flags=0x02, start=0)
    refusal = _uni("198.51.100.1", 23, "10.0.0.1", 40000, flags=0x14, start=0)
    merged = merge_pairs(_frame([refusal]), _frame([probe]))
    assert (merged.cols["flags"].tolist(), merged.cols["rev_flags"].tolist()) == ([0x02], [0x14])


def test_service_port_then_lower_port_decide_without_flags() -> None:
    assert (
        _merge(_uni("10.0.0.1", 53, "10.0.0.2", 51000), _uni("10.0.0.2", 51000, "10.0.0.1", 53))["source"][
            "port"
        ]
        == 51000
    )
    assert (
        _merge(_uni("10.0.0.1", 30000, "10.0.0.2", 31000), _uni("10.0.0.2", 31000, "10.0.0.1", 30000))[
            "source"
        ]["port"]
        == 31000
    )


def test_icmp_request_side_initiates() -> None:
    reply = {**_uni("198.51.100.1", ABSENT, "10.0.0.1", ABSENT), "proto": 1, "icmp_type": 0, "icmp_code": 0}
    request = {**_uni("10.0.0.1", ABSENT, "198.51.100.1", ABSENT, start=3), "proto": 1, "icmp_type": 8}
    request["icmp_code"] = 0
    doc = _merge(reply, request)
    assert (doc["source"]["ip"], doc["tunnelhound"]["icmp"]) == ("10.0.0.1", {"type": 8, "code": 0})


def test_swap_recomputes_direction() -> None:
    frame = swap_sides(_frame([_uni("10.0.0.1", 40000, "198.51.100.1", 443)]), np.array([True]))
    (doc,) = frame.documents()
    assert (doc["source"]["ip"], doc["network"]["direction"], doc["related"]["ip"]) == (
        "198.51.100.1",
        "inbound",
        ["198.51.100.1", "10.0.0.1"],
    )


def test_unmatched_uniflows_leave_after_timeout_and_cap() -> None:
    stitcher = BiflowStitcher(timeout=10, max_pending=2)
    lone = _uni("10.0.0.1", 1, "10.0.0.2", 2, end=1)
    assert stitcher.push(_frame([lone])).n == 0
    later = _uni("10.0.0.3", 1, "10.0.0.4", 2, start=20, end=20)
    out = stitcher.push(_frame([later]))
    assert out.cols["event_id"].tolist() == ["10.0.0.1:1"]
    assert stitcher.pending == 1 and stitcher.stats.unmatched == 1
    more = [_uni("10.0.0.5", p, "10.0.0.6", 2, start=20, end=20) for p in (7, 8)]
    evicted = stitcher.push(_frame(more))
    assert evicted.cols["event_id"].tolist() == ["10.0.0.3:1"]
    assert stitcher.stats.evicted == 1 and stitcher.pending == 2
    assert stitcher.flush().n == 2 and stitcher.pending == 0


def test_partner_must_overlap_in_time_and_can_wait_across_pushes() -> None:
    stitcher = BiflowStitcher(timeout=1000)
    a = _uni("10.0.0.1", 40000, "10.0.0.2", 80, end=1)
    far = _uni("10.0.0.2", 80, "10.0.0.1", 40000, start=300, end=301)
    assert stitcher.push(_frame([a, far])).n == 0 and stitcher.pending == 2
    near = _uni("10.0.0.2", 80, "10.0.0.1", 40000, start=0, end=1)
    (doc,) = stitcher.push(_frame([near])).documents()
    assert doc["tunnelhound"]["biflow"] == "stitched" and stitcher.pending == 1
