"""Frames from already-decoded flow records match what the exporter path makes of the same flows."""

from __future__ import annotations

import socket
from typing import Any

import orjson
import pytest
import xxhash

from replay import DATA
from tunnelhound.decode.decoder import Decoder
from tunnelhound.normalize.biflow import BiflowStitcher
from tunnelhound.normalize.community_id import community_id
from tunnelhound.normalize.ecs import Normalizer
from tunnelhound.normalize.flow_id import flow_id
from tunnelhound.normalize.frame import FlowFrame, encode_ndjson
from tunnelhound.normalize.records import FlowRecord, frame_from_records
from tunnelhound.sources.files import iter_replay

NS = 1_000_000


def record_of(doc: dict[str, Any], start_ns: int, end_ns: int, identity: str) -> FlowRecord:
    """The FlowRecord a source would build for the flow ``doc`` describes."""
    src, dst, th = doc["source"], doc["destination"], doc["tunnelhound"]
    icmp = th.get("icmp") or th.get("icmpv6") or {}
    return FlowRecord(
        start_ns=start_ns,
        end_ns=end_ns,
        src_ip=src["ip"],
        dst_ip=dst["ip"],
        src_port=src.get("port"),
        dst_port=dst.get("port"),
        proto=int(doc["network"]["iana_number"]),
        src_bytes=src["bytes"],
        src_packets=src["packets"],
        icmp_type=icmp.get("type"),
        icmp_code=icmp.get("code"),
        observer_ip=doc["observer"]["ip"],
        identity=identity,
    )


@pytest.mark.parametrize("capture", ["netflow_v9.pcap", "ipfix.pcap"])
def test_records_get_the_keys_locality_and_times_of_the_exporter_path(capture: str) -> None:
    decoder = Decoder()
    batches = [b for dg in iter_replay([str(DATA / "lab" / capture)]) for b in decoder.decode(dg).flows]
    frame = Normalizer().frames(batches)
    docs = frame.documents()
    starts, ends = frame.cols["start_ns"].tolist(), frame.cols["end_ns"].tolist()
    records = [record_of(d, starts[i], ends[i], f"test|{capture}|{i}") for i, d in enumerate(docs)]
    ours = frame_from_records(records).documents()
    assert len(ours) == len(docs) == 3375  # uniflows (1919 once stitched)
    assert any("icmp" in d["tunnelhound"] for d in docs)  # ICMP type/code went through too
    for theirs, mine in zip(docs, ours, strict=True):
        for key in ("source", "destination", "network", "flow", "related", "observer"):
            assert mine[key] == theirs[key], key
        for key in ("start", "end", "duration"):
            assert mine["event"][key] == theirs["event"][key]
        assert mine["@timestamp"] == theirs["@timestamp"]
        assert mine["tunnelhound"] == theirs["tunnelhound"]  # biflow "uniflow", icmp type/code
        assert "netflow" not in mine


def record(**changes: Any) -> FlowRecord:
    base: dict[str, Any] = dict(
        start_ns=1_700_000_000_000 * NS,
        end_ns=1_700_000_002_500 * NS,
        src_ip="10.1.2.3",
        dst_ip="203.0.113.9",
        src_port=50000,
        dst_port=443,
        proto=6,
        src_bytes=1200,
        src_packets=10,
        observer_ip="192.0.2.1",
        identity="test|1",
    )
    return FlowRecord(**{**base, **changes})


def test_biflow_record_is_an_exporter_biflow_the_stitcher_passes_through() -> None:
    bi = record(dst_bytes=5400, dst_packets=8, flags=0x02 | 0x10, rev_flags=0x12, biflow=True)
    frame = frame_from_records([bi, record(identity="test|2")])
    doc, uni = frame.documents()
    assert doc["tunnelhound"]["biflow"] == "exporter" and uni["tunnelhound"]["biflow"] == "uniflow"
    assert doc["network"]["bytes"] == 6600 and doc["network"]["packets"] == 18
    assert doc["destination"] == {
        "ip": "203.0.113.9",
        "port": 443,
        "bytes": 5400,
        "packets": 8,
        "locality": "external",
    }
    assert doc["network"]["direction"] == "outbound" and doc["flow"]["locality"] == "external"
    assert doc["event"]["duration"] == 2_500_000_000
    assert doc["@timestamp"] == "2023-11-14T22:13:22.500Z"
    stitcher = BiflowStitcher()
    out = stitcher.push(frame.take(frame.cols["biflow"] == 1))
    assert out.n == 1 and stitcher.pending == 0
    assert out.documents()[0]["source"]["ip"] == "10.1.2.3"  # SYN side stays the source


