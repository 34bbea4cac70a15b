"""Tests for normalize.community_id and normalize.flow_id against published vectors."""

from __future__ import annotations

import base64
import ipaddress
import json
import random
from pathlib import Path
from typing import Any

import communityid
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelhound.normalize.community_id import ICMP6_TYPE_PAIRS, ICMP_TYPE_PAIRS, community_id
from tunnelhound.normalize.flow_id import flow_id

VECTORS = Path(__file__).parent / "data" / "vectors"
CID_VECTORS: list[dict[str, Any]] = json.loads((VECTORS / "community_id_default.json").read_text())["vectors"]
FLOW_VECTORS: list[dict[str, Any]] = json.loads((VECTORS / "flow_ids.json").read_text())["vectors"]


def packed(addr: str) -> bytes:
    """Pack a textual address as 4 or 16 bytes."""
    return ipaddress.ip_address(addr).packed


def vector_id(v: dict[str, Any]) -> str:
    """Readable pytest id for a vector."""
    return f"{v['proto']}:{v['saddr']}:{v['sport']}>{v['daddr']}:{v['dport']}"


def is_one_way_icmp(proto: int, icmp_type: int) -> bool:
    """True for ICMP/ICMPv6 types without a counterpart (never reordered by the spec)."""
    return (proto == 1 and icmp_type not in ICMP_TYPE_PAIRS) or (
        proto == 58 and icmp_type not in ICMP6_TYPE_PAIRS
    )


# --- Community ID -------------------------------------------------------------------------


def test_vector_file_covers_every_protocol() -> None:
    assert len(CID_VECTORS) == 34
    assert {v["proto"] for v in CID_VECTORS} == {1, 6, 17, 46, 58, 132}


@pytest.mark.parametrize("v", CID_VECTORS, ids=vector_id)
def test_community_id_vector(v: dict[str, Any]) -> None:
    got = community_id(v["proto"], packed(v["saddr"]), packed(v["daddr"]), v["sport"] or 0, v["dport"] or 0)
    assert got == v["communityid"]


@pytest.mark.parametrize("v", CID_VECTORS, ids=vector_id)
def test_community_id_vector_reverse_direction(v: dict[str, Any]) -> None:
    proto, sport, dport = v["proto"], v["sport"] or 0, v["dport"] or 0
    saddr, daddr = packed(v["saddr"]), packed(v["daddr"])
    if proto in (1, 58):
        if is_one_way_icmp(proto, sport):
            # One-way messages are hashed as given: the reverse tuple is another id.
            assert community_id(proto, daddr, saddr, sport, dport) != v["communityid"]
            return
        # The answer to a two-way message is its counterpart type (code 0).
        pairs = ICMP_TYPE_PAIRS if proto == 1 else ICMP6_TYPE_PAIRS
        assert community_id(proto, daddr, saddr, pairs[sport], 0) == v["communityid"]
    else:
        assert community_id(proto, daddr, saddr, dport, sport) == v["communityid"]


def test_icmp_code_ignored_for_two_way_types() -> None:
    a, b = packed("1.2.3.4"), packed("5.6.7.8")
    # Echo request code 0 and code 5 hash the same: the counterpart replaces the code.
    assert community_id(1, a, b, 8, 0) == community_id(1, a, b, 8, 5) == "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="


def test_one_way_icmp_not_reordered() -> None:
    hi, lo = packed("10.0.0.2"), packed("10.0.0.1")
    # Time exceeded from the higher address: the spec keeps the given order.
    assert community_id(1, hi, lo, 11, 0) != community_id(1, lo, hi, 11, 0)
    assert community_id(1, lo, hi, 11, 0) == "1:YHxtAirCG//0OzkcVAukqKQN9xM="


def test_portless_protocol_ignores_ports() -> None:
    a, b = packed("1.2.3.4"), packed("5.6.7.8")
    assert (
        community_id(46, a, b, 1234, 80) == community_id(46, b, a, 0, 0) == "1:ikv3kmf89luf73WPz1jOs49S768="
    )


def test_equal_addresses_ordered_by_port() -> None:
    a = packed("192.168.170.8")
    assert community_id(6, a, a, 80, 1234) == community_id(6, a, a, 1234, 80)


