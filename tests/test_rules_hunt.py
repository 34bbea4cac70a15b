"""Built-in Sigma rules: sigma check, conversion, and `tunnelhound hunt` on the lab corpus indexed
into the real Elasticsearch (issue 4, acceptance 1 and 2 for the hunt path)."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from es_server import ensure_elasticsearch, es_request
from flowframes import T0, flow, frame
from tunnelhound.cli import main
from tunnelhound.config import DetectionsConfig
from tunnelhound.features import FeatureStage
from tunnelhound.features.baseline import Baseline
from tunnelhound.rules.check import rule_files
from tunnelhound.rules.convert import convert_paths
from tunnelhound.rules.loader import BUILTIN_RULES, PIPELINE, load_pipeline
from tunnelhound.setup.elasticsearch import Asset, install_assets, load_assets
from tunnelhound.sinks.elasticsearch import ElasticsearchSink

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "tests" / "data" / "lab"


def script(name: str) -> ModuleType:
    """Import one of scripts/*.py as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def conversions() -> dict[str, Any]:
    pipeline = load_pipeline(BUILTIN_RULES / PIPELINE)
    return {c.name: c for c in convert_paths([str(BUILTIN_RULES)], pipeline)}


def test_sigma_check_has_no_issues(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check"]) == 0
    assert "Found 0 errors, 0 condition errors and 0 issues." in capsys.readouterr().out
    # every rule file is checked; pipelines/ holds no rules
    assert [p.name for p in rule_files([str(BUILTIN_RULES)])] == [
        "app_tunnel.yml", "beacon.yml", "dns_tunnel.yml", "exfiltration.yml",
        "icmp_tunnel.yml", "port_scan.yml", "threat_index.yml",
    ]  # fmt: skip


def test_sigma_check_fails_on_an_issue(tmp_path: Path) -> None:
    bad = (BUILTIN_RULES / "beacon.yml").read_text().replace("attack.t1573", "attack.t9999")
    (tmp_path / "bad.yml").write_text(bad)
    assert main(["rules", "check", str(tmp_path)]) == 1


def test_every_rule_converts_to_a_search_request() -> None:
    conv = conversions()
    assert sorted(conv) == sorted(
        [
            "app_tunnel_flow", "beacon_regular", "dns_tunnel_flow", "dns_tunnel_client_bytes", "dns_tunnel_volume",
            "exfiltration_outbound_bytes",
            "exfiltration_volume", "exfiltration_repeat", "icmp_tunnel_flow", "port_scan_unanswered_probe",
            "port_scan_vertical", "port_scan_horizontal", "threat_index_high",
        ]
    )  # fmt: skip
    assert conv["dns_tunnel_flow"].lucene == "tunnelhound.dns.anomaly:true"
    assert not conv["port_scan_unanswered_probe"].alerts and conv["port_scan_vertical"].alerts
    # exfiltration_repeat counts it with generate: true, so trigger 1 still alerts; plain feeders do not
    assert conv["exfiltration_volume"].alerts and not conv["exfiltration_outbound_bytes"].alerts
    vertical = conv["port_scan_vertical"].search["aggs"]["group"]
    assert vertical["terms"]["field"] == "source.ip"
    window = vertical["aggs"]["group"]["aggs"]["window"]
    assert window["date_histogram"]["fixed_interval"] == "300s"
    assert window["aggs"]["metric"] == {"cardinality": {"field": "destination.port"}}
    assert window["aggs"]["condition"]["bucket_selector"]["script"] == "params.value >= 15"
    volume = conv["exfiltration_volume"].search["aggs"]["group"]["aggs"]["window"]["aggs"]
    assert volume["metric"] == {"sum": {"field": "tunnelhound.exfil.bytes_out"}}
    assert volume["condition"]["bucket_selector"]["script"] == "params.value > 20000000"
    repeat = conv["exfiltration_repeat"].search["aggs"]["group"]["aggs"]["window"]
    assert repeat["date_histogram"]["fixed_interval"] == "86400s"
    assert repeat["aggs"]["condition"]["bucket_selector"]["buckets_path"] == {"value": "window._bucket_count"}
    assert conv["exfiltration_repeat"].conditions == [(">", 20000000.0), (">=", 3.0)]
    # ES|QL where pySigma's backend has it (not value_sum, not chains)
    assert "count_distinct(destination.port)" in conv["port_scan_vertical"].esql
    assert conv["port_scan_vertical"].esql.startswith("from logs-tunnelhound.flow-* ")
    assert conv["exfiltration_volume"].esql is None


def test_convert_command_formats(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "convert", "--format", "dsl"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 13 and all("query" in x["body"] for x in lines)
    assert main(["rules", "convert", "--format", "lucene"]) == 0
    out = capsys.readouterr().out
    assert "icmp_tunnel_flow\ttunnelhound.icmp_tunnel.oversize:true" in out
    assert main(["rules", "convert", "--format", "esql"]) == 0
    assert "exfiltration_volume\t(no ES|QL form; use --format dsl)" in capsys.readouterr().out


def test_users_sigma_taxonomy_names_map_to_ecs(tmp_path: Path) -> None:
    rule = """
title: Outbound To 4444
id: 0f6e3c1a-8a51-4a36-9a6e-2d0d5d1b7a11
name: users_port_4444
status: experimental
description: test
author: test
date: 2026-11-23
tags: [attack.command-and-control, attack.t1571]
logsource: {product: tunnelhound, category: network, service: flow}
detection:
    selection:
        DestinationPort: 4444
        id.orig_h|cidr: 10.0.0.0/8
    condition: selection
falsepositives: [none]
level: low
"""
    (tmp_path / "users.yml").write_text(rule)
    (conv,) = convert_paths([str(tmp_path)], load_pipeline(BUILTIN_RULES / PIPELINE))
    assert conv.lucene == "destination.port:4444 AND source.ip:10.0.0.0\\/8"


# --------------------------------------------------------------------------- on Elasticsearch


@pytest.fixture(scope="module")
def es_url() -> str:
    return ensure_elasticsearch()


def _has_feature_mappings(url: str, index: str) -> bool:
    status, body = es_request(url, "GET", f"/{index}/_mapping")
    assert status == 200, body
    (mapping,) = body.values()
    return "dns" in mapping["mappings"]["properties"]["tunnelhound"]["properties"]


PRIVATE = "huntdet"
"""Namespace prefix of this module's data streams; a template of our own maps them."""


def indexed_with_features(es_url: str, write: Callable[[str], list[str]]) -> list[str]:
    """Run ``write(prefix)`` (it indexes into namespaces starting with ``prefix`` and returns the
    data streams) with this branch's flow mappings, then refresh.

    The node is shared, and other branches' `tunnelhound setup` replace the shared flow
    template with theirs (without the feature fields) at any time. So the streams written here
    match a private index template (this branch's assets under another name, higher priority,
    only for ``logs-tunnelhound.flow-huntdet*``), installed with setup's own installer."""
    assets = {a.name: a for a in load_assets()}
    template = assets["logs-tunnelhound.flow"]
    body = copy.deepcopy(template.body)
    body["index_patterns"] = [f"logs-tunnelhound.flow-{PRIVATE}*"]
    body["priority"] = template.body["priority"] + 100
    # our required components under private names; optional ones (ILM, Elastic's) left out
    optional = set(body.pop("ignore_missing_component_templates"))
    components = {c: f"{PRIVATE}-{c}" for c in body["composed_of"] if c not in optional}
    body["composed_of"] = list(components.values())
    private = [Asset("component_template", copy_name, assets[c].body) for c, copy_name in components.items()]
    report = install_assets(es_url, assets=[*private, Asset("index_template", f"{PRIVATE}-flow", body)])
    assert report.ok, report.lines()
    prefix = PRIVATE + uuid.uuid4().hex[:10]
    streams = write(prefix)
    es_request(es_url, "POST", f"/logs-tunnelhound.flow-{prefix}*/_refresh")
    assert all(_has_feature_mappings(es_url, index) for index in streams)
    return streams