def test_event_id_is_the_hash_of_the_identity_and_stable() -> None:
    a = frame_from_records([record()]).documents()[0]
    b = frame_from_records([record()]).documents()[0]
    assert a["event"]["id"] == b["event"]["id"] == xxhash.xxh3_128_hexdigest(b"test|1")
    assert frame_from_records([record(identity="test|2")]).documents()[0]["event"]["id"] != a["event"]["id"]


def test_keys_follow_the_specification_for_every_family_mix_and_identity_text() -> None:
    # The keys come from the same column kernels as the exporter path; the one-flow Python
    # functions are their specification. Mixed families get a flow.id but no Community ID.
    cases = [
        ("10.1.2.3", "203.0.113.9", 6, 50000, 443),
        ("2001:db8::1", "2001:db8::2", 17, 53, 53),
        ("10.1.2.3", "2001:db8::2", 17, 5353, 5353),
        ("2001:db8::1", "10.1.2.3", 132, 1, 2),
        ("10.1.2.3", "10.1.2.4", 47, None, None),
    ]
    records = [
        record(src_ip=s, dst_ip=d, proto=p, src_port=sp, dst_port=dp, identity=f"tëst|{i}")
        for i, (s, d, p, sp, dp) in enumerate(cases)
    ]
    docs = frame_from_records(records, community_id_seed=7).documents()
    for (s, d, p, sp, dp), doc in zip(cases, docs, strict=True):
        a, b = (socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip) for ip in (s, d))
        same = len(a) == len(b)
        assert doc["network"]["community_id"] == (
            community_id(p, a, b, sp or 0, dp or 0, 7) if same else None
        )
        assert doc["flow"]["id"] == flow_id(a, b, sp or 0, dp or 0, p)
        assert doc["network"]["type"] == ("ipv6" if ":" in s else "ipv4")
    assert [d["event"]["id"] for d in docs] == [
        xxhash.xxh3_128_hexdigest(f"tëst|{i}".encode()) for i in range(len(cases))
    ]


def test_icmp_v6_addresses_canonical_optional_members_and_ndjson() -> None:
    rows = [
        record(
            src_ip="2001:DB8:0:0::1",
            dst_ip="fd00::2",
            src_port=None,
            dst_port=None,
            proto=58,
            icmp_type=128,
            icmp_code=0,
            application="ping",
            observer_type="zeek",
            netflow='"exporter":{"address":"192.0.2.1:2055"}',
            extra='"zeek":{"session_id":"C1"}',
        ),
        record(proto=47, src_port=None, dst_port=None, identity="test|gre"),
    ]
    frame = frame_from_records(rows, internal_networks=["fd00::/8"], namespace="lab")
    assert [orjson.loads(line) for line in encode_ndjson(frame)] == frame.documents()
    v6, gre = frame.documents()
    assert v6["source"] == {"ip": "2001:db8::1", "bytes": 1200, "packets": 10, "locality": "external"}
    assert v6["destination"]["locality"] == "internal" and v6["network"]["direction"] == "inbound"
    assert v6["network"]["type"] == "ipv6" and v6["network"]["transport"] == "ipv6-icmp"
    assert v6["tunnelhound"]["icmpv6"] == {"type": 128, "code": 0}
    assert v6["network"]["application"] == "ping" and v6["observer"]["type"] == "zeek"
    assert v6["netflow"] == {"exporter": {"address": "192.0.2.1:2055"}} and v6["zeek"] == {"session_id": "C1"}
    assert v6["data_stream"]["namespace"] == "lab"
    assert gre["network"]["community_id"].startswith("1:") and "port" not in gre["source"]
    assert gre["source"]["locality"] == "external"  # 10/8 is not internal with the custom list


def test_empty_and_bad_address() -> None:
    assert frame_from_records([]).n == 0
    assert FlowFrame.concat([frame_from_records([]), frame_from_records([record()])]).n == 1
    with pytest.raises(ValueError, match=r"'test\|1': src_ip '10.1.2' is not an IP address"):
        frame_from_records([record(src_ip="10.1.2")])
