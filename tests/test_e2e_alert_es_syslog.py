"""Issue 4, acceptance 4, with the alerts a lab replay really raises: `tunnelhound replay` of
the NetFlow v9 export, configured to write flows and alerts to the real node on
127.0.0.1:9200 (after `tunnelhound setup`, a namespace of its own) and alerts to a syslog
listener, TCP in one run and UDP in another.

In Elasticsearch, Elastic Security's "External Alerts" query finds exactly the alerts raised,
each equal to the NDJSON alert document, with valid ATT&CK ids; and every alert's evidence
query, run on the flows of the same namespace, returns exactly its evidence flows.  Every
syslog message passes the strict RFC 5424 parser and carries its alert."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from es_server import es_request
from external_alerts import EXTERNAL_ALERTS, TACTIC, TECHNIQUE, search, set_up_elasticsearch
from lab_replay import replay_alerts
from syslog_server import FramedServer, check_message
from tunnelhound.sinks.elasticsearch import alert_index, flow_index

pytestmark = pytest.mark.elasticsearch

LAB_ALERTS = 13  # tests/test_lab_detections.py: the v9 export's alerts
SYSLOG_PRI = {21: 16 * 8 + 5, 47: 16 * 8 + 4, 73: 16 * 8 + 3, 99: 16 * 8 + 2}  # local0


@pytest.fixture(scope="module")
def url() -> str:
    return set_up_elasticsearch()


@pytest.fixture
def tcp_server() -> Iterator[FramedServer]:
    server = FramedServer()
    yield server
    server.stop()


def config(namespace: str, syslog: str, transport: str, es_url: str | None = None) -> dict[str, Any]:
    alerts: dict[str, Any] = {
        "syslog": {"address": syslog, "transport": transport, "hostname": "sensor-1.example"},
        "delivery": {"backoff_initial": 0.05, "backoff_max": 0.3, "close_timeout": 20.0},
    }
    settings: dict[str, Any] = {"namespace": namespace, "alerts": alerts}
    if es_url is not None:
        settings["output"] = {"elasticsearch": {"url": es_url, "flush_interval": 0.2}}
        alerts["elasticsearch"] = {"enabled": True}
    return settings


def test_lab_alerts_in_elasticsearch_and_over_syslog_tcp(
    url: str, tcp_server: FramedServer, tmp_path: Path
) -> None:
    namespace = "e2e" + uuid.uuid4().hex
    settings = config(namespace, f"127.0.0.1:{tcp_server.port}", "tcp", url)
    alerts = replay_alerts(tmp_path, config=settings)
    assert len(alerts) == LAB_ALERTS
    by_id = {a["event"]["id"]: a for a in alerts}
    assert len(by_id) == LAB_ALERTS

    # Elastic Security's External Alerts rule over logs-*: these alerts, nothing else.
    hits = search(
        url,
        "logs-*",
        {
            "bool": {
                "must": [{"query_string": {"query": EXTERNAL_ALERTS}}],
                "filter": [{"term": {"data_stream.namespace": namespace}}],
            }
        },
    )
    assert sorted(h["_id"] for h in hits) == sorted(by_id)
    for hit in hits:
        assert hit["_index"].startswith(f".ds-{alert_index(namespace)}-")
        assert hit["_source"] == by_id[hit["_id"]]
        threat = hit["_source"]["threat"]
        techniques = threat["technique"]["id"] + threat["technique"]["subtechnique"]["id"]
        assert techniques and all(TECHNIQUE.match(i) for i in techniques), techniques
        assert threat["tactic"]["id"] and all(TACTIC.match(i) for i in threat["tactic"]["id"])

    # Each evidence query, on this namespace's flows, returns exactly the evidence flows.
    flows = flow_index(namespace)
    es_request(url, "POST", f"/{flows}/_refresh")
    status, count = es_request(url, "GET", f"/{flows}/_count")
    assert (status, count["count"]) == (200, 1919)  # every lab flow indexed
    for alert in alerts:
        evidence = alert["tunnelhound"]["alert"]["evidence"]
        found = search(url, flows, {"query_string": {"query": evidence["query"]}}, size=1000)
        ids = {h["_source"]["event"]["id"] for h in found}
        name = alert["rule"]["name"]
        assert len(found) == evidence["flow_count"] > 0, (name, evidence["query"])
        assert set(evidence["flow_event_ids"]) <= ids, name
        assert len(evidence["flow_event_ids"]) == min(evidence["flow_count"], 100), name
        assert {h["_source"]["source"]["ip"] for h in found} == {alert["source"]["ip"]}, name

    # Syslog over TCP: one RFC 5424 message per alert, in order.
    assert len(tcp_server.received) == LAB_ALERTS  # close() delivered them
    for raw, alert in zip(tcp_server.received, alerts, strict=True):
        check_message(raw, alert, pri=SYSLOG_PRI[alert["event"]["severity"]])


def test_lab_alerts_over_syslog_udp(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(10)
    try:
        port = listener.getsockname()[1]
        alerts = replay_alerts(tmp_path, config=config("e2e", f"127.0.0.1:{port}", "udp"))
        received = [listener.recv(65535) for _ in alerts]
    finally:
        listener.close()
    assert len(alerts) == LAB_ALERTS
    for raw, alert in zip(received, alerts, strict=True):
        msg = check_message(raw, alert, pri=SYSLOG_PRI[alert["event"]["severity"]])
        threat = alert["threat"]
        assert msg.sd["tunnelhound@32473"]["attack"] == (
            threat["tactic"]["id"] + threat["technique"]["id"] + threat["technique"]["subtechnique"]["id"]
        )