def test_seed_changes_the_id() -> None:
    a, b = packed("1.2.3.4"), packed("5.6.7.8")
    assert community_id(6, a, b, 1122, 3344, seed=0) == "1:wCb3OG7yAFWelaUydu0D+125CLM="
    assert community_id(6, a, b, 1122, 3344, seed=1) != "1:wCb3OG7yAFWelaUydu0D+125CLM="


@pytest.mark.parametrize(
    ("saddr", "daddr", "sport", "seed"),
    [
        (b"\x01\x02\x03\x04", b"\x00" * 16, 1, 0),  # mixed families
        (b"\x01\x02\x03", b"\x01\x02\x03", 1, 0),  # 3-byte addresses
        (b"\x01\x02\x03\x04", b"\x05\x06\x07\x08", 65536, 0),  # port out of range
        (b"\x01\x02\x03\x04", b"\x05\x06\x07\x08", 1, 70000),  # seed out of range
    ],
)
def test_community_id_rejects_bad_tuples(saddr: bytes, daddr: bytes, sport: int, seed: int) -> None:
    with pytest.raises(ValueError, match="community_id"):
        community_id(6, saddr, daddr, sport, 80, seed=seed)


def test_community_id_rejects_bad_lengths_for_icmp_and_portless() -> None:
    with pytest.raises(ValueError, match="4 or 16 bytes"):
        community_id(1, b"\x01\x02\x03\x04", b"\x00" * 16, 11, 0)
    with pytest.raises(ValueError, match="4 or 16 bytes"):
        community_id(46, b"\x01\x02\x03\x04", b"\x00" * 16, 0, 0)


def test_community_id_matches_reference_package_on_random_tuples() -> None:
    rng = random.Random(20240611)
    protos = [6, 17, 132, 1, 58, 46, 47, 50]
    calcs = {seed: communityid.CommunityID(seed) for seed in (0, 1, 4242)}
    checked = 0
    for i in range(1000):
        proto = protos[i % len(protos)]
        v6 = proto == 58 or (proto != 1 and rng.random() < 0.4)
        n = 16 if v6 else 4
        saddr = rng.randbytes(n)
        # Some equal-address tuples so the port tie-break is exercised too.
        daddr = saddr if rng.random() < 0.05 else rng.randbytes(n)
        if proto in (1, 58):
            pairs = ICMP_TYPE_PAIRS if proto == 1 else ICMP6_TYPE_PAIRS
            sport = rng.choice([*pairs, rng.randrange(256)])
            dport = rng.randrange(256)
        else:
            sport, dport = rng.randrange(65536), rng.randrange(65536)
        seed = rng.choice(list(calcs))
        if proto in (6, 17, 132, 1, 58):
            tpl = communityid.FlowTuple(proto, saddr, daddr, sport, dport)
        else:
            tpl = communityid.FlowTuple(proto, saddr, daddr)
        expected = calcs[seed].calc(tpl)
        assert community_id(proto, saddr, daddr, sport, dport, seed) == expected, (
            proto,
            saddr,
            daddr,
            sport,
            dport,
        )
        checked += 1
    assert checked == 1000


addresses_v4 = st.binary(min_size=4, max_size=4)
addresses_v6 = st.binary(min_size=16, max_size=16)
ports = st.integers(min_value=0, max_value=65535)


@settings(max_examples=300)
@given(
    proto=st.sampled_from([6, 17]),
    pair=st.one_of(st.tuples(addresses_v4, addresses_v4), st.tuples(addresses_v6, addresses_v6)),
    sport=ports,
    dport=ports,
)
def test_community_id_is_direction_free(
    proto: int, pair: tuple[bytes, bytes], sport: int, dport: int
) -> None:
    a, b = pair
    forward = community_id(proto, a, b, sport, dport)
    assert forward == community_id(proto, b, a, dport, sport)
    assert forward.startswith("1:") and len(base64.b64decode(forward[2:])) == 20


# --- flow.id ------------------------------------------------------------------------------


