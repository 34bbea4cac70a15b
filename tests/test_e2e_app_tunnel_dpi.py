"""Issue 8, acceptance 3, last part: a flow whose DPI application is ``ssh`` on TCP/53 raises
the application-tunneling alert with no behavioural evidence at all (10 packets, 1000 bytes,
5 ms: nothing the size and duration checks would flag), whether the exporter names the
application (IPFIX ``applicationName``) or gives nDPI's id as pmacct exports it (RFC 6759
``applicationId`` 22:92).  The same flow classified ``dns`` stays quiet, and so does ssh on
its own port.  IPFIX built here, replayed by `tunnelhound replay` as a raw .dat export."""

from __future__ import annotations

import json
from pathlib import Path

from ipfix_messages import FLOW_FIELDS, NAME_FIELDS, app_id, data_set, flow, message, template, varlen
from lab_replay import replay_alerts

SSH_NAME, SSH_NDPI, DNS_NAME, DNS_NDPI, SSH_ON_22 = range(5)
"""Flow i comes from 10.0.0.(1+i), so each case has a host of its own."""


def test_ssh_on_tcp_53_alerts_without_behaviour_and_dns_does_not(tmp_path: Path) -> None:
    named = data_set(
        257,
        [
            flow(SSH_NAME, 53, varlen(b"ssh")),
            flow(DNS_NAME, 53, varlen(b"dns")),
            flow(SSH_ON_22, 22, varlen(b"ssh")),
        ],
    )
    by_id = data_set(
        256, [flow(SSH_NDPI, 53, varlen(app_id(22, 92))), flow(DNS_NDPI, 53, varlen(app_id(22, 5)))]
    )
    export = tmp_path / "dpi.dat"
    export.write_bytes(message([template(256, FLOW_FIELDS), template(257, NAME_FIELDS), named, by_id]))

    alerts = replay_alerts(tmp_path, export)

    docs = [json.loads(line) for f in (tmp_path / "out").glob("flows-*.ndjson") for line in f.open()]
    flows = {d["source"]["ip"]: d for d in docs}
    assert {ip: (d["network"]["application"], d["destination"]["port"]) for ip, d in flows.items()} == {
        "10.0.0.1": ("ssh", 53),
        "10.0.0.2": ("ssh", 53),
        "10.0.0.3": ("dns", 53),
        "10.0.0.4": ("dns", 53),
        "10.0.0.5": ("ssh", 22),
    }
    reasons = {ip: d["tunnelhound"].get("app_tunnel", {}).get("reason") for ip, d in flows.items()}
    assert reasons == {
        "10.0.0.1": "application_port",
        "10.0.0.2": "application_port",
        "10.0.0.3": None,
        "10.0.0.4": None,
        "10.0.0.5": None,
    }
    assert sorted((a["rule"]["name"], a["source"]["ip"]) for a in alerts) == [
        ("app_tunnel_flow", "10.0.0.1"),
        ("app_tunnel_flow", "10.0.0.2"),
    ]
    for alert in alerts:
        host = alert["source"]["ip"]
        assert (alert["destination"]["ip"], alert["destination"]["port"]) == ("198.51.100.1", 53)
        assert host in alert["event"]["reason"] and host in alert["related"]["ip"]
        evidence = alert["tunnelhound"]["alert"]["evidence"]
        assert evidence["flow_event_ids"] == [flows[host]["event"]["id"]]
        assert alert["event"]["severity"] == 73
        assert "T1572" in alert["threat"]["technique"]["id"]
