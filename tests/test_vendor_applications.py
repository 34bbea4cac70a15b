"""SonicWALL and Sophos application ids (issue 8, acceptance 3): IPFIX messages built here with
the vendors' enterprise information elements, decoded by the real decoder and normalized by the
real normalizer, give ``network.application`` and keep the raw vendor fields under ``netflow.*``.

Where the element definitions come from (no capture of either vendor is in the corpus):

* SonicWALL, IANA PEN 8741 ("SonicWALL, Inc."), "IPFIX with extensions" mode: element ids and
  types as ElastiFlow publishes them (github.com/robcowart/elastiflow,
  ``logstash/elastiflow/definitions/ipfix.yml``, section 8741), transcribed in our own format
  to ``tests/data/definitions/vendor-elements.tsv``; ElastiFlow names the application from
  element 41 (the name) or element 40 (the id) (``logstash/elastiflow/conf.d/
  20_filter_30_ipfix.logstash.conf``). SonicWall's help "AppFlow > Flow Reporting: NetFlow
  Tables" (help.sonicwall.com/help/sw/eng/8400/26/2/1/content/appflow_flow_reporting.122.9.html)
  describes the tables those elements form.
* Sophos UTM (formerly Astaro, IANA PEN 9789 "Astaro AG"): ``afcProtocol`` (1, unsigned16),
  ``afcProtocolName`` (2, string), ``flowDirection`` (4, unsigned8), plus netfilter's PEN 21373
  ``mark`` (4) and ``conntrack_id`` (6): the Logstash NetFlow codec's ``ipfix.yaml``
  (logstash-plugins/logstash-codec-netflow pull request 105, "Add sophos UTM definition (PEN
  9789 and 21373)", citing the Sophos UTM manual), already in ``tests/data/definitions/``.
  Ids without a name are named from ``sophos-utm.tsv`` (ids from ElastiFlow's
  ``logstash/elastiflow/dictionaries/sophos_app_id.yml``).

Neither source publishes the order of the fields in the vendor's templates, so the templates
here put the standard flow keys first and the vendor elements after them, at the lengths of
their published types.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from fieldlist import problems
from ipfix_messages import VARLEN, data_set, message, template, varlen
from lab_replay import replay_alerts
from tunnelhound.decode.decoder import Decoder
from tunnelhound.decode.elements import Element, ipfix_element
from tunnelhound.model import Datagram
from tunnelhound.normalize.applications import ApplicationNames
from tunnelhound.normalize.ecs import NormalizeOptions, Normalizer

SONICWALL, SOPHOS_UTM, NETFILTER = 8741, 9789, 21373  # IANA private enterprise numbers

# The standard keys every template here starts with: addresses, ports, protocol, counters, times.
KEYS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8), (2, 8), (152, 8), (153, 8)]
# SonicWALL connection record: flow id (2), initiator/responder IP (5, 6) and port (11, 12),
# protocol type (20), application id (22), then the application map's id (40) and name (41).
SONICWALL_FIELDS = [
    *KEYS,
    (2, 4, SONICWALL),
    (5, 4, SONICWALL),
    (6, 4, SONICWALL),
    (11, 2, SONICWALL),
    (12, 2, SONICWALL),
    (20, 1, SONICWALL),
    (22, 4, SONICWALL),
    (40, 4, SONICWALL),
    (41, VARLEN, SONICWALL),
]
# Sophos UTM: afcProtocol (1), afcProtocolName (2), flowDirection (4), netfilter mark and conntrack id.
SOPHOS_FIELDS = [
    *KEYS,
    (1, 2, SOPHOS_UTM),
    (2, VARLEN, SOPHOS_UTM),
    (4, 1, SOPHOS_UTM),
    (4, 4, NETFILTER),
    (6, 4, NETFILTER),
]


def keys(i: int, dport: int) -> bytes:
    """TCP 10.0.0.(1+i):(40000+i) -> 198.51.100.1:``dport``, 1000 bytes in 10 packets over 5 ms."""
    ms = 1_700_000_000_000 + i
    return struct.pack("!IIHHBQQQQ", 0x0A000001 + i, 0xC6336401, 40000 + i, dport, 6, 1000, 10, ms, ms + 5)


def sonicwall(i: int, dport: int, app_id: int, app_name: bytes) -> bytes:
    """A SonicWALL connection record (template 300) with application id and name."""
    vendor = struct.pack(
        "!IIIHHBII", 7000 + i, 0x0A000001 + i, 0xC6336401, 40000 + i, dport, 6, 900 + i, app_id
    )
    return keys(i, dport) + vendor + varlen(app_name)


def sophos(i: int, dport: int, afc: int, afc_name: bytes) -> bytes:
    """A Sophos UTM record (template 301) with afcProtocol and afcProtocolName."""
    return (
        keys(i, dport)
        + struct.pack("!H", afc)
        + varlen(afc_name)
        + struct.pack("!BII", 1, 0x10 + i, 5000 + i)
    )


# (record, expected network.application, what it shows); flow i has source port 40000 + i.
SONICWALL_CASES = [
    (sonicwall(0, 22, 7001, b"SSH"), "ssh", "the exporter's name element wins"),
    (sonicwall(1, 443, 7926, b""), "20:8741:7926", "an id nobody names stays visible"),
    (sonicwall(2, 53, 7002, b""), "openvpn-over-dns", "a user table names a SonicWALL id"),
    (sonicwall(3, 80, 0, b""), None, "id 0 is unclassified"),
]
SOPHOS_CASES = [
    (sophos(10, 22, 472, b"SSH"), "ssh", "afcProtocolName"),
    (sophos(11, 443, 473, b""), "ssl", "afcProtocol named by the shipped Sophos UTM table"),
    (sophos(12, 8443, 60000, b""), "20:9789:60000", "an id nobody names stays visible"),
    (sophos(13, 80, 0, b""), None, "afcProtocol 0 is unclassified"),
]


@pytest.fixture
def user_table(tmp_path: Path) -> str:
    path = tmp_path / "site-apps.tsv"
    path.write_text("# from our SonicWALL's application list\n20:8741:7002\tOpenVPN-over-DNS\n")
    return str(path)


def documents(tables: list[str]) -> dict[int, dict[str, Any]]:
    """Both vendors' records, decoded and normalized; by source port."""
    sets = [
        template(300, SONICWALL_FIELDS),
        template(301, SOPHOS_FIELDS),
        data_set(300, [record for record, _, _ in SONICWALL_CASES]),
        data_set(301, [record for record, _, _ in SOPHOS_CASES]),
    ]
    batches = Decoder().decode(Datagram(message(sets), "192.0.2.9", 4739, 1.0)).flows
    docs = Normalizer(NormalizeOptions(application_tables=tables)).frames(batches).documents()
    assert len(docs) == len(SONICWALL_CASES) + len(SOPHOS_CASES)
    return {d["source"]["port"]: d for d in docs}