def reference_flow_id(saddr: bytes, daddr: bytes, sport: int, dport: int, proto: int) -> str:
    """Plain restatement of the vectors' algorithm text, with Filebeat's >= tie-break."""
    if sport >= dport:
        data = saddr + sport.to_bytes(2, "big") + daddr + dport.to_bytes(2, "big")
    else:
        data = daddr + dport.to_bytes(2, "big") + saddr + sport.to_bytes(2, "big")
    digest = xxhash.xxh64(data + bytes([proto]), seed=0).intdigest().to_bytes(8, "big")
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def flow_vector_id(v: dict[str, Any]) -> str:
    """Readable pytest id for a flow.id vector."""
    return f"{v['source_ip']}:{v['source_port']}>{v['destination_ip']}:{v['destination_port']}"


def test_flow_vector_file() -> None:
    assert len(FLOW_VECTORS) == 7


@pytest.mark.parametrize("v", FLOW_VECTORS, ids=flow_vector_id)
def test_flow_id_vector_both_directions(v: dict[str, Any]) -> None:
    s, d = packed(v["source_ip"]), packed(v["destination_ip"])
    sp, dp, proto = v["source_port"], v["destination_port"], v["iana_number"]
    assert flow_id(s, d, sp, dp, proto) == v["flow_id"]
    assert flow_id(d, s, dp, sp, proto) == v["flow_id"]
    assert reference_flow_id(s, d, sp, dp, proto) == v["flow_id"]


@pytest.mark.parametrize("v", FLOW_VECTORS, ids=flow_vector_id)
def test_filebeat_community_id_agrees(v: dict[str, Any]) -> None:
    s, d = packed(v["source_ip"]), packed(v["destination_ip"])
    cid = community_id(v["iana_number"], s, d, v["source_port"], v["destination_port"])
    assert cid == v["community_id"]


def test_flow_id_equal_ports_keeps_source_first() -> None:
    a, b = packed("10.0.0.1"), packed("192.0.2.7")
    # Filebeat: srcPort >= dstPort puts the source first, so equal ports are not reordered.
    ab, ba = flow_id(a, b, 123, 123, 17), flow_id(b, a, 123, 123, 17)
    assert ab != ba
    assert ab == reference_flow_id(a, b, 123, 123, 17)
    assert ba == reference_flow_id(b, a, 123, 123, 17)


def test_flow_id_ipv6_and_mixed_lengths() -> None:
    a, b = packed("2001:db8::1"), packed("2001:db8::2")
    assert (
        flow_id(a, b, 51000, 443, 6) == flow_id(b, a, 443, 51000, 6) == reference_flow_id(a, b, 51000, 443, 6)
    )
    v4 = packed("192.0.2.1")
    assert flow_id(v4, a, 1, 2, 6) == reference_flow_id(v4, a, 1, 2, 6)


def test_flow_id_matches_reference_on_random_tuples() -> None:
    rng = random.Random(7)
    for _ in range(1000):
        n = rng.choice([4, 16])
        s, d = rng.randbytes(n), rng.randbytes(n)
        sp, dp, proto = rng.randrange(65536), rng.randrange(65536), rng.randrange(256)
        assert flow_id(s, d, sp, dp, proto) == reference_flow_id(s, d, sp, dp, proto)


@pytest.mark.parametrize(
    ("saddr", "daddr", "sport", "proto"),
    [
        (b"\x01\x02\x03", b"\x01\x02\x03\x04", 1, 6),
        (b"\x01\x02\x03\x04", b"\x01\x02\x03\x04", 65536, 6),
        (b"\x01\x02\x03\x04", b"\x01\x02\x03\x04", 1, 256),
    ],
)
def test_flow_id_rejects_bad_tuples(saddr: bytes, daddr: bytes, sport: int, proto: int) -> None:
    with pytest.raises(ValueError, match="flow_id"):
        flow_id(saddr, daddr, sport, 0, proto)


@settings(max_examples=300)
@given(
    proto=st.sampled_from([6, 17, 132]),
    pair=st.one_of(st.tuples(addresses_v4, addresses_v4), st.tuples(addresses_v6, addresses_v6)),
    sport=ports,
    dport=ports,
)
def test_flow_id_is_direction_free_for_distinct_ports(
    proto: int, pair: tuple[bytes, bytes], sport: int, dport: int
) -> None:
    a, b = pair
    forward = flow_id(a, b, sport, dport, proto)
    assert len(forward) == 11 and "=" not in forward and "+" not in forward and "/" not in forward
    if sport != dport:
        assert forward == flow_id(b, a, dport, sport, proto)