@pytest.fixture(scope="module")
def lab_indices(es_url: str) -> dict[str, str]:
    """Each lab capture, with features, in its own data stream (fresh namespaces)."""
    lab_index = script("lab_index")
    captures = ("netflow_v5.pcap", "netflow_v9.pcap", "ipfix.pcap")

    def write(prefix: str) -> list[str]:
        streams = []
        for capture in captures:
            namespace = prefix + capture.split(".")[0].replace("_", "")
            assert lab_index.index_capture(LAB / capture, es_url, namespace) == 1919
            streams.append(f"logs-tunnelhound.flow-{namespace}")
        return streams

    return dict(zip(captures, indexed_with_features(es_url, write), strict=True))


@pytest.mark.parametrize("capture", ["netflow_v5.pcap", "netflow_v9.pcap", "ipfix.pcap"])
def test_hunt_finds_every_lab_scenario_and_no_benign_host(
    capture: str, es_url: str, lab_indices: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["hunt", "--es-url", es_url, "--index", lab_indices[capture], "--json"]) == 0
    findings = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    rows = script("lab_detection_table").table(findings, json.loads((LAB / "labels.json").read_text()))
    assert {r["detector"]: (r["tp"], r["fn"], r["fp"]) for r in rows} == {
        "app_tunnel": (2, 0, 0),
        "dns_tunnel": (2, 0, 0),
        "icmp_tunnel": (1, 0, 0),
        "port_scan": (3, 0, 0),
        "exfiltration": (1, 0, 0),
        "beacon": (3, 0, 0),
    }
    hosts = {(f["rule"], f["host"]) for f in findings}
    assert hosts == {
        ("app_tunnel_flow", "10.77.1.70"),
        ("beacon_regular", "10.77.1.71"),
        ("beacon_regular", "10.77.1.72"),
        ("beacon_regular", "10.77.1.73"),
        ("dns_tunnel_flow", "10.77.1.65"),
        ("dns_tunnel_flow", "10.77.1.66"),
        ("dns_tunnel_volume", "10.77.1.65"),
        ("dns_tunnel_volume", "10.77.1.66"),
        ("exfiltration_volume", "10.77.1.69"),
        ("icmp_tunnel_flow", "10.77.1.67"),
        ("port_scan_vertical", "10.77.1.68"),
    }
    exfil = next(f for f in findings if f["rule"] == "exfiltration_volume")
    assert exfil["value"] > 30 * 2**20  # the 30 MiB upload; the 12 MiB one stays under 20 MB


