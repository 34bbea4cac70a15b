"""network.application from every DPI engine: vendor captures, and IPFIX messages built here
with RFC 6759 application ids for each engine (decoded by the real decoder, normalized by the
real normalizer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ipfix_messages import (
    FLOW_FIELDS,
    NAME_FIELDS,
    OPTION_FIELDS,
    app_id,
    data_set,
    flow,
    message,
    template,
    varlen,
)
from replay import DATA, dat_documents
from tunnelhound.decode.decoder import Decoder
from tunnelhound.model import Datagram
from tunnelhound.normalize.applications import SHIPPED_TABLES, ApplicationNames, load_table
from tunnelhound.normalize.ecs import NormalizeOptions, Normalizer

CASES = {c["name"]: c for c in json.loads((DATA / "vendors" / "expectations.json").read_text())}
FORTINET = 12356  # IANA private enterprise number
EXAMPLE = 32473  # RFC 5612: the PEN for documentation (SonicWALL/Sophos: test_vendor_applications.py)


def case_applications(name: str) -> list[tuple[Any, Any]]:
    docs = dat_documents(CASES[name]["files"])
    return [
        (d["netflow"].get("application_id", d["netflow"].get("app_id")), d["network"].get("application"))
        for d in docs
    ]


def test_palo_alto_app_id_names_are_the_application() -> None:
    apps = case_applications("Netflow 9 Palo Alto PAN-OS with app-id")
    assert apps == [("incomplete", "incomplete"), ("ssl", "ssl")] + [("incomplete", "incomplete")] * 6
    assert case_applications("Netflow 9 Palo Alto 1 flowset in large zero filled packet") == [
        ("kerberos", "kerberos")
    ]


def test_fortinet_ids_resolve_through_the_fortiguard_table_and_unknown_ones_stay_visible() -> None:
    apps = case_applications("Netflow 9 Fortigate FortiOS 54x appid")
    assert len(apps) == 17
    by_id = dict(apps)
    assert by_id["20:12356:40568"] == "https.browser"  # the expectation's 20..12356..40568
    assert by_id["20:12356:36660"] == "20:12356:36660" and by_id["20:12356:25843"] == "20:12356:25843"
    assert by_id["20:12356:0"] is None  # FortiGuard 0: not classified
    assert [a for i, a in apps].count("https.browser") == 4


def test_nbar_names_come_from_options_data_then_the_shipped_table() -> None:
    wlc = case_applications("Netflow 9 Cisco WLC")
    assert dict(wlc)["3:53"] == "dns" and dict(wlc)["3:443"] == "secure-http" and dict(wlc)["3:80"] == "http"
    assert dict(wlc)["13:431"] == "13:431"  # PANA-L7 id that neither the exporter nor a table names
    nprobe = case_applications("Netflow 9 nprobe DPI L7")
    assert nprobe == [("0:82", "0:82")]  # an empty applicationName does not hide the id


# ------------------------------------------------------------------ built IPFIX messages (tests/ipfix_messages.py)

ENGINE_FLOWS: list[tuple[str, int, bytes, str | None]] = [
    # (what, destination port, applicationId, expected network.application)
    ("IANA-L4 (engine 3): shipped NBAR2 name", 22, app_id(3, 22), "ssh"),
    ("IANA-L3 (engine 1)", 0, app_id(1, 47), "gre"),
    ("NBAR2 PANA-L7 (13) named by the exporter's options data", 443, app_id(13, 453), "ms-update"),
    ("NBAR2 PANA-L7 nobody names", 443, app_id(13, 99999), "13:99999"),
    ("nDPI as pmacct exports it (engine 22): SSH on TCP/53", 53, app_id(22, 92), "ssh"),
    ("nDPI TLS", 443, app_id(22, 91), "tls"),
    ("FortiGuard (20, PEN 12356)", 443, app_id(20, 40568, FORTINET), "https.browser"),
    ("PANA-L7-PEN (20) named by the exporter's options data", 443, app_id(20, 5100, EXAMPLE), "facebook"),
    ("PANA-L7-PEN id only a user table names", 53, app_id(20, 5200, EXAMPLE), "openvpn-over-dns"),
    ("PANA-L7-PEN id nobody names stays visible", 80, app_id(20, 77, EXAMPLE), "20:32473:77"),
    ("another one named by options data", 443, app_id(20, 1201, EXAMPLE), "teamviewer"),
    ("another one only a user table names", 22, app_id(20, 1300, EXAMPLE), "ssh"),
    ("selector 0 is unclassified", 80, app_id(13, 0), None),
]


def built_documents(tables: list[str]) -> list[dict[str, Any]]:
    options = data_set(
        300,
        [
            varlen(app_id(13, 453)) + varlen(b"ms-update"),
            varlen(app_id(20, 5100, EXAMPLE)) + varlen(b"Facebook"),
            varlen(app_id(20, 1201, EXAMPLE)) + varlen(b"TeamViewer"),
        ],
    )
    flows = data_set(256, [flow(i, port, varlen(aid)) for i, (_, port, aid, _) in enumerate(ENGINE_FLOWS)])
    named = data_set(257, [flow(99, 22, varlen(b"SSH")), flow(98, 22, varlen(b""))])
    sets = [template(256, FLOW_FIELDS), template(257, NAME_FIELDS), template(300, OPTION_FIELDS, scope=1)]
    decoder = Decoder()
    out = decoder.decode(Datagram(message([*sets, options]), "192.0.2.9", 4739, 0.0))
    assert len(out.options) == 3
    batches = decoder.decode(Datagram(message([flows, named]), "192.0.2.9", 4739, 1.0)).flows
    return Normalizer(NormalizeOptions(application_tables=tables)).frames(batches).documents()


@pytest.fixture
def user_table(tmp_path: Path) -> str:
    path = tmp_path / "site-apps.tsv"
    path.write_text(
        "# our own ids (from the firewalls' application lists)\n"
        "20:32473:5200\tOpenVPN-over-DNS\n"
        "20:32473:1300\tSSH  # trailing comments are fine\n"
    )
    return str(path)


def test_every_engine_resolves_from_built_ipfix(user_table: str) -> None:
    docs = built_documents([user_table])
    assert len(docs) == len(ENGINE_FLOWS) + 2
    by_source = {d["source"]["port"]: d for d in docs}
    for i, (what, port, _, expected) in enumerate(ENGINE_FLOWS):
        doc = by_source[40000 + i]
        assert doc["network"].get("application") == expected, what
        assert doc["destination"]["port"] == port
    assert by_source[40099]["network"]["application"] == "ssh"  # applicationName, lower-cased
    assert "application" not in by_source[40098]["network"]  # empty name, no id: nothing


def test_without_user_tables_only_exporter_and_shipped_names_apply() -> None:
    by_source = {d["source"]["port"]: d["network"].get("application") for d in built_documents([])}
    assert by_source[40000] == "ssh"
    assert by_source[40008] == "20:32473:5200" and by_source[40011] == "20:32473:1300"
    assert by_source[40004] == "ssh"  # nDPI ssh on TCP/53: the input the app-tunneling rule needs


def test_tables_parse_strictly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("3:22\tssh\n3:x\tnope\n")
    with pytest.raises(ValueError, match=r"bad\.tsv:2: expected 'engine:selector<TAB>name'"):
        load_table(bad)
    with pytest.raises(ValueError, match="cannot read it"):
        ApplicationNames([str(tmp_path / "missing.tsv")])
    padded = tmp_path / "padded.tsv"
    padded.write_text("20:012356:040568\tHTTPS.Browser\n3:22\tsecure-shell\n")
    assert load_table(padded) == {"20:12356:40568": "https.browser", "3:22": "secure-shell"}
    names = ApplicationNames([str(padded)])
    assert names.name_of("3:22", {}) == "secure-shell"  # a user table overrides a shipped name
    assert names.name_of("3:22", {"3:22": "SSH"}) == "ssh"  # and the exporter's own name wins


def test_shipped_tables_are_documented_with_their_sources() -> None:
    folder = Path(__file__).resolve().parent.parent / "sidecar" / "tunnelhound" / "data" / "applications"
    readme = (folder / "README.md").read_text()
    names = ApplicationNames().table
    for name in SHIPPED_TABLES:
        assert f"`{name}`" in readme
        assert load_table(folder / name)  # each parses and names something
    assert names["22:92"] == "ssh" and names["22:5"] == "dns" and names["1:1"] == "icmp"
    for source in ("RFC 6759", "ndpi_protocol_ids.h", "FortiGuard", "Standard Protocol Pack"):
        assert source in readme
