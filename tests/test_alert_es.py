"""Elasticsearch alert sink against the real node on 127.0.0.1:9200 (issue 4, acceptance 4):
after `tunnelhound setup`, alerts opened through ``open_alert_sinks`` land in
``logs-tunnelhound.alert-<namespace>``, match the query of Elastic Security's prebuilt
"External Alerts" rule over its ``logs-*`` index pattern, carry valid ATT&CK ids, and are
indexed once however often they are written (``_id`` = ``event.id``, op_type create).

The node cannot delete data streams, so each run uses a namespace of its own."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from es_server import es_request
from external_alerts import EXTERNAL_ALERTS, TACTIC, TECHNIQUE, search, set_up_elasticsearch
from fieldlist import problems
from sample_alerts import RULES, make_alert
from tunnelhound.config import (
    AlertElasticsearchConfig,
    AlertsConfig,
    Config,
    ElasticsearchOutputConfig,
    OutputConfig,
)
from tunnelhound.errors import ConfigError
from tunnelhound.sinks.alerts import open_alert_sinks
from tunnelhound.sinks.elasticsearch import alert_index

pytestmark = pytest.mark.elasticsearch


@pytest.fixture(scope="module")
def url() -> str:
    return set_up_elasticsearch()


def config_for(url: str, namespace: str, state: Path) -> Config:
    return Config(
        namespace=namespace,
        state_dir=str(state),
        output=OutputConfig(elasticsearch=ElasticsearchOutputConfig(url=url, flush_interval=0.2)),
        alerts=AlertsConfig(elasticsearch=AlertElasticsearchConfig(enabled=True)),
    )


def test_alerts_land_and_match_external_alerts_rule(url: str, tmp_path: Path) -> None:
    namespace = "t" + uuid.uuid4().hex
    alerts = [make_alert(rule, namespace=namespace, source=f"10.9.0.{i}") for i, rule in enumerate(RULES, 1)]
    for alert in alerts:
        assert problems(alert, ("alert.yml",)) == []  # only fields the alert field list declares
    sinks = open_alert_sinks(config_for(url, namespace, tmp_path))
    assert [sink.name for sink in sinks.sinks] == ["elasticsearch"]
    sinks.write_alerts(alerts)
    sinks.write_alerts(alerts[:2])  # written again (a replay after a restart): no duplicates
    sinks.close()
    assert sinks.stats() == {
        "elasticsearch_sent": 6,  # 4 created + 2 answered 409 (already there)
        "elasticsearch_failed": 0,
        "elasticsearch_dropped": 0,
        "elasticsearch_retried": 0,
        "elasticsearch_queued": 0,
    }

    stream = alert_index(namespace)
    status, body = es_request(url, "GET", f"/_resolve/index/{stream}")
    assert status == 200, body
    assert [d["name"] for d in body["data_streams"]] == [stream]

    # The External Alerts rule's query over its logs-* pattern finds exactly these alerts.
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
    assert sorted(hit["_id"] for hit in hits) == sorted(a["event"]["id"] for a in alerts)
    by_id = {a["event"]["id"]: a for a in alerts}
    for hit in hits:
        assert hit["_index"].startswith(f".ds-{stream}-")
        assert hit["_source"] == by_id[hit["_id"]]
        threat = hit["_source"]["threat"]
        ids = threat["technique"]["id"] + threat["technique"]["subtechnique"]["id"]
        assert ids and all(TECHNIQUE.match(i) for i in ids), ids
        assert threat["tactic"]["id"] and all(TACTIC.match(i) for i in threat["tactic"]["id"])
        assert hit["_source"]["event"]["severity"] in (21, 47, 73, 99)

    # The mapped types are the template's: severity is numeric, ids are keywords.
    by_severity = search(url, stream, {"range": {"event.severity": {"gte": 73}}})
    assert sorted(h["_source"]["rule"]["name"] for h in by_severity) == ["dns_tunnel", "port_scan"]
    technique = search(url, stream, {"term": {"threat.technique.subtechnique.id": "T1071.004"}})
    assert [h["_source"]["rule"]["name"] for h in technique] == ["dns_tunnel"]


def test_alert_without_id_is_counted_not_raised(url: str, tmp_path: Path) -> None:
    namespace = "t" + uuid.uuid4().hex
    sinks = open_alert_sinks(config_for(url, namespace, tmp_path))
    broken = make_alert(namespace=namespace)
    del broken["event"]["id"]
    sinks.write_alerts([broken])
    sinks.write_alerts([make_alert(namespace=namespace, seq=7)])
    sinks.close()
    stats = sinks.stats()
    assert (stats["elasticsearch_sent"], stats["elasticsearch_failed"]) == (1, 1)


def test_enabled_without_cluster_is_a_config_error(tmp_path: Path) -> None:
    config = Config(
        state_dir=str(tmp_path), alerts=AlertsConfig(elasticsearch=AlertElasticsearchConfig(enabled=True))
    )
    with pytest.raises(
        ConfigError, match=r"alerts\.elasticsearch\.enabled: needs output\.elasticsearch\.url"
    ):
        open_alert_sinks(config)
