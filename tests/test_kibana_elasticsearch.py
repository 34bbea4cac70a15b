"""The Kibana bundle against the real Elasticsearch (issue 6, acceptance 2-4; there is no Kibana
here, so the panels are proven on the data they would show).

The lab corpus (v5, v9 and IPFIX captures of the same traffic) is replayed by ``tunnelhound
replay -o DIR --es-url`` into a namespace of this run's own, so the NDJSON files and the data
stream hold the same documents; contract-shaped alerts (tests/alert_docs.py) are written to the
alert stream of the same namespace. Then:

2. every field a panel, filter or saved search uses is in ``_field_caps`` of the streams with a
   type Kibana can use as the panel does;
3. every Lens panel, translated to ``_search`` (tests/kibana_lens.py), answers without shard
   failures and with the rows Python computes from the NDJSON documents;
4. the promotion rule's query as a ``query_string`` returns exactly the alert documents written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from alert_docs import lab_alerts
from es_server import ensure_elasticsearch, es_request
from kibana_lens import (
    LensPanel,
    es_rows,
    es_search,
    field_uses,
    lens_panels,
    load_ndjson,
    python_rows,
    saved_searches,
)
from replay import DATA
from tunnelhound.setup.kibana_bundle import ALERTS, FLOWS, RULES_FILE, SAVED_OBJECTS_FILE, promotion_rule

pytestmark = pytest.mark.elasticsearch
ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "elastic" / "kibana"
OBJECTS = load_ndjson((BUNDLE / SAVED_OBJECTS_FILE).read_text())
PANELS = list(lens_panels(OBJECTS))
LAB = [DATA / "lab" / n for n in ("netflow_v5.pcap", "netflow_v9.pcap", "ipfix.pcap")]
TIME_RANGE = ("2026-11-23T13:00:00.000Z", "2026-11-23T14:30:00.000Z")
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


@dataclass
class Lab:
    url: str
    namespace: str
    flows: list[dict[str, Any]]
    alerts: list[dict[str, Any]]

    def stream(self, view_id: str) -> str:
        dataset = {FLOWS.id: "flow", ALERTS.id: "alert"}[view_id]
        return f"logs-tunnelhound.{dataset}-{self.namespace}"

    def docs(self, view_id: str) -> list[dict[str, Any]]:
        return self.flows if view_id == FLOWS.id else self.alerts


def _tunnelhound(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "sidecar")}
    return subprocess.run(
        [sys.executable, "-m", "tunnelhound", *args], capture_output=True, text=True, timeout=600, env=env
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    url = ensure_elasticsearch()
    setup = _tunnelhound("setup", "--es-url", url)
    assert setup.returncode == 0, setup.stderr
    tmp = tmp_path_factory.mktemp("kibana")
    namespace = f"kib{uuid.uuid4().hex[:12]}"
    config = tmp / "tunnelhound.yaml"
    config.write_text(f"namespace: {namespace}\nstate_dir: {tmp / 'state'}\n")
    out = tmp / "flows"
    replay = _tunnelhound("replay", *map(str, LAB), "-c", str(config), "-o", str(out), "--es-url", url)
    assert replay.returncode == 0, replay.stderr
    flows = [json.loads(line) for f in sorted(out.glob("*.ndjson")) for line in f.read_text().splitlines()]
    assert len(flows) > 3000, replay.stderr
    alerts = lab_alerts(flows, namespace)
    stream = f"logs-tunnelhound.alert-{namespace}"
    actions: list[Any] = []
    for doc in alerts:
        actions += [{"create": {"_index": stream, "_id": doc["event"]["id"]}}, doc]
    status, body = es_request(url, method="POST", path="/_bulk?refresh=true", body=actions)
    assert status == 200 and not body["errors"], body
    for name in (f"logs-tunnelhound.flow-{namespace}", stream):
        es_request(url, method="POST", path=f"/{name}/_refresh")
    return Lab(url, namespace, flows, alerts)


def test_the_seed_is_what_the_panels_need(lab: Lab) -> None:
    status, body = es_request(lab.url, path=f"/{lab.stream(FLOWS.id)}/_count")
    assert status == 200 and body["count"] == len(lab.flows)
    rules = Counter(a["rule"]["name"] for a in lab.alerts)
    # 12 alerting scenarios of labels.json; 9 distinct hosts with 3 threat-index updates each.
    assert rules == {
        "port_scan": 3,
        "beacon": 3,
        "dns_tunnel": 2,
        "app_tunnel": 2,
        "icmp_tunnel": 1,
        "exfiltration": 1,
        "threat_index": 27,
    }
    assert all(
        a["tunnelhound"]["alert"]["evidence"]["flow_count"] > 0
        for a in lab.alerts
        if a["rule"]["name"] != "threat_index"
    )


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


@pytest.mark.parametrize("panel", PANELS, ids=[f"{p.dashboard}: {p.title}" for p in PANELS])
def panel_rows(lab: Lab, panel: LensPanel) -> list[dict[str, Any]]:
    """The panel's rows as Elasticsearch answers its query (no shard may fail)."""
    body = es_search(panel, TIME_RANGE)
    status, answer = es_request(
        lab.url, method="POST", path=f"/{lab.stream(panel.view_id)}/_search", body=body
    )
    assert status == 200, answer
    assert answer["_shards"]["failed"] == 0, answer["_shards"]
    return es_rows(panel, answer)


