"""The Kibana bundle against the real Elasticsearch (issue 6, acceptance 2-4; there is no Kibana
here, so the panels are proven on the data they would show).

The lab's NetFlow v9 export is replayed once by ``tunnelhound replay`` (tests/lab_replay.py) with
flows and alerts to Elasticsearch, in a namespace of this run's own, and to NDJSON files, so the
data streams and the files hold the same documents: 1,919 flows and the alerts the detection
engine really raises. The threat-index weights are raised (high 16, medium 5 instead of 6 and 3)
so that three hosts cross 20 and the engine writes ``threat_index_high`` alerts too; the 13
detections are the lab's usual ones. Then:

2. every field a panel, filter or saved search uses is in ``_field_caps`` of the streams with a
   type Kibana can use as the panel does;
3. every Lens panel, translated to ``_search`` (tests/kibana_lens.py), answers without shard
   failures and with the rows Python computes from the NDJSON documents;
4. the promotion rule's query as a ``query_string`` returns exactly the alert documents written.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from es_server import es_request
from external_alerts import set_up_elasticsearch
from kibana_lens import (
    DATE_INTERVAL_MS,
    LensPanel,
    epoch_ms,
    es_rows,
    es_search,
    field_uses,
    lens_panels,
    load_ndjson,
    python_rows,
    saved_searches,
)
from lab_replay import replay_alerts
from tunnelhound.setup.kibana_bundle import ALERTS, FLOWS, RULES_FILE, SAVED_OBJECTS_FILE, promotion_rule
from tunnelhound.sinks.elasticsearch import alert_index, flow_index

pytestmark = pytest.mark.elasticsearch
BUNDLE = Path(__file__).resolve().parent.parent / "elastic" / "kibana"
OBJECTS = load_ndjson((BUNDLE / SAVED_OBJECTS_FILE).read_text())
PANELS = list(lens_panels(OBJECTS))
NUMERIC = {
    "long",
    "integer",
    "short",
    "byte",
    "double",
    "float",
    "half_float",
    "scaled_float",
    "unsigned_long",
}
WEIGHTS = {"weight_medium": 5.0, "weight_high": 16.0}
"""Threat-index weights for the replay: the lab's hosts cross 20 with them (not with 3 and 6)."""
DETECTIONS = {
    # tests/test_lab_detections.py: what the v9 export raises
    "app_tunnel_flow": 2,
    "beacon_regular": 3,
    "dns_tunnel_flow": 2,
    "dns_tunnel_volume": 2,
    "exfiltration_volume": 1,
    "icmp_tunnel_flow": 1,
    "port_scan_vertical": 2,
}
MIB = 2**20


@dataclass
class Lab:
    url: str
    namespace: str
    flows: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    time_range: tuple[str, str]
    """From the earliest flow to after the replay (alerts carry the time they were written)."""

    def stream(self, view_id: str) -> str:
        return {FLOWS.id: flow_index, ALERTS.id: alert_index}[view_id](self.namespace)

    def docs(self, view_id: str) -> list[dict[str, Any]]:
        return self.flows if view_id == FLOWS.id else self.alerts


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    url = set_up_elasticsearch()
    tmp = tmp_path_factory.mktemp("kibana")
    namespace = f"kib{uuid.uuid4().hex[:12]}"
    settings = {
        "namespace": namespace,
        "output": {"elasticsearch": {"url": url, "flush_interval": 0.2}},
        "alerts": {"elasticsearch": {"enabled": True}},
        "rules": {"threat_index": WEIGHTS},
    }
    alerts = replay_alerts(tmp, config=settings)
    end = _iso(datetime.now(UTC))
    flows = [
        json.loads(line)
        for f in sorted((tmp / "out").glob("flows-*.ndjson"))
        for line in f.read_text().splitlines()
    ]
    start = min(d["@timestamp"] for d in flows + alerts)
    lab = Lab(url, namespace, flows, alerts, (start, end))
    for view_id in (FLOWS.id, ALERTS.id):
        es_request(url, method="POST", path=f"/{lab.stream(view_id)}/_refresh")
    return lab


def test_the_replay_wrote_what_the_panels_need(lab: Lab) -> None:
    for view_id in (FLOWS.id, ALERTS.id):
        status, body = es_request(lab.url, path=f"/{lab.stream(view_id)}/_count")
        assert status == 200 and body["count"] == len(lab.docs(view_id))
    assert len(lab.flows) == 1919
    rules = Counter(a["rule"]["name"] for a in lab.alerts)
    # The lab's 13 detections, and 3 hosts whose index crossed 20 with the raised weights.
    assert rules == {**DETECTIONS, "threat_index_high": 3}
    assert len({a["event"]["id"] for a in lab.alerts}) == len(lab.alerts)
    # Every alert names its host and carries the host's index: the threat-index panels' data.
    assert all(a["source"]["ip"] and a["tunnelhound"]["threat_index"]["value"] > 0 for a in lab.alerts)
    assert all(a["tunnelhound"]["alert"]["evidence"]["flow_count"] > 0 for a in lab.alerts)


