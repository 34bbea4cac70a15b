"""The real-exporter oracle: softflowd exports of tests/data/traffic/mixed.pcap, read by tshark.

These tests pin down what the harness in ``oracles.py`` returns (so decoder tests can
compare against it record for record) and the softflowd 1.1.0 behaviour a decoder meets.
Every unsampled record is checked against :func:`traffic.meter`, an independent flow
table computed from the capture itself.  softflowd and tshark are required: a missing
tool fails, it does not skip.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exports import MIXED, SPECS, UNSAMPLED, Run, export
from oracles import FLOW_KEYS, require_tool, tshark_json
from traffic import MeteredFlow, Packet, meter, mixed_traffic, read_pcap, write_pcap

pytestmark = pytest.mark.real_exporter
__all__ = ["export"]  # the shared fixture, imported so pytest finds it here

PROTO_ICMP, PROTO_ICMPV6 = 1, 58


@pytest.fixture(scope="module")
def capture() -> list[Packet]:
    """The packets of mixed.pcap."""
    return read_pcap(MIXED)


def is_v6(addr: str) -> bool:
    """True for an IPv6 address string."""
    return ":" in addr


def unidirectional(flows: list[MeteredFlow]) -> Counter[tuple[Any, ...]]:
    """The v5/v9/IPFIX records softflowd makes of metered flows: one per direction with traffic.

    Both records of a flow carry the times of the whole bidirectional flow.
    """
    records: Counter[tuple[Any, ...]] = Counter()
    for f in flows:
        ends = [(f.a_addr, f.a_port), (f.b_addr, f.b_port)]
        for side in (0, 1):
            if f.packets[side]:
                (src, sport), (dst, dport) = ends[side], ends[1 - side]
                if f.protocol in (PROTO_ICMP, PROTO_ICMPV6):
                    sport = 0
                key = (src, dst, sport, dport, f.protocol, f.octets[side], f.packets[side])
                records[(*key, f.first_us // 1000, f.last_us // 1000)] += 1
    return records


def record_keys(flows: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    """The comparable part of tshark's unidirectional records."""
    return Counter(tuple(f[k] for k in FLOW_KEYS) for f in flows)


def only_ipv4(flows: list[MeteredFlow]) -> list[MeteredFlow]:
    """Flows softflowd tracks in v5 mode (it ignores IPv6 there unless -6)."""
    return [f for f in flows if not is_v6(f.a_addr)]


# --------------------------------------------------------------------------- tools and capture


def test_tools_installed() -> None:
    for tool in ("softflowd", "softflowctl", "tshark"):
        assert require_tool(tool)


def test_capture_regenerates_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "mixed.pcap"
    write_pcap(mixed_traffic().packets, out)
    assert out.read_bytes() == MIXED.read_bytes(), "run scripts/make_traffic_pcap.py and commit the capture"


def test_capture_mix(capture: list[Packet]) -> None:
    flows = meter(capture)
    assert len(capture) == 2716
    assert MIXED.stat().st_size < 1_000_000
    assert (capture[-1].ts_us - capture[0].ts_us) / 1e6 > 580
    assert Counter(f.protocol for f in flows) == {6: 164, 17: 100, 1: 40, 58: 16}
    assert sum(1 for f in flows if is_v6(f.a_addr)) == 46
    assert max(f.last_us - f.first_us for f in flows if f.protocol == 6) > 120_000_000


# --------------------------------------------------------------------------- every export


@pytest.mark.parametrize("name", list(SPECS))
def test_record_count_is_what_softflowd_exported(export: Callable[[str], Run], name: str) -> None:
    run = export(name)
    assert run.summary["export_failures"] == 0
    assert len(run.datagrams) == run.summary["export_packets"]
    assert len({f["frame"] for f in run.flows}) == len(run.datagrams)
    assert len(run.flows) == run.summary["records_exported"] > 0
    assert {f["version"] for f in run.flows} == {run.spec.version}


@pytest.mark.parametrize("name", list(SPECS))
def test_every_record_has_all_keys(export: Callable[[str], Run], name: str) -> None:
    for flow in export(name).flows:
        assert set(FLOW_KEYS) <= flow.keys()
        assert isinstance(flow["src_addr"], str) and isinstance(flow["dst_addr"], str)
        assert all(isinstance(flow[k], int) for k in FLOW_KEYS[2:])
        assert flow["packets"] > 0 or flow.get("rev_packets", 0) > 0
        assert flow["start_ms"] <= flow["end_ms"]


@pytest.mark.parametrize("name", UNSAMPLED)
def test_each_captured_packet_is_counted_once(
    export: Callable[[str], Run], capture: list[Packet], name: str
) -> None:
    run = export(name)
    flows = meter(capture)
    if run.spec.version == 5:
        flows = only_ipv4(flows)
    packets = sum(f["packets"] + f.get("rev_packets", 0) for f in run.flows)
    octets = sum(f["octets"] + f.get("rev_octets", 0) for f in run.flows)
    assert packets == sum(sum(f.packets) for f in flows) == run.summary["packets_processed"]
    assert octets == sum(sum(f.octets) for f in flows)
    assert all(f["sampling_interval"] == 1 for f in run.flows)


