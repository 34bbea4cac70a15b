"""Sigma modifiers and conditions compiled to vectorized predicates, on hand-built frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from flows import flow, frame
from tunnelhound.rules import load_rules
from tunnelhound.rules.fields import FlowFields

ROWS = [
    flow("10.0.0.1", "198.51.100.1", 53, proto=17, app="dns", src_bytes=80),  # 0
    flow("10.0.0.2", "198.51.100.2", 53, app="SSH", src_bytes=5000, dst_packets=4),  # 1
    flow("192.168.1.9", "10.0.0.3", 8080, app="openvpn", src_bytes=2_000_000),  # 2
    flow("10.0.0.4", "203.0.113.7", 0, proto=1, src_bytes=1000),  # 3: ICMP, no ports, no app
    flow("2001:db8::1", "2001:db8::2", 443, app="https-proxy", src_bytes=300),  # 4
]
FEATURES = {
    "dns.packets_z": np.array([0.5, 4.0, np.nan, np.nan, np.nan]),
    "scan.unanswered": np.array([True, False, False, True, False]),
}


def matches(tmp_path: Path, detection: dict[str, object]) -> list[int]:
    """Rows of ROWS that a one-rule file with ``detection`` matches."""
    rule = {
        "title": "t",
        "name": "t",
        "id": "3f6c2a10-0000-4000-8000-000000000001",
        "logsource": {"product": "tunnelhound", "category": "network", "service": "flow"},
        "detection": detection,
        "level": "low",
    }
    (tmp_path / "t.yml").write_text(yaml.safe_dump(rule))
    (base,) = load_rules([tmp_path]).base
    mask = base.predicate(FlowFields(frame(ROWS, FEATURES)))
    return np.flatnonzero(mask).tolist()


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ({"network.application": "ssh"}, [1]),  # case-insensitive equality
        ({"network.application|cased": "ssh"}, []),
        ({"network.application|contains": "VPN"}, [2]),
        ({"network.application|startswith": "http"}, [4]),
        ({"network.application|endswith": "proxy"}, [4]),
        ({"network.application": "*s*"}, [0, 1, 4]),
        ({"network.application": "?ns"}, [0]),
        ({"network.application|contains|all": ["https", "proxy"]}, [4]),
        ({"network.application|re": "^(dns|openvpn)$"}, [0, 2]),
        ({"network.application|re": "^SSH$"}, [1]),  # re is case-sensitive
        ({"network.application|re|i": "^ssh$"}, [1]),
        ({"source.ip|cidr": "10.0.0.0/8"}, [0, 1, 3]),
        ({"source.ip|cidr": ["192.168.0.0/16", "2001:db8::/32"]}, [2, 4]),
        ({"destination.port": 53}, [0, 1]),
        ({"destination.port": "53"}, [0, 1]),
        ({"destination.port": [53, 443]}, [0, 1, 4]),
        ({"destination.port|gt": 53}, [2, 4]),
        ({"destination.port|gte": 443}, [2, 4]),
        ({"destination.port|lt": 443}, [0, 1]),  # ICMP has no port: never less than anything
        ({"destination.port|lte": 53}, [0, 1]),
        ({"source.bytes|gte": 5000}, [1, 2]),
        ({"network.application|exists": False}, [3]),
        ({"destination.port|exists": True}, [0, 1, 2, 4]),
        ({"network.application": None}, [3]),
        ({"network.transport": "udp"}, [0]),
        ({"network.transport": ["icmp", "udp"]}, [0, 3]),
        ({"network.direction": "inbound"}, [2]),
        ({"network.type": "ipv6"}, [4]),
        ({"tunnelhound.dns.packets_z|gt": 3}, [1]),
        ({"tunnelhound.dns.packets_z|exists": True}, [0, 1]),
        ({"tunnelhound.scan.unanswered": True}, [0, 3]),
        ({"tunnelhound.not_computed|exists": True}, []),
    ],
)
def test_modifier(tmp_path: Path, selection: dict[str, object], expected: list[int]) -> None:
    assert matches(tmp_path, {"sel": selection, "condition": "sel"}) == expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("dns and udp", [0]),
        ("dns or vpn", [0, 1, 2]),
        ("not dns", [2, 3, 4]),  # absent destination.port (ICMP) is "not 53"
        ("1 of sel_*", [0, 1, 2]),
        ("all of sel_*", []),
        ("all of them", []),
        ("1 of them", [0, 1, 2]),
        ("(dns or vpn) and not udp", [1, 2]),
        ("not (dns or vpn)", [3, 4]),
    ],
)
def test_condition(tmp_path: Path, condition: str, expected: list[int]) -> None:
    detection = {
        "dns": {"destination.port": 53},
        "vpn": {"network.application|contains": "vpn"},
        "udp": {"network.transport": "udp"},
        "sel_dns": {"destination.port": 53},
        "sel_vpn": {"network.application": "openvpn"},
        "condition": condition,
    }
    assert matches(tmp_path, detection) == expected


def test_fields_in_one_selection_are_and_values_are_or(tmp_path: Path) -> None:
    detection = {"sel": {"destination.port": [53, 8080], "network.transport": "tcp"}, "condition": "sel"}
    assert matches(tmp_path, detection) == [1, 2]


def test_list_of_maps_is_or(tmp_path: Path) -> None:
    detection = {"sel": [{"destination.port": 8080}, {"network.application": "dns"}], "condition": "sel"}
    assert matches(tmp_path, detection) == [0, 2]


def test_fieldref(tmp_path: Path) -> None:
    rows = [flow(dport=53, sport=53), flow(dport=53, sport=40000)]
    (tmp_path / "t.yml").write_text(
        yaml.safe_dump(
            {
                "title": "t",
                "name": "same_ports",
                "logsource": {"product": "tunnelhound"},
                "detection": {"sel": {"source.port|fieldref": "destination.port"}, "condition": "sel"},
            }
        )
    )
    (base,) = load_rules([tmp_path]).base
    assert base.predicate(FlowFields(frame(rows))).tolist() == [True, False]


def test_object_feature_holding_numbers(tmp_path: Path) -> None:
    features = {**FEATURES, "app.port_class": np.array([53, "dns", None, 7, "x"], dtype=object)}
    rule = {
        "title": "t",
        "name": "t",
        "logsource": {"product": "tunnelhound"},
        "detection": {"sel": {"tunnelhound.app.port_class": ["53", "dns"]}, "condition": "sel"},
    }
    (tmp_path / "t.yml").write_text(yaml.safe_dump(rule))
    (base,) = load_rules([tmp_path]).base
    assert np.flatnonzero(base.predicate(FlowFields(frame(ROWS, features)))).tolist() == [0, 1]
