"""Biflow stitching and initiator choice, on the lab corpus and on softflowd biflows."""

from __future__ import annotations

import copy
import struct
from typing import Any

import pytest

from exports import MIXED, export
from replay import DATA, documents
from traffic import read_pcap
from tunnelhound.decode.decoder import Decoder
from tunnelhound.model import Datagram
from tunnelhound.normalize.biflow import BiflowStitcher, StitchStats, merge, swap_sides
from tunnelhound.normalize.ecs import Normalizer

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
    docs: list[dict[str, Any]] = []
    for data, arrived in run.datagrams:
        for batch in decoder.decode(Datagram(data, "127.0.0.1", 9995, arrived)).flows:
            docs.extend(normalizer.normalize(batch))
    oriented = stitcher.push(docs) + stitcher.flush()
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


def _uni(src: str, sport: int, dst: str, dport: int, *, flags: int = 0, start: str = "2026-01-01T00:00:00.000Z",
         end: str = "2026-01-01T00:00:01.000Z", nbytes: int = 100) -> dict[str, Any]:  # fmt: skip
    return {
        "event": {"id": f"{src}:{sport}", "start": start, "end": end, "duration": 1_000_000_000},
        "source": {"ip": src, "port": sport, "bytes": nbytes, "packets": 1, "locality": "internal"},
        "destination": {"ip": dst, "port": dport, "bytes": 0, "packets": 0, "locality": "external"},
        "network": {"transport": "tcp", "bytes": nbytes, "packets": 1, "direction": "outbound"},
        "observer": {"ip": "192.0.2.1"},
        "related": {"ip": [src, dst]},
        "netflow": {"tcp_control_bits": flags},
        "tunnelhound": {"biflow": "uniflow"},
        "@timestamp": end,
    }


def test_syn_side_wins_over_earlier_start() -> None:
    client = _uni("10.0.0.1", 40000, "198.51.100.1", 443, flags=0x02 | 0x10, start="2026-01-01T00:00:00.500Z")
    server = _uni("198.51.100.1", 443, "10.0.0.1", 40000, flags=0x02 | 0x12 | 0x10, nbytes=5000)
    server["netflow"]["tcp_control_bits"] = 0x12  # SYN+ACK only: the answer
    client["netflow"]["tcp_control_bits"] = 0x02  # SYN only: the opener
    merged = merge(copy.deepcopy(server), copy.deepcopy(client), StitchStats())
    assert (merged["source"]["ip"], merged["destination"]["bytes"], merged["network"]["bytes"]) == (
        "10.0.0.1",
        5000,
        5100,
    )
    assert merged["event"]["start"] == "2026-01-01T00:00:00.000Z"
    assert merged["tunnelhound"] == {"biflow": "stitched", "reverse_event_id": "198.51.100.1:443"}


def test_service_port_then_lower_port_decide_without_flags() -> None:
    a = _uni("10.0.0.1", 53, "10.0.0.2", 51000)
    b = _uni("10.0.0.2", 51000, "10.0.0.1", 53)
    assert merge(a, b, StitchStats())["source"]["port"] == 51000
    c = _uni("10.0.0.1", 30000, "10.0.0.2", 31000)
    d = _uni("10.0.0.2", 31000, "10.0.0.1", 30000)
    assert merge(c, d, StitchStats())["source"]["port"] == 31000


def test_swap_recomputes_direction() -> None:
    doc = _uni("10.0.0.1", 40000, "198.51.100.1", 443)
    swap_sides(doc)
    assert (doc["source"]["ip"], doc["network"]["direction"], doc["related"]["ip"]) == (
        "198.51.100.1",
        "inbound",
        ["198.51.100.1", "10.0.0.1"],
    )


def test_unmatched_uniflows_leave_after_timeout_and_cap() -> None:
    stitcher = BiflowStitcher(timeout=10, max_pending=2)
    lone = _uni("10.0.0.1", 1, "10.0.0.2", 2, end="2026-01-01T00:00:01.000Z")
    assert stitcher.push([lone]) == []
    later = _uni(
        "10.0.0.3", 1, "10.0.0.4", 2, start="2026-01-01T00:00:20.000Z", end="2026-01-01T00:00:20.000Z"
    )
    out = stitcher.push([later])
    assert out == [lone] and stitcher.pending == 1 and stitcher.stats.unmatched == 1
    more = [
        _uni("10.0.0.5", p, "10.0.0.6", 2, start=later["event"]["start"], end=later["event"]["end"])
        for p in (7, 8)
    ]
    evicted = stitcher.push(more)
    assert evicted == [later] and stitcher.stats.evicted == 1 and stitcher.pending == 2
    assert len(stitcher.flush()) == 2 and stitcher.pending == 0


def test_partner_must_overlap_in_time() -> None:
    stitcher = BiflowStitcher(timeout=1000)
    a = _uni("10.0.0.1", 40000, "10.0.0.2", 80, end="2026-01-01T00:00:01.000Z")
    b = _uni(
        "10.0.0.2", 80, "10.0.0.1", 40000, start="2026-01-01T00:05:00.000Z", end="2026-01-01T00:05:01.000Z"
    )
    assert stitcher.push([a, b]) == []
    assert stitcher.pending == 2