def test_every_field_is_mapped_as_the_panels_use_it(lab: Lab) -> None:
    uses = field_uses(OBJECTS)
    assert set(uses) == {FLOWS.id, ALERTS.id}
    checked = 0
    for view_id, pairs in uses.items():
        names = sorted({f for f, _ in pairs})
        status, caps = es_request(
            lab.url, path=f"/{lab.stream(view_id)}/_field_caps?fields={','.join(names)}"
        )
        assert status == 200, caps
        for name, use in sorted(pairs):
            assert name in caps["fields"], f"{view_id}: {name} is not mapped"
            (kind, cap), *others = caps["fields"][name].items()
            assert not others, f"{name}: conflicting types {caps['fields'][name]}"
            if use == "date":
                assert kind == "date" and cap["aggregatable"], (name, cap)
            elif use == "numeric":
                assert kind in NUMERIC and cap["aggregatable"], (name, cap)
            elif use == "aggregatable":
                assert cap["aggregatable"], (name, cap)
            elif use == "searchable":
                assert cap["searchable"], (name, cap)
            checked += 1
    assert checked >= 30


def panel_rows(lab: Lab, panel: LensPanel) -> list[dict[str, Any]]:
    """The panel's rows as Elasticsearch answers its query (no shard may fail)."""
    body = es_search(panel, lab.time_range)
    status, answer = es_request(
        lab.url, method="POST", path=f"/{lab.stream(panel.view_id)}/_search", body=body
    )
    assert status == 200, answer
    assert answer["_shards"]["failed"] == 0, answer["_shards"]
    return es_rows(panel, answer)


@pytest.mark.parametrize("panel", PANELS, ids=[f"{p.dashboard}: {p.title}" for p in PANELS])
def test_panel_values_equal_python(lab: Lab, panel: LensPanel) -> None:
    got = panel_rows(lab, panel)
    want = python_rows(panel, lab.docs(panel.view_id), lab.time_range)
    assert got, f"{panel.title}: no rows"
    assert len(got) == len(want), (panel.title, got[:3], want[:3])
    for g, w in zip(got, want, strict=True):
        for cid, value in w.items():
            if isinstance(value, frozenset):
                assert g[cid] in value, (panel.title, g, w)
            else:
                assert g[cid] == value, (panel.title, cid, g, w)


