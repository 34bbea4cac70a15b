"""Tests for tunnelhound.decode.elements and the generated element table."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest

from codec_names import V5_FIELDS, codec_candidates, codec_element
from tunnelhound.decode import elements
from tunnelhound.decode.elements import V5_LAYOUT, Element, ipfix_element, snake_case, v9_element

ROOT = Path(__file__).resolve().parent.parent
# The codec's published expectations, once the vendor captures land in tests/data.
EXPECTATIONS = ROOT / "tests" / "data" / "vendors" / "expectations.json"


def _all_elements() -> list[Element]:
    """Every element the table defines: IPFIX (pen, id) entries plus v9-only field types."""
    raw = json.loads((files("tunnelhound") / "data" / "elements.json").read_text(encoding="utf-8"))
    found = [ipfix_element(int(pen), int(eid)) for pen, by_id in raw["ipfix"].items() for eid in by_id]
    found += [v9_element(int(eid)) for eid in raw["v9"]]
    return found


def test_public_api_is_exported() -> None:
    defined_here = {
        name
        for name, value in vars(elements).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == elements.__name__
    }
    assert set(elements.__all__) == defined_here | {"V5_LAYOUT", "ELEMENT_TYPES"}


@pytest.mark.parametrize(
    ("pen", "eid", "name", "type_"),
    [
        (0, 1, "octet_delta_count", "unsigned64"),
        (0, 8, "source_ipv4_address", "ipv4Address"),
        (0, 27, "source_ipv6_address", "ipv6Address"),
        (0, 152, "flow_start_milliseconds", "dateTimeMilliseconds"),
        (0, 154, "flow_start_microseconds", "dateTimeMicroseconds"),
        (0, 95, "application_id", "applicationId"),
        (0, 210, "padding_octets", "octetArray"),
        (0, 225, "post_nat_source_ipv4_address", "ipv4Address"),
        (0, 228, "post_napt_destination_transport_port", "unsigned16"),
        (0, 234, "ingress_vrfid", "unsigned32"),
        (0, 236, "vrf_name", "string"),
        (0, 291, "basic_list", "basicList"),
        # Not in the IANA CSV snapshot: taken from ipfix.yaml PEN 0.
        (0, 34, "sampling_interval", "unsigned32"),
        (0, 403, "original_exporter_ipv4_address", "ipv4Address"),
        (5951, 130, "netscaler_http_req_url", "string"),
        (6871, 33, "silk_app_label", "unsigned16"),
        (15397, 11, "procera_internal_rtt", "signed32"),
        (15397, 38, "procera_qoe_incoming_internal", "float32"),
        (29305, 1, "reverse_octet_delta_count", "unsigned64"),
        # Reverse elements take the IANA type, which the codec's yaml flattens.
        (29305, 152, "reverse_flow_start_milliseconds", "dateTimeMilliseconds"),
        (29305, 278, "reverse_connection_count_new", "unsigned32"),
    ],
)
def test_ipfix_entries(pen: int, eid: int, name: str, type_: str) -> None:
    assert ipfix_element(pen, eid) == Element(pen, eid, name, type_)


@pytest.mark.parametrize(
    ("eid", "name", "type_"),
    [
        (1, "octet_delta_count", "unsigned64"),
        (8, "source_ipv4_address", "ipv4Address"),
        (22, "flow_start_sys_up_time", "unsigned32"),
        (95, "application_id", "applicationId"),
        (92, "src_traffic_index", "unsigned32"),
        (33000, "ingress_acl_id", "octetArray"),
        (40001, "xlate_src_addr_ipv4", "ipv4Address"),
        (56701, "app_id", "string"),  # Palo Alto App-ID, e.g. "ssl"
        (56702, "user_id", "string"),
        (57590, "nprobe_proto", "unsigned16"),
    ],
)
def test_v9_entries(eid: int, name: str, type_: str) -> None:
    assert v9_element(eid) == Element(0, eid, name, type_)


def test_v9_shares_iana_elements() -> None:
    # One namespace: a v9 field type IANA assigned is the IANA element itself.
    for eid in [*range(1, 128), 225, 231, 323, 403]:
        iana = ipfix_element(0, eid)
        if not iana.name.startswith("ie_"):
            assert v9_element(eid) == iana


def test_unknown_ids() -> None:
    assert ipfix_element(0, 30000) == Element(0, 30000, "ie_30000", "octetArray")
    assert ipfix_element(99999, 7) == Element(99999, 7, "enterprise_99999_7", "octetArray")
    assert ipfix_element(5951, 1) == Element(5951, 1, "enterprise_5951_1", "octetArray")
    assert v9_element(65) == Element(0, 65, "ie_65", "octetArray")
    assert v9_element(0) == Element(0, 0, "ie_0", "octetArray")


def test_names_unique_and_types_known() -> None:
    every = _all_elements()
    names = [el.name for el in every]
    assert len(names) == len(set(names))
    # Stand-in names for unknown ids must never shadow a known element.
    assert not [n for n in names if re.fullmatch(r"ie_\d+|enterprise_\d+_\d+", n)]
    assert {el.type for el in every} <= elements.ELEMENT_TYPES
    assert all(re.fullmatch(r"[a-z0-9_]+", n) for n in names)


def test_name_clashes_get_pen_suffix() -> None:
    assert ipfix_element(10704, 8).name == "bind_ipv4_address"  # Barracuda keeps the plain name
    assert ipfix_element(12326, 8).name == "bind_ipv4_address_12326"
    assert ipfix_element(6871, 223).name == "tcp_urg_total_count_6871"
    assert ipfix_element(9789, 4).name == "flow_direction_9789"


@pytest.mark.parametrize(
    ("camel", "snake"),
    [
        ("sourceIPv4Address", "source_ipv4_address"),
        ("postNATDestinationIPv4Address", "post_nat_destination_ipv4_address"),
        ("postNAPTSourceTransportPort", "post_napt_source_transport_port"),
        ("flowStartSysUpTime", "flow_start_sys_up_time"),
        ("ingressVRFID", "ingress_vrfid"),
        ("ipClassOfService", "ip_class_of_service"),
        ("bgpNextHopIPv4Address", "bgp_next_hop_ipv4_address"),
        ("selectorIDTotalFlowsObserved", "selector_id_total_flows_observed"),
        ("messageMD5Checksum", "message_md5_checksum"),
        ("dot1qVlanId", "dot1q_vlan_id"),
        ("postMCastLayer2OctetDeltaCount", "post_mcast_layer2_octet_delta_count"),
        ("IPSecSPI", "ip_sec_spi"),
        ("VRFname", "vrf_name"),
        ("ipv4IHL", "ipv4_ihl"),
        ("ixiaL7AppId", "ixia_l7_app_id"),
        ("FW_Rule", "fw_rule"),
        ("ipv4_src_addr", "ipv4_src_addr"),
    ],
)
def test_snake_case(camel: str, snake: str) -> None:
    assert snake_case(camel) == snake


def test_v5_layout() -> None:
    assert sum(length for _, length in V5_LAYOUT) == 48
    for element, _length in V5_LAYOUT:
        assert element == ipfix_element(0, element.id)
    for codec_name, element in V5_FIELDS:
        if not codec_name.startswith("pad"):
            assert codec_element(5, codec_name) == element


def test_codec_names() -> None:
    assert codec_element(9, "in_bytes") == ipfix_element(0, 1)
    assert codec_element(9, "first_switched").name == "flow_start_sys_up_time"
    assert codec_element(9, "app_id") == v9_element(56701)
    assert codec_element(10, "reverseOctetDeltaCount") == ipfix_element(29305, 1)
    assert codec_element(10, "netscalerHttpReqUrl") == ipfix_element(5951, 130)
    assert [e.id for e in codec_candidates(9, "icmp_type")] == [32, 176]
    with pytest.raises(KeyError):
        codec_element(9, "no_such_field")


def test_codec_expectation_fields_resolve() -> None:
    cases = json.loads(EXPECTATIONS.read_text(encoding="utf-8"))
    missing = set()
    for case in cases:
        version = 10 if case["name"].startswith("IPFIX") else 9
        for assertion in case["assertions"]:
            match = re.fullmatch(r"\[netflow\]\[(\w+)\]", assertion["field"])
            assert match is not None, assertion["field"]
            name = match[1]
            if name in ("version", "flowset_id"):
                continue
            if not codec_candidates(version, name):
                missing.add(name)
    # scope_system is a v9 options-template scope, named by the template decoder.
    assert missing <= {"scope_system"}


def test_generated_table_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_elements.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