@pytest.mark.parametrize("panel", PANELS, ids=[f"{p.dashboard}: {p.title}" for p in PANELS])
def test_panel_values_equal_python(lab: Lab, panel: LensPanel) -> None:
    got = panel_rows(lab, panel)
    want = python_rows(panel, lab.docs(panel.view_id), TIME_RANGE)
    assert got, f"{panel.title}: no rows"
    assert len(got) == len(want), (panel.title, got[:3], want[:3])
    for g, w in zip(got, want, strict=True):
        for cid, value in w.items():
            if isinstance(value, frozenset):
                assert g[cid] in value, (panel.title, g, w)
            else:
                assert g[cid] == value, (panel.title, cid, g, w)


def test_panels_show_the_known_answers(lab: Lab) -> None:
    """Values spelled out from what the lab and the seed are, not only "ES equals Python"."""
    panels = {p.title.split(":")[0]: p for p in PANELS}
    by_rule = [list(r.values()) for r in panel_rows(lab, panels["Alerts by rule"])]
    # rule, alerts, highest severity, hosts; ordered by count, ties by name.
    assert by_rule == [
        ["threat_index", 27, 73.0, 9],
        ["beacon", 3, 47.0, 3],
        ["port_scan", 3, 47.0, 1],
        ["app_tunnel", 2, 73.0, 1],
        ["dns_tunnel", 2, 73.0, 2],
        ["exfiltration", 1, 73.0, 1],
        ["icmp_tunnel", 1, 73.0, 1],
    ]
    talkers = [list(r.values()) for r in panel_rows(lab, panels["Top talkers (bytes)"])]
    # The 30 MiB download and the 30 MiB upload, each in all three captures, lead.
    assert [host for host, _ in talkers[:2]] == ["10.77.1.25", "10.77.1.69"]
    assert all(total > 3 * 30 * 2**20 for _, total in talkers[:2])
    pairs = [list(r.values()) for r in panel_rows(lab, panels["Top pairs (bytes both ways)"])]
    # source, destination, bytes, bytes source -> destination, bytes destination -> source, flows
    download = pairs[0]
    assert download[:2] == ["10.77.1.25", "198.18.3.43"] and download[4] > 3 * 30 * 2**20 > 50 * download[3]
    upload = next(p for p in pairs if p[:2] == ["10.77.1.69", "198.18.4.43"])
    assert upload[3] > 3 * 30 * 2**20 > 50 * upload[4]
    hosts = {
        r[0]: r[1:] for r in (list(r.values()) for r in panel_rows(lab, panels["Hosts by threat index"]))
    }
    alerted = sorted({a["source"]["ip"] for a in lab.alerts if a["rule"]["name"] != "threat_index"})
    # Seeded per host n (in address order): 20+4n, then x1.5, then x0.75 (the current value).
    assert hosts == {h: [(20 + 4 * n) * 0.75, (20 + 4 * n) * 1.5, 3] for n, h in enumerate(alerted)}


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