def test_hunt_time_range(
    es_url: str, lab_indices: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    index = lab_indices["netflow_v9.pcap"]
    # the ICMP tunnel runs 13:38:40-13:39:54, the scans start at 13:40
    args = ["hunt", "--es-url", es_url, "--index", index, "--json", "--from", "2026-11-23T13:38:30Z"]
    assert main([*args, "--to", "2026-11-23T13:39:59Z"]) == 0
    rules = {json.loads(x)["rule"] for x in capsys.readouterr().out.splitlines()}
    assert rules == {"icmp_tunnel_flow"}  # dns2tcp's flow ends (@timestamp) at 13:38:28
    assert main(["hunt", "--es-url", es_url, "--index", index, "--from", "2027-01-01T00:00:00Z"]) == 0
    assert "0 findings" in capsys.readouterr().err


def test_baseline_build_from_a_capture_and_from_elasticsearch(
    tmp_path: Path, es_url: str, lab_indices: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "baseline.json"
    assert main(["baseline", "build", str(LAB / "netflow_v9.pcap"), "-o", str(out)]) == 0
    from_capture = Baseline.load(out)
    assert sorted(from_capture.metrics) == ["dns.duration", "dns.packets", "icmp.bytes_per_packet"]
    packets = from_capture.metrics["dns.packets"]
    assert packets.percentiles["50"] == 2.0 and packets.maximum == 51009  # dns2tcp's one flow
    es_out = tmp_path / "es.json"
    index = lab_indices["netflow_v9.pcap"]
    assert main(["baseline", "build", "--es-url", es_url, "--index", index, "-o", str(es_out)]) == 0
    from_es = Baseline.load(es_out)
    for name, stats in from_capture.metrics.items():
        assert from_es.metrics[name].count == stats.count
        assert from_es.metrics[name].mean == pytest.approx(stats.mean)
    assert "wrote" in capsys.readouterr().out


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_hunt_chains_exfiltration_repeat_over_the_volume_correlation(
    es_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Trigger 2: three > 20 MB windows of one host in 24 h; two of another host are not enough."""
    uploads = [("10.0.0.5", 0), ("10.0.0.5", 600), ("10.0.0.5", 1800), ("10.0.0.6", 0), ("10.0.0.6", 900)]
    rows = [
        flow(
            src_ip=host, start=start, duration=60.0, src_bytes=25_000_000, src_packets=17000, event_id=f"e{i}"
        )
        for i, (host, start) in enumerate(uploads)
    ]
    rows.append(flow(src_ip="10.0.0.7", start=0, duration=60.0, src_bytes=19_000_000, event_id="e9"))
    for row in rows:
        row |= {"start_iso": _iso(row["start_ns"]), "end_iso": _iso(row["end_ns"]), "created": _iso(T0)}
        row |= {"observer": "192.0.2.1"}
    flows = FeatureStage(DetectionsConfig()).apply(frame(*rows))

    def write(prefix: str) -> list[str]:
        flows.namespace = prefix + "exfil"
        sink = ElasticsearchSink(es_url, spool_dir=tmp_path / prefix)
        sink.write_frame(flows)
        sink.close()
        return [f"logs-tunnelhound.flow-{prefix}exfil"]

    (index,) = indexed_with_features(es_url, write)
    capsys.readouterr()  # setup's report
    assert main(["hunt", "--es-url", es_url, "--index", index, "--json"]) == 0
    found = sorted(
        (f["rule"], f["host"], f["value"]) for f in map(json.loads, capsys.readouterr().out.splitlines())
    )
    assert found == [
        ("exfiltration_repeat", "10.0.0.5", 3.0),
        ("exfiltration_volume", "10.0.0.5", 25_000_000.0),
        ("exfiltration_volume", "10.0.0.6", 25_000_000.0),
    ]


def test_hunt_against_a_dead_cluster_fails_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hunt", "--es-url", "http://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tunnelhound: hunt against http://127.0.0.1:1 failed:") and "\n" not in err


def test_a_correlation_with_no_search_request_form_fails_naming_file_and_rule(tmp_path: Path) -> None:
    from tunnelhound.rules.convert import ConvertError, convert_file

    rule = tmp_path / "avg.yml"
    rule.write_text(
        "title: Probes\nid: 5d3c8a10-0f2e-4c43-9a4e-1b2d3c4d5e6f\nname: probes\nstatus: test\n"
        "logsource: {product: tunnelhound, category: network, service: flow}\n"
        "detection: {selection: {tunnelhound.scan.unanswered: true}, condition: selection}\nlevel: low\n"
        "---\n"
        "title: Average probe size\nid: 6e4d9b21-1a3f-4d54-8b5f-2c3d4e5f6a7b\nname: probe_size\nstatus: test\n"
        "correlation:\n  type: value_avg\n  rules: [probes]\n  group-by: [source.ip]\n  timespan: 5m\n"
        "  condition: {gte: 100, field: source.bytes}\nlevel: low\n"
    )
    with pytest.raises(
        ConvertError, match=r"avg\.yml: rule probe_size: correlation type value_avg has no search"
    ):
        convert_file(rule, load_pipeline(BUILTIN_RULES / PIPELINE))
