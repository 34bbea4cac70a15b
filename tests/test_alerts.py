"""Alert documents from detections: the field list, severity, ATT&CK, deterministic ids, and an
evidence query that returns exactly the evidence flows from a real Elasticsearch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from es_server import ensure_elasticsearch, es_request
from fieldlist import problems
from flows import flow, frame
from tunnelhound.alerts import SEVERITY, _is_builtin, alert_id, build_alert, build_alerts, threat_block
from tunnelhound.normalize.frame import encode_bulk_block
from tunnelhound.rules import Detection, RuleEngine, load_pipeline, load_rules
from tunnelhound.sinks.elasticsearch import flow_index

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "tests" / "data" / "rules"
SCANNER, TARGET = "10.0.0.5", "198.51.100.9"


def detections(rows: list[dict[str, Any]], rules: Path = RULES) -> list[Detection]:
    engine = RuleEngine(
        load_rules([rules], load_pipeline(RULES / "pipelines" / "tunnelhound.yml")), lateness_s=10
    )
    return engine.process(frame(rows)) + engine.flush()


def scan_rows() -> list[dict[str, Any]]:
    rows = [flow(SCANNER, TARGET, 1000 + i, t=i) for i in range(20)]
    return [*rows, flow("10.0.0.2", "198.51.100.2", 53, t=3, app="ssh", dst_packets=4)]


def test_alert_documents_match_the_field_list_and_the_contract() -> None:
    docs = build_alerts(detections(scan_rows()), "lab")
    assert [d["rule"]["name"] for d in docs] == ["test_ssh_on_53", "test_scan_vertical"]
    for doc in docs:
        assert problems(doc, ("alert.yml",)) == []
        assert doc["event"]["kind"] == "alert" and doc["event"]["module"] == "tunnelhound"
        assert doc["event"]["category"] == ["network", "intrusion_detection"]
        assert doc["event"]["ingested"] == docs[0]["event"]["ingested"] == doc["@timestamp"]
        assert doc["data_stream"] == {"type": "logs", "dataset": "tunnelhound.alert", "namespace": "lab"}
        assert doc["event"]["severity"] in (21, 47, 73, 99)
        assert doc["event"]["risk_score"] == float(doc["event"]["severity"])
        for tid in doc["threat"]["tactic"]["id"]:
            assert re.fullmatch(r"TA\d{4}", tid)
        for tid in doc["threat"]["technique"]["id"] + doc["threat"]["technique"]["subtechnique"]["id"]:
            assert re.fullmatch(r"T\d{4}(\.\d{3})?", tid)
    ssh, scan = docs
    assert scan["message"] == "Vertical port scan" and scan["event"]["action"] == "scan"
    assert scan["event"]["severity"] == 73
    assert scan["source"]["ip"] == SCANNER and scan["destination"] == {"ip": TARGET}
    assert scan["related"] == {"ip": [SCANNER, TARGET]}
    assert scan["tunnelhound"]["alert"]["evidence"]["flow_count"] == 15
    assert scan["rule"]["ruleset"] == "custom" and "license" not in scan["rule"]
    assert scan["threat"]["technique"]["name"] == ["Network Service Discovery"]
    assert ssh["destination"] == {"ip": "198.51.100.2", "port": 53}
    assert ssh["network"] == {"community_id": "1:10.0.0.2-198.51.100.2-53"}
    assert ssh["threat"]["tactic"] == {
        "id": ["TA0011"],
        "name": ["Command and Control"],
        "reference": ["https://attack.mitre.org/tactics/TA0011/"],
    }
    assert ssh["threat"]["technique"]["id"] == ["T1572", "T1071"]
    assert ssh["threat"]["technique"]["subtechnique"] == {
        "id": ["T1071.004"],
        "name": ["DNS"],
        "reference": ["https://attack.mitre.org/techniques/T1071/004/"],
    }
    assert ssh["tunnelhound"]["threat_index"] == {"value": 6.0}


def test_event_id_is_deterministic_per_rule_key_and_window() -> None:
    first = [alert_id(d) for d in detections(scan_rows())]
    again = [alert_id(d) for d in detections(scan_rows())]
    assert first == again and len(set(first)) == 2 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in first)
    (doc,) = [build_alert(d, ingested="2026-11-23T00:00:00.000Z") for d in detections(scan_rows()[:15])]
    assert doc["event"]["id"] == first[1] and doc["event"]["ingested"] == "2026-11-23T00:00:00.000Z"


def test_severity_map_and_tags_without_attack() -> None:
    assert SEVERITY == {"informational": 21, "low": 21, "medium": 47, "high": 73, "critical": 99}
    assert threat_block(("detection.threat_hunting", "cve.2021-44228")) is None
    block = threat_block(("attack.exfiltration", "attack.t9999"))
    assert block is not None and block["technique"]["name"] == ["T9999"]  # unknown: named by id


def _index(url: str, namespace: str, rows: list[dict[str, Any]]) -> str:
    index = flow_index(namespace)
    body = encode_bulk_block(frame(rows, {}), index)
    request = urllib.request.Request(
        f"{url}/_bulk?refresh=true",
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-ndjson"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert b'"errors":false' in response.read()
    return index


def _search(url: str, index: str, query: str) -> list[str]:
    status, body = es_request(
        url,
        method="POST",
        path=f"/{index}/_search",
        body={"size": 1000, "_source": ["event.id"], "query": {"query_string": {"query": query}}},
    )
    assert status == 200, body
    return sorted(hit["_source"]["event"]["id"] for hit in body["hits"]["hits"])


@pytest.mark.elasticsearch
def test_evidence_query_returns_exactly_the_evidence_flows(tmp_path: Path) -> None:
    url = ensure_elasticsearch()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "sidecar")}
    setup = subprocess.run(
        [sys.executable, "-m", "tunnelhound", "setup", "--es-url", url],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert setup.returncode == 0, setup.stderr
    # A scan rule that needs 120 distinct ports: its evidence is too large to list by id.
    big = (RULES / "scan.yml").read_text().replace("gte: 15", "gte: 120")
    (tmp_path / "scan.yml").write_text(big)
    rows = [flow(SCANNER, TARGET, 1000 + i, t=i) for i in range(150)]  # past the crossing too
    rows += [flow(SCANNER, TARGET, 5000 + i, t=-400 + i) for i in range(10)]  # before its window
    rows += [flow(SCANNER, TARGET, 6000 + i, t=50 + i, dst_packets=2) for i in range(10)]  # answered
    rows += [flow(SCANNER, "198.51.100.77", 7000 + i, t=60 + i) for i in range(10)]  # another host
    found = {d.rule.name: d for d in detections(rows, tmp_path)}
    small = {d.rule.name: d for d in detections(rows)}
    index = _index(url, f"rules{uuid.uuid4().hex[:12]}", rows)
    large = found["test_scan_vertical"]
    assert large.flow_count == 120 and "event.id:" not in large.query
    evidence = sorted(f"{SCANNER}-{TARGET}-{1000 + i}-40000-{i}" for i in range(120))
    assert _search(url, index, large.query) == evidence
    listed = small["test_scan_vertical"]
    assert listed.flow_count == 15 and _search(url, index, listed.query) == sorted(listed.flow_ids)


def test_where_a_rule_comes_from_is_resolved_once_per_directory() -> None:
    _is_builtin.cache_clear()
    docs = build_alerts(detections(scan_rows()) * 3, "lab")
    assert len(docs) == 6 and {d["rule"]["ruleset"] for d in docs} == {"custom"}
    assert _is_builtin.cache_info().misses == 1  # both test rules live in one directory
