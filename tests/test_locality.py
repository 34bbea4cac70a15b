"""Tests for normalize.locality: internal networks, locality and network.direction."""

from __future__ import annotations

import ipaddress
import random

import numpy as np
import pytest

from tunnelhound.normalize.locality import (
    DEFAULT_INTERNAL_NETWORKS,
    Networks,
    direction,
    direction_array,
    flow_locality,
    flow_locality_array,
    locality,
    locality_array,
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def reference_contains(nets: list[IPNetwork], addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Per-address membership with the stdlib, including the IPv4-mapped rule."""
    if any(addr in net for net in nets):
        return True
    mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
    return mapped is not None and any(mapped in net for net in nets)


def random_v4(rng: random.Random, count: int) -> list[int]:
    """Random IPv4 values, a third of them drawn inside the default internal networks."""
    inside = [ipaddress.ip_network(c) for c in DEFAULT_INTERNAL_NETWORKS if ":" not in c]
    out = []
    for i in range(count):
        if i % 3 == 0:
            net = rng.choice(inside)
            out.append(int(net.network_address) + rng.randrange(net.num_addresses))
        else:
            out.append(rng.randrange(1 << 32))
    return out


def random_v6(rng: random.Random, count: int) -> list[bytes]:
    """Random IPv6 addresses, mixed with internal ranges, ::1 and IPv4-mapped addresses."""
    out = []
    for i in range(count):
        kind = i % 6
        if kind == 0:
            value = (0xFC << 120) | rng.randrange(1 << 121)  # fc00::/7
        elif kind == 1:
            value = (0x3FA << 118) | rng.randrange(1 << 118)  # fe80::/10
        elif kind == 2:
            value = 0xFFFF << 32 | rng.randrange(1 << 32)  # ::ffff:a.b.c.d
        elif kind == 3:
            value = rng.choice([1, 0, 2])  # ::1 and its neighbours
        else:
            value = rng.randrange(1 << 128)
        out.append(value.to_bytes(16, "big"))
    return out


# --- Networks -----------------------------------------------------------------------------


def test_default_networks() -> None:
    nets = Networks()
    assert nets.cidrs == (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
        "127.0.0.0/8",
        "::1/128",
        "169.254.0.0/16",
        "fe80::/10",
    )
    assert nets == Networks(DEFAULT_INTERNAL_NETWORKS)
    assert repr(nets).startswith("Networks(['10.0.0.0/8', ")


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("172.31.255.255", True),
        ("172.32.0.1", False),
        ("192.168.255.1", True),
        ("192.169.0.1", False),
        ("127.0.0.1", True),
        ("169.254.10.10", True),
        ("8.8.8.8", False),
        ("0.0.0.0", False),
        ("fd12:3456::1", True),
        ("fc00::1", True),
        ("fe80::1", True),
        ("febf::1", True),
        ("fec0::1", False),
        ("::1", True),
        ("::2", False),
        ("2001:db8::1", False),
        ("::ffff:10.0.0.1", True),
        ("::ffff:8.8.8.8", False),
    ],
)
def test_contains_defaults(addr: str, expected: bool) -> None:
    assert Networks().contains(ipaddress.ip_address(addr).packed) is expected


def test_custom_networks_and_host_bits() -> None:
    nets = Networks(["192.0.2.77/24", "2001:db8::/32", "198.51.100.5"])
    assert nets.cidrs == ("192.0.2.0/24", "2001:db8::/32", "198.51.100.5/32")
    assert nets.contains(bytes([192, 0, 2, 1]))
    assert nets.contains(bytes([198, 51, 100, 5]))
    assert not nets.contains(bytes([198, 51, 100, 6]))
    assert not nets.contains(bytes([10, 0, 0, 1]))
    assert nets.contains(ipaddress.ip_address("2001:db8:1::1").packed)


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "not-a-network", "fe80::/129", "300.1.1.1/8", ""])
def test_invalid_cidr_names_the_string(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid internal network") as info:
        Networks(["10.0.0.0/8", bad])
    assert repr(bad) in str(info.value)


def test_non_string_cidr_rejected() -> None:
    with pytest.raises(ValueError, match="expected a CIDR string"):
        Networks([167772160])  # type: ignore[list-item]


def test_contains_rejects_bad_length() -> None:
    with pytest.raises(ValueError, match="4 or 16 bytes"):
        Networks().contains(b"\x01\x02\x03\x04\x05")


def test_empty_networks() -> None:
    nets = Networks([])
    assert not nets.contains(bytes(4))
    assert not nets.contains_v4(np.array([0, 167772161], dtype=np.uint32)).any()
    assert not nets.contains_v6(np.array([bytes(15) + b"\x01"], dtype="S16")).any()


def test_contains_v4_matches_ipaddress_on_random_addresses() -> None:
    rng = random.Random(1918)
    values = random_v4(rng, 10_000)
    nets = Networks()
    ref_nets = [ipaddress.ip_network(c) for c in DEFAULT_INTERNAL_NETWORKS]
    got = nets.contains_v4(np.array(values, dtype=np.uint32))
    expected = np.array([reference_contains(ref_nets, ipaddress.IPv4Address(v)) for v in values])
    assert got.dtype == np.bool_ and got.shape == (10_000,)
    np.testing.assert_array_equal(got, expected)
    assert 3_000 < int(expected.sum()) < 5_000  # both outcomes are well represented
    scalar = np.array([nets.contains(v.to_bytes(4, "big")) for v in values])
    np.testing.assert_array_equal(scalar, expected)


def test_contains_v6_matches_ipaddress_on_random_addresses() -> None:
    rng = random.Random(4193)
    values = random_v6(rng, 10_000)
    nets = Networks()
    ref_nets = [ipaddress.ip_network(c) for c in DEFAULT_INTERNAL_NETWORKS]
    got = nets.contains_v6(np.array(values, dtype="S16"))
    expected = np.array([reference_contains(ref_nets, ipaddress.IPv6Address(v)) for v in values])
    assert got.dtype == np.bool_ and got.shape == (10_000,)
    np.testing.assert_array_equal(got, expected)
    assert 3_000 < int(expected.sum()) < 7_000
    scalar = np.array([nets.contains(v) for v in values])
    np.testing.assert_array_equal(scalar, expected)


def test_contains_v6_custom_prefixes_and_trailing_zero_bytes() -> None:
    # A /64 and a /100 test both 64-bit words; S16 drops trailing NULs on item access but
    # not in the buffer, so ::/-style addresses ending in zero bytes must still match.
    nets = Networks(["2001:db8:0:1::/64", "2001:db8::a:0:0/100"])
    addrs = ["2001:db8:0:1::", "2001:db8:0:2::", "2001:db8::a:0:1", "2001:db8::a:1000:0", "2001:db8::b:0:0"]
    arr = np.array([ipaddress.ip_address(a).packed for a in addrs], dtype="S16")
    np.testing.assert_array_equal(nets.contains_v6(arr), [True, False, True, False, False])


def test_contains_v6_rejects_other_dtypes() -> None:
    with pytest.raises(ValueError, match="S16"):
        Networks().contains_v6(np.array([b"\x01\x02\x03\x04"], dtype="S4"))


def test_contains_v4_keeps_shape() -> None:
    values = np.array([[167772161, 134744072]], dtype=np.uint32)  # 10.0.0.1, 8.8.8.8
    np.testing.assert_array_equal(Networks().contains_v4(values), [[True, False]])


# --- locality and direction ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "dst", "expected_direction", "expected_flow_locality"),
    [
        (True, False, "outbound", "external"),
        (False, True, "inbound", "external"),
        (True, True, "internal", "internal"),
        (False, False, "external", "external"),
    ],
)
def test_direction_table(src: bool, dst: bool, expected_direction: str, expected_flow_locality: str) -> None:
    assert direction(src, dst) == expected_direction
    assert flow_locality(src, dst) == expected_flow_locality


def test_locality_scalar() -> None:
    assert locality(True) == "internal"
    assert locality(False) == "external"


def test_direction_and_locality_arrays() -> None:
    src = np.array([True, False, True, False])
    dst = np.array([False, True, True, False])
    dirs = direction_array(src, dst)
    assert dirs.dtype == object
    assert dirs.tolist() == ["outbound", "inbound", "internal", "external"]
    assert flow_locality_array(src, dst).tolist() == ["external", "external", "internal", "external"]
    assert locality_array(src).tolist() == ["internal", "external", "internal", "external"]


def test_arrays_agree_with_scalars_on_real_addresses() -> None:
    rng = random.Random(3)
    nets = Networks()
    src = np.array(random_v4(rng, 500), dtype=np.uint32)
    dst = np.array(random_v4(rng, 500), dtype=np.uint32)
    s_in, d_in = nets.contains_v4(src), nets.contains_v4(dst)
    dirs = direction_array(s_in, d_in).tolist()
    flows = flow_locality_array(s_in, d_in).tolist()
    for i in range(500):
        s = nets.contains(int(src[i]).to_bytes(4, "big"))
        d = nets.contains(int(dst[i]).to_bytes(4, "big"))
        assert dirs[i] == direction(s, d)
        assert flows[i] == flow_locality(s, d)
    assert set(dirs) == {"outbound", "inbound", "internal", "external"}