@pytest.mark.parametrize("name", ["v5", "v9", "v10"])
def test_records_match_the_capture(export: Callable[[str], Run], capture: list[Packet], name: str) -> None:
    run = export(name)
    flows = meter(capture)
    expected = unidirectional(only_ipv4(flows) if run.spec.version == 5 else flows)
    assert record_keys(run.flows) == expected


def test_record_times_span_the_capture(export: Callable[[str], Run], capture: list[Packet]) -> None:
    # Times are milliseconds, truncated; softflowd -a takes its clock from the capture.
    for name in ("v5", "v10"):
        flows = export(name).flows
        assert min(f["start_ms"] for f in flows) == capture[0].ts_us // 1000
        assert max(f["end_ms"] for f in flows) == capture[-1].ts_us // 1000


# --------------------------------------------------------------------------- per version


def test_ipv6_records_in_v9_and_ipfix_only(export: Callable[[str], Run], capture: list[Packet]) -> None:
    expected = sum(unidirectional([f for f in meter(capture) if is_v6(f.a_addr)]).values())
    assert expected == 76
    for name in ("v9", "v10"):
        v6 = [f for f in export(name).flows if is_v6(f["src_addr"])]
        assert len(v6) == expected
        assert {f["protocol"] for f in v6} == {6, 17, 58}
        assert all(is_v6(f["dst_addr"]) for f in v6)
    assert not any(is_v6(f["src_addr"]) for f in export("v5").flows)


def test_biflow_records_carry_reverse_counters(export: Callable[[str], Run], capture: list[Packet]) -> None:
    flows = export("v10_biflow").flows
    assert all({"rev_octets", "rev_packets", "rev_tcp_flags"} <= f.keys() for f in flows)
    two_way = sum(1 for f in meter(capture) if min(f.packets) > 0)
    assert sum(1 for f in flows if f["rev_packets"] > 0 and f["packets"] > 0) == two_way == 243
    # softflowd orders a biflow's endpoints by address, not by who spoke first: the
    # "forward" side may have sent nothing (a SYN probe's record is target -> scanner,
    # with the SYNs as reverse counters).  For ICMP the exported type/code is the one of
    # the destination side: an echo reply flow whose receiver sorts first shows type 0.
    expected: Counter[tuple[Any, ...]] = Counter()
    for f in meter(capture):
        sport = 0 if f.protocol in (PROTO_ICMP, PROTO_ICMPV6) else f.a_port
        key = (f.a_addr, f.b_addr, sport, f.b_port, f.protocol, f.octets[0], f.packets[0])
        expected[(*key, f.first_us // 1000, f.last_us // 1000, f.octets[1], f.packets[1])] += 1
    got = Counter(tuple(f[k] for k in (*FLOW_KEYS, "rev_octets", "rev_packets")) for f in flows)
    assert got == expected
    probes = [f for f in flows if f["dst_addr"] == "203.0.113.66"]  # the SYN scanner
    assert len(probes) == 20
    assert all(f["packets"] == 0 and f["rev_packets"] > 0 and f["rev_tcp_flags"] == 0x02 for f in probes)


def test_unidirectional_exports_have_no_reverse_counters(export: Callable[[str], Run]) -> None:
    for name in ("v5", "v9", "v10", "v9_sampled"):
        assert not any("rev_packets" in f for f in export(name).flows)


def test_v9_sampled_counts_every_tenth_packet_unscaled(
    export: Callable[[str], Run], capture: list[Packet]
) -> None:
    run = export("v9_sampled")
    # Options data record: SAMPLING_INTERVAL 10, SAMPLING_ALGORITHM 1 (deterministic).
    assert {(f["sampling_interval"], f["sampling_algorithm"]) for f in run.flows} == {(10, 1)}
    # softflowd takes packets 1, 11, 21, ... and exports raw (not multiplied) counts.
    assert (
        sum(f["packets"] for f in run.flows)
        == run.summary["packets_processed"]
        == math.ceil(len(capture) / 10)
    )
    assert record_keys(run.flows) == unidirectional(meter(capture[::10]))


def test_v9_header_count_is_data_records_only(export: Callable[[str], Run]) -> None:
    # RFC 3954 counts template and options records too; softflowd 1.1.0 does not.
    run = export("v9")
    per_frame = Counter(f["frame"] for f in run.flows)
    headers = {
        int(p["_source"]["layers"]["frame"]["frame.number"]): p["_source"]["layers"]["cflow"]
        for p in tshark_json(run.export_pcap, 2055)
    }
    assert all(int(headers[frame]["cflow.count"]) == n for frame, n in per_frame.items())
    assert [int(h["cflow.sequence"]) for h in headers.values()] == list(range(1, len(headers) + 1))
    first = headers[1]
    assert sum(1 for key in first if key.startswith("FlowSet")) > 2  # templates + options ride along


def test_ipfix_sequence_includes_the_current_message(export: Callable[[str], Run]) -> None:
    # RFC 7011: data records sent *before* this message; softflowd 1.1.0 adds this message's.
    run = export("v10")
    per_frame = Counter(f["frame"] for f in run.flows)
    seqs = [
        int(p["_source"]["layers"]["cflow"]["cflow.sequence"]) for p in tshark_json(run.export_pcap, 4739)
    ]
    assert seqs == list(_running_total(per_frame[frame] for frame in range(1, len(seqs) + 1)))


def _running_total(counts: Iterable[int]) -> Iterator[int]:
    total = 0
    for n in counts:
        total += n
        yield total
