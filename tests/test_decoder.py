"""Decoder behaviour beyond the vendor conformance cases: sessions, held data, options,
sequence numbers, limits.  Datagrams are built here with struct, byte by byte."""

from __future__ import annotations

import struct

import pytest

from replay import DATA, dat_documents
from tunnelhound.decode.decoder import Decoder
from tunnelhound.decode.sessions import SessionStore
from tunnelhound.model import Datagram

# IPFIX template 256: sourceIPv4Address, destinationIPv4Address, octetDeltaCount(8),
# packetDeltaCount(8), protocolIdentifier, flowEndMilliseconds.
_FIELDS = [(8, 4), (12, 4), (1, 8), (2, 8), (4, 1), (153, 8)]
_RECORD = struct.Struct("!IIQQBQ")


def ipfix(sets: list[bytes], *, seq: int = 0, domain: int = 1, export: int = 1_700_000_000) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), export, seq, domain) + body


def ipfix_template(tid: int = 256) -> bytes:
    rec = struct.pack("!HH", tid, len(_FIELDS)) + b"".join(struct.pack("!HH", i, n) for i, n in _FIELDS)
    return struct.pack("!HH", 2, 4 + len(rec)) + rec


def ipfix_data(n: int, tid: int = 256, first: int = 0) -> bytes:
    recs = b"".join(
        _RECORD.pack(0x0A000001 + i, 0xC6336401, 100 * (first + i), first + i, 6, 1_700_000_000_000)
        for i in range(n)
    )
    return struct.pack("!HH", tid, 4 + len(recs)) + recs


def v9(sets: list[bytes], *, seq: int, source_id: int = 0) -> bytes:
    return struct.pack("!HHIIII", 9, 0, 1000, 1_700_000_000, seq, source_id) + b"".join(sets)


def v9_template(tid: int = 256) -> bytes:
    rec = struct.pack("!HH", tid, len(_FIELDS)) + b"".join(struct.pack("!HH", i, n) for i, n in _FIELDS)
    return struct.pack("!HH", 0, 4 + len(rec)) + rec


def dg(data: bytes, ip: str = "192.0.2.1", port: int = 4444, at: float = 0.0) -> Datagram:
    return Datagram(data, ip, port, at)


@pytest.mark.parametrize("fast_path", [True, False])
def test_data_before_template_is_held_then_decoded(fast_path: bool) -> None:
    dec = Decoder(fast_path=fast_path)
    first = dec.decode(dg(ipfix([ipfix_data(3)])))
    assert (first.flows, dec.held_sets, dec.stats.template_misses["192.0.2.1"]) == ([], 1, 1)
    second = dec.decode(dg(ipfix([ipfix_template(), ipfix_data(2, first=3)], seq=3)))
    assert [b.count for b in second.flows] == [3, 2]  # the held set comes first, as it arrived first
    assert second.flows[0].columns["octet_delta_count"].tolist() == [0, 100, 200]
    assert dec.held_sets == 0 and dec.stats.held_released["192.0.2.1"] == 1


def test_held_sets_expire_and_are_capped_per_exporter() -> None:
    dec = Decoder(max_held_sets=2, held_set_timeout=5.0)
    for i in range(3):
        dec.decode(dg(ipfix([ipfix_data(1, tid=300 + i)]), at=100.0))
    assert dec.held_sets == 2 and dec.stats.held_dropped["192.0.2.1"] == 1
    dec.decode(dg(ipfix([ipfix_data(1, tid=400)]), ip="192.0.2.9", at=106.0))
    assert dec.held_sets == 1 and dec.stats.held_dropped["192.0.2.1"] == 3


def test_sessions_are_per_exporter_port_unless_shared() -> None:
    dec = Decoder()
    dec.decode(dg(ipfix([ipfix_template()]), port=1000))
    assert dec.decode(dg(ipfix([ipfix_data(1)]), port=1001)).flows == []
    shared = Decoder(SessionStore(share_templates=True))
    shared.decode(dg(ipfix([ipfix_template()]), port=1000))
    assert [b.count for b in shared.decode(dg(ipfix([ipfix_data(1)]), port=1001)).flows] == [1]


def test_template_withdrawal_and_per_exporter_limit() -> None:
    dec = Decoder(SessionStore(max_templates_per_exporter=2))
    dec.decode(dg(ipfix([ipfix_template(256), ipfix_template(257), ipfix_template(258)])))
    assert dec.sessions.template_count("192.0.2.1") == 2
    assert dec.stats.errors[("192.0.2.1", "template_limit")] == 1
    withdraw = struct.pack("!HHHH", 2, 8, 256, 0)
    dec.decode(dg(ipfix([withdraw])))
    assert dec.sessions.template_count("192.0.2.1") == 1
    assert dec.decode(dg(ipfix([ipfix_data(1, tid=256)]))).flows == []