def test_vendor_elements_are_registered() -> None:
    assert ipfix_element(SONICWALL, 22) == Element(SONICWALL, 22, "sonicwall_application_id", "unsigned32")
    assert ipfix_element(SONICWALL, 40) == Element(SONICWALL, 40, "sonicwall_app_id", "unsigned32")
    assert ipfix_element(SONICWALL, 41) == Element(SONICWALL, 41, "sonicwall_app_name", "string")
    assert ipfix_element(SONICWALL, 3) == Element(SONICWALL, 3, "sonicwall_initiator_gw_mac", "macAddress")
    assert ipfix_element(SONICWALL, 197).name == "sonicwall_top_apps_rate"
    assert ipfix_element(SONICWALL, 21).name == "enterprise_8741_21"  # not in the published list
    assert ipfix_element(SOPHOS_UTM, 1) == Element(SOPHOS_UTM, 1, "afc_protocol", "unsigned16")
    assert ipfix_element(SOPHOS_UTM, 2) == Element(SOPHOS_UTM, 2, "afc_protocol_name", "string")


def test_sonicwall_records_name_the_application_and_keep_the_vendor_fields(user_table: str) -> None:
    docs = documents([user_table])
    for i, (_, expected, what) in enumerate(SONICWALL_CASES):
        assert docs[40000 + i]["network"].get("application") == expected, what
    raw = docs[40000]["netflow"]
    assert {k: v for k, v in raw.items() if k.startswith("sonicwall_")} == {
        "sonicwall_flow_id": 7000,
        "sonicwall_initiator_ip": "10.0.0.1",
        "sonicwall_responder_ip": "198.51.100.1",
        "sonicwall_initiator_port": 40000,
        "sonicwall_responder_port": 22,
        "sonicwall_protocol_type": 6,
        "sonicwall_application_id": 900,
        "sonicwall_app_id": 7001,
        "sonicwall_app_name": "SSH",
    }
    assert docs[40001]["netflow"]["sonicwall_app_id"] == 7926


def test_sophos_utm_records_name_the_application_and_keep_the_vendor_fields(user_table: str) -> None:
    docs = documents([user_table])
    for i, (_, expected, what) in enumerate(SOPHOS_CASES, start=10):
        assert docs[40000 + i]["network"].get("application") == expected, what
    raw = docs[40010]["netflow"]
    assert (raw["afc_protocol"], raw["afc_protocol_name"], raw["flow_direction_9789"]) == (472, "SSH", 1)
    assert (raw["mark"], raw["conntrack_id"]) == (0x1A, 5010)
    assert docs[40011]["netflow"]["afc_protocol"] == 473


def test_without_user_tables_sonicwall_ids_stay_visible() -> None:
    docs = documents([])
    assert docs[40002]["network"]["application"] == "20:8741:7002"
    assert docs[40011]["network"]["application"] == "ssl"  # the shipped table needs no user table


def test_documents_use_only_declared_fields(user_table: str) -> None:
    docs = documents([user_table])
    assert sorted({p for doc in docs.values() for p in problems(doc)}) == []


def test_exporter_options_and_user_tables_name_vendor_ids_too(tmp_path: Path) -> None:
    names = ApplicationNames()
    assert names.name_of("20:9789:472", {}) == "ssh"
    assert names.name_of("20:9789:472", {"20:9789:472": "Secure Shell"}) == "secure shell"
    override = tmp_path / "override.tsv"
    override.write_text("20:9789:473\tTLS\n")
    assert ApplicationNames([str(override)]).name_of("20:9789:473", {}) == "tls"


def test_sophos_ssh_on_tcp_53_raises_the_application_tunneling_alert(tmp_path: Path) -> None:
    # afcProtocol 472 (ssh) without a name, on TCP/53, 10 packets in 5 ms: only DPI says tunnel.
    export = tmp_path / "sophos.dat"
    records = [sophos(0, 53, 472, b""), sophos(1, 53, 124, b"")]  # ssh, then dns, on TCP/53
    export.write_bytes(message([template(301, SOPHOS_FIELDS), data_set(301, records)]))

    alerts = replay_alerts(tmp_path, export)

    docs = [json.loads(line) for f in (tmp_path / "out").glob("flows-*.ndjson") for line in f.open()]
    assert sorted((d["source"]["ip"], d["network"]["application"]) for d in docs) == [
        ("10.0.0.1", "ssh"),
        ("10.0.0.2", "dns"),
    ]
    assert [(a["rule"]["name"], a["source"]["ip"], a["destination"]["port"]) for a in alerts] == [
        ("app_tunnel_flow", "10.0.0.1", 53)
    ]