def test_panels_show_the_known_answers(lab: Lab) -> None:
    """Values spelled out from what the lab is, not only "Elasticsearch equals Python"."""
    panels = {p.title.split(" (")[0].split(":")[0]: p for p in PANELS}

    def rows(title: str) -> list[list[Any]]:
        return [list(r.values()) for r in panel_rows(lab, panels[title])]

    # rule, alerts, highest severity, hosts; ordered by count, ties by name.
    assert rows("Alerts by rule") == [
        ["beacon_regular", 3, 47.0, 3],
        ["threat_index_high", 3, 73.0, 3],
        ["app_tunnel_flow", 2, 73.0, 1],
        ["dns_tunnel_flow", 2, 73.0, 2],
        ["dns_tunnel_volume", 2, 47.0, 2],
        ["port_scan_vertical", 2, 47.0, 1],
        ["exfiltration_volume", 1, 73.0, 1],
        ["icmp_tunnel_flow", 1, 73.0, 1],
    ]
    # The two DNS tunnel hosts (two detections and the crossing each) and the app tunnel lead.
    assert rows("Top alerted hosts")[:4] == [
        ["10.77.1.65", 3],
        ["10.77.1.66", 3],
        ["10.77.1.70", 3],
        ["10.77.1.68", 2],
    ]
    talkers = rows("Top talkers")
    # The 30 MiB download and the 30 MiB upload lead.
    assert [host for host, _ in talkers[:2]] == ["10.77.1.25", "10.77.1.69"]
    assert all(total > 30 * MIB for _, total in talkers[:2])
    pairs = rows("Top pairs")
    # source, destination, bytes, bytes source -> destination, bytes destination -> source, flows
    download = pairs[0]
    assert download[:2] == ["10.77.1.25", "198.18.3.43"] and download[4] > 30 * MIB > 50 * download[3]
    upload = next(p for p in pairs if p[:2] == ["10.77.1.69", "198.18.4.43"])
    assert upload[3] > 30 * MIB > 50 * upload[4]
    # host: index at its latest alert, highest index, alerts. The index is the sum of its alerts'
    # weights (high 16, medium 5; all raised within seconds of flow time, so barely decayed).
    high, medium = WEIGHTS["weight_high"], WEIGHTS["weight_medium"]
    index = {
        "10.77.1.70": (2 * high, 3),  # two app tunnel flows, then the crossing
        "10.77.1.65": (high + medium, 3),  # DNS tunnel flow and volume, then the crossing
        "10.77.1.66": (high + medium, 3),
        "10.77.1.67": (high, 1),  # ICMP tunnel
        "10.77.1.69": (high, 1),  # exfiltration
        "10.77.1.68": (2 * medium, 2),  # two vertical port scans
        "10.77.1.71": (medium, 1),  # beacons
        "10.77.1.72": (medium, 1),
        "10.77.1.73": (medium, 1),
    }
    hosts = rows("Hosts by threat index")
    assert [h[0] for h in hosts] == list(index)
    for host, now, highest, count in hosts:
        value, alerts = index[host]
        assert (now, highest, count) == (
            pytest.approx(value, abs=0.01),
            pytest.approx(value, abs=0.01),
            alerts,
        )
    crossed = {a["source"]["ip"] for a in lab.alerts if a["rule"]["name"] == "threat_index_high"}
    assert crossed == {h for h, (value, _) in index.items() if value >= 20}
    # The history, in flow time: a point for each host and 30 s interval in which it was alerted.
    history = rows("Threat index history")
    points = {(a["source"]["ip"], epoch_ms(a["event"]["end"]) // DATE_INTERVAL_MS) for a in lab.alerts}
    assert sorted((h, t // DATE_INTERVAL_MS) for h, t, _ in history) == sorted(points)


def test_saved_search_returns_every_alert(lab: Lab) -> None:
    ((title, attrs, view_id),) = saved_searches(OBJECTS)
    source = json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
    body = {
        "size": 1000,
        "query": {"bool": {"filter": [f["query"] for f in source["filter"]]}},
        "sort": [{field: {"order": order}} for field, order in attrs["sort"]],
        "fields": attrs["columns"],
        "_source": False,
    }
    status, answer = es_request(lab.url, method="POST", path=f"/{lab.stream(view_id)}/_search", body=body)
    assert status == 200 and answer["_shards"]["failed"] == 0, answer
    hits = answer["hits"]["hits"]
    assert sorted(h["_id"] for h in hits) == sorted(a["event"]["id"] for a in lab.alerts), title
    times = [h["sort"][0] for h in hits]
    assert times == sorted(times, reverse=True)
    # The evidence query column has a value for every alert. A query over 1,024 characters
    # (keyword ignore_above) comes back in ignored_field_values, which Discover shows too.
    column = "tunnelhound.alert.evidence.query"
    shown = {
        h["_id"]: (h["fields"].get(column) or h.get("ignored_field_values", {}).get(column)) for h in hits
    }
    by_id = {a["event"]["id"]: a["tunnelhound"]["alert"]["evidence"]["query"] for a in lab.alerts}
    assert shown == {i: [q] for i, q in by_id.items()}


def test_promotion_rule_query_returns_exactly_the_alerts(lab: Lab) -> None:
    (rule,) = load_ndjson((BUNDLE / RULES_FILE).read_text())
    assert rule == promotion_rule()
    want = sorted(a["event"]["id"] for a in lab.alerts)
    assert len(want) == sum(DETECTIONS.values()) + 3
    # Over both streams of the namespace: no flow may match.
    query = {"query_string": {"query": rule["query"]}}
    status, answer = es_request(
        lab.url,
        method="POST",
        path=f"/logs-tunnelhound.*-{lab.namespace}/_search",
        body={"size": 1000, "query": query, "_source": False},
    )
    assert status == 200 and answer["_shards"]["failed"] == 0, answer
    assert sorted(h["_id"] for h in answer["hits"]["hits"]) == want
    # Over the rule's own index pattern (every namespace), restricted to ours.
    (pattern,) = rule["index"]
    body = {
        "size": 1000,
        "_source": False,
        "query": {"bool": {"filter": [query, {"term": {"data_stream.namespace": lab.namespace}}]}},
    }
    status, answer = es_request(lab.url, method="POST", path=f"/{pattern}/_search", body=body)
    assert status == 200 and answer["_shards"]["failed"] == 0, answer
    assert sorted(h["_id"] for h in answer["hits"]["hits"]) == want