def test_sequence_gaps_are_counted_per_exporter() -> None:
    dec = Decoder()
    for seq in (1, 2, 5, 6, 4):  # v9 counts packets: 3 and 4 missing, then a late one
        dec.decode(dg(v9([v9_template()], seq=seq)))
    assert dec.stats.sequence_lost["192.0.2.1"] == 2
    ipfix_dec = Decoder()
    ipfix_dec.decode(dg(ipfix([ipfix_template(), ipfix_data(5)], seq=0)))
    ipfix_dec.decode(dg(ipfix([ipfix_data(5)], seq=5)))  # RFC: records before this message
    ipfix_dec.decode(dg(ipfix([ipfix_data(5)], seq=17)))  # 7 records lost
    assert ipfix_dec.stats.sequence_lost["192.0.2.1"] == 7


def test_v9_walks_flowsets_past_a_wrong_header_count() -> None:
    # softflowd's header count excludes template records; we must not stop early.
    data = v9([v9_template(), v9_template(257)[:0] + ipfix_data(4)], seq=1)
    data = data[:2] + struct.pack("!H", 1) + data[4:]
    out = Decoder().decode(dg(data))
    assert out.record_count == 4


def test_nbar_application_names_from_options_data_reach_the_flows() -> None:
    docs = dat_documents(
        [
            "netflow9_test_cisco_nbar_opttpl260.dat",
            "netflow9_test_cisco_nbar_tpl262.dat",
            "netflow9_test_cisco_nbar_data262.dat",
        ]
    )
    apps = [(d["netflow"]["application_id"], d["network"].get("application")) for d in docs]
    # 1:1 is named by the exporter's options data, 3:123 (IANA-L4) by the shipped table; the id
    # nobody names stays visible (issue 8).
    assert apps == [("1:1", "icmp"), ("5:38", "5:38"), ("1:1", "icmp"), ("3:123", "ntp"), ("5:38", "5:38")]


def test_palo_alto_app_id_is_the_application() -> None:
    docs = dat_documents(["netflow9_test_paloalto_panos_tpl.dat", "netflow9_test_paloalto_panos_data.dat"])
    assert [d["network"].get("application") for d in docs][-1] == "incomplete"
    assert all(d["netflow"]["app_id"] == d["network"]["application"] for d in docs)


def test_v5_times_survive_the_uptime_wrap() -> None:
    docs = dat_documents(["netflow5.dat"])
    first = docs[0]
    # Header: uptime 3381 ms at 1430591888.280; first switched 0xffffffff (3382 ms before).
    assert first["event"]["start"] == "2015-05-02T18:38:04.898Z"
    assert first["event"]["end"] == "2015-05-02T18:38:07.476Z"
    assert len(docs) == 30 and all(d["event"]["start"].startswith("2015-05-02") for d in docs)


def test_filebeat_flow_ids_and_community_ids_on_documents() -> None:
    import json

    vectors = json.loads((DATA / "vectors" / "flow_ids.json").read_text())["vectors"]
    docs = dat_documents(["netflow9_test_paloalto_panos_tpl.dat", "netflow9_test_paloalto_panos_data.dat"])
    by_tuple = {
        (d["source"]["ip"], d["source"]["port"], d["destination"]["ip"], d["destination"]["port"]): d
        for d in docs
    }
    matched = 0
    for v in vectors:
        doc = by_tuple.get((v["source_ip"], v["source_port"], v["destination_ip"], v["destination_port"]))
        if doc is not None:
            assert doc["flow"]["id"] == v["flow_id"]
            assert doc["network"]["community_id"] == v["community_id"]
            matched += 1
    assert matched >= 5


def test_unsampled_counter_past_int64_saturates_instead_of_turning_negative() -> None:
    from tunnelhound.normalize.ecs import Normalizer

    record = _RECORD.pack(0x0A000001, 0xC6336401, 2**64 - 1, 5, 6, 1_700_000_000_000)
    data = ipfix([ipfix_template(), struct.pack("!HH", 256, 4 + len(record)) + record])
    (batch,) = Decoder().decode(dg(data)).flows
    (doc,) = Normalizer().normalize(batch)
    assert doc["source"]["bytes"] == 2**63 - 1
    assert doc["netflow"]["octet_delta_count"] == 2**64 - 1


def test_event_ids_differ_for_different_flows_with_identical_headers() -> None:
    from tunnelhound.normalize.ecs import Normalizer

    def one(first: int) -> str:
        (batch,) = Decoder().decode(dg(ipfix([ipfix_template(), ipfix_data(1, first=first)], seq=7))).flows
        (doc,) = Normalizer().normalize(batch)
        return str(doc["event"]["id"])

    # Same exporter, domain, template, export time, sequence and position; other counters.
    assert one(0) == one(0)
    assert one(0) != one(5)
