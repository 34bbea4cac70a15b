"""Elasticsearch assets against the real node: generated files, idempotent setup, simulated
mappings, and the whole vendor corpus, the lab captures and softflowd's own exports of
tests/data/traffic/mixed.pcap (every version: v5, v9, v10, v10 biflow, sampled) indexed
through them (acceptance 1: no field in `GET _mapping` that the field list does not declare).

The node (integ-test build) cannot delete data streams, so every run writes to a namespace of
its own (``t<uuid hex>``); the templates themselves are the real, shared ones.
"""

from __future__ import annotations

import fnmatch
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from es_server import REPO, ensure_elasticsearch
from exports import SPECS, Run, export
from fieldlist import declared
from replay import DATA
from tunnelhound.decode.decoder import Decoder
from tunnelhound.model import Datagram
from tunnelhound.normalize.ecs import NormalizeOptions, Normalizer
from tunnelhound.normalize.frame import DATASET, FlowFrame, encode_ndjson
from tunnelhound.setup.elasticsearch import (
    Asset,
    SetupReport,
    connect,
    desired_body,
    install_assets,
    installed_body,
    load_assets,
    normalized,
)
from tunnelhound.sources.files import iter_replay

pytestmark = pytest.mark.elasticsearch
__all__ = ["export"]  # a fixture, used by name

FLOW_FILES = ("flow.yml", "netflow.yml")
NODE_FALLBACKS = {"unsigned_long": "long", "constant_keyword": "keyword", "match_only_text": "text"}
"""What the integ-test build lacks among the types our field lists use, and what stands in."""
VENDOR_CASES = json.loads((DATA / "vendors" / "expectations.json").read_text())
LAB_CAPTURES = ("netflow_v5.pcap", "netflow_v9.pcap", "ipfix.pcap")


@pytest.fixture(scope="module")
def url() -> str:
    return ensure_elasticsearch()


@pytest.fixture(scope="module")
def namespace() -> str:
    return "t" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def first_report(url: str) -> SetupReport:
    return install_assets(url)


def _json(url: str, method: str, path: str, body: Any = None) -> Any:
    response = connect(url).perform_request(
        method, path, headers={"accept": "application/json", "content-type": "application/json"}, body=body
    )
    return response.body


def _mapping_leaves(props: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, child in props.items():
        if "properties" in child:
            yield from _mapping_leaves(child["properties"], f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", child.get("type", "object")


def test_generated_files_are_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_elastic.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    hand = sorted(p.name for p in (REPO / "elastic" / "elasticsearch").glob("*.json"))
    assert hand == sorted(f"{a.kind}.{a.name}.json" for a in load_assets())
    assert hand == [
        "component_template.tunnelhound-alert@mappings.json",
        "component_template.tunnelhound-flow@mappings.json",
        "component_template.tunnelhound@ilm.json",
        "component_template.tunnelhound@settings.json",
        "ilm_policy.tunnelhound.json",
        "index_template.logs-tunnelhound.alert.json",
        "index_template.logs-tunnelhound.flow.json",
    ]


def test_index_templates_shape() -> None:
    templates = {a.name: a.body for a in load_assets() if a.kind == "index_template"}
    flow = templates["logs-tunnelhound.flow"]
    assert flow["index_patterns"] == ["logs-tunnelhound.flow-*"]
    assert flow["data_stream"] == {} and flow["priority"] == 200 and flow["version"] == 3
    assert flow["composed_of"] == [
        "logs@mappings",
        "logs@settings",
        "ecs@mappings",
        "tunnelhound@settings",
        "tunnelhound-flow@mappings",
        "tunnelhound@ilm",
    ]
    assert flow["ignore_missing_component_templates"] == [
        "logs@mappings",
        "logs@settings",
        "ecs@mappings",
        "tunnelhound@ilm",
    ]
    assert templates["logs-tunnelhound.alert"]["index_patterns"] == ["logs-tunnelhound.alert-*"]


def test_setup_is_idempotent(url: str, first_report: SetupReport) -> None:
    assert first_report.ok, first_report.lines()
    caps = first_report.capabilities
    assert caps.versions == ("8.19.21",)
    assert caps.ilm is False and "x-pack-core" in caps.modules
    assert dict(caps.missing_types) == NODE_FALLBACKS
    second = install_assets(url)
    actions = {(r.kind, r.name): r.action for r in second.results}
    assert actions == {
        ("ilm_policy", "tunnelhound"): "skipped",
        ("component_template", "tunnelhound@ilm"): "skipped",
        ("component_template", "tunnelhound-alert@mappings"): "unchanged",
        ("component_template", "tunnelhound-flow@mappings"): "unchanged",
        ("component_template", "tunnelhound@settings"): "unchanged",
        ("index_template", "logs-tunnelhound.alert"): "unchanged",
        ("index_template", "logs-tunnelhound.flow"): "unchanged",
    }
    assert not second.changed
    details = {r.name: r.detail for r in second.results}
    assert (
        details["tunnelhound-flow@mappings"]
        == "type fallbacks constant_keyword->keyword, unsigned_long->long"
    )
    assert (
        details["tunnelhound-alert@mappings"]
        == "type fallbacks constant_keyword->keyword, match_only_text->text"
    )
    client = connect(url)
    for asset in load_assets():
        if asset.kind == "ilm_policy" or asset.name == "tunnelhound@ilm":
            continue
        want, _ = desired_body(asset, caps)
        have = installed_body(client, asset)
        assert have is not None and normalized(asset.kind, have) == normalized(asset.kind, want), asset.name
    flow = installed_body(client, next(a for a in load_assets() if a.name == "tunnelhound-flow@mappings"))
    assert flow is not None and flow["_meta"]["type_fallbacks"] == {
        "constant_keyword": "keyword",
        "unsigned_long": "long",
    }


def test_newer_installed_version_is_kept(url: str) -> None:
    name = f"tunnelhound-test-{uuid.uuid4().hex}@settings"

    def asset(version: int, limit: int) -> Asset:
        settings = {"index": {"mapping": {"total_fields": {"limit": limit}}}}
        return Asset("component_template", name, {"template": {"settings": settings}, "version": version})

    client = connect(url)
    try:
        assert [r.action for r in install_assets(client, assets=[asset(3, 1500)]).results] == ["created"]
        older = install_assets(client, assets=[asset(2, 1200)]).results
        assert [(r.action, r.detail) for r in older] == [("kept", "newer installed, version 3 > 2")]
        have = installed_body(client, asset(3, 1500))
        assert have is not None and have["version"] == 3
        assert have["template"]["settings"]["index"]["mapping"]["total_fields"]["limit"] == "1500"
        assert [r.action for r in install_assets(client, assets=[asset(3, 1500)], dry_run=True).results] == [
            "unchanged"
        ]
        assert [r.action for r in install_assets(client, assets=[asset(3, 1600)], dry_run=True).results] == [
            "would update"
        ]
        assert [r.action for r in install_assets(client, assets=[asset(4, 1600)]).results] == ["updated"]
        have = installed_body(client, asset(4, 1600))
        assert have is not None and have["version"] == 4
    finally:
        client.perform_request(
            "DELETE", f"/_component_template/{name}", headers={"accept": "application/json"}
        )


def test_simulated_mapping_has_every_declared_field(
    url: str, namespace: str, first_report: SetupReport
) -> None:
    body = _json(url, "POST", f"/_index_template/_simulate_index/logs-tunnelhound.flow-{namespace}")
    template = body["template"]
    mapped = dict(_mapping_leaves(template["mappings"]["properties"]))
    exact, patterns = declared(*FLOW_FILES)
    wrong = {
        name: (mapped.get(name), entry["type"])
        for name, entry in exact.items()
        if mapped.get(name) != NODE_FALLBACKS.get(entry["type"], entry["type"])
    }
    assert wrong == {}
    assert set(mapped) == set(exact)
    # The overlays, said explicitly: this node has neither unsigned_long nor constant_keyword.
    assert exact["netflow.octet_total_count"]["type"] == "unsigned_long"
    assert mapped["netflow.octet_total_count"] == "long"
    assert mapped["data_stream.namespace"] == "keyword"
    assert mapped["netflow.octet_delta_count"] == "long" and mapped["source.ip"] == "ip"
    dynamic = {k: v["path_match"] for t in template["mappings"]["dynamic_templates"] for k, v in t.items()}
    assert sorted(dynamic.values()) == sorted(p for p, _ in patterns)
    # Simulation renders the merged mapping's booleans as strings.
    assert template["mappings"]["dynamic"] == "false"
    assert template["mappings"]["properties"]["netflow"]["dynamic"] == "true"
    assert template["mappings"]["properties"]["netflow"]["properties"]["exporter"]["dynamic"] == "false"
    settings = template["settings"]["index"]
    assert settings["mapping"]["total_fields"]["limit"] == "3000"
    assert settings["mapping"]["ignore_malformed"] == "true"
    assert "number_of_replicas" not in settings and "lifecycle" not in settings
    assert (
        "message" not in settings["query"]["default_field"]
        and "event.id" in settings["query"]["default_field"]
    )


def _softflowd_frames(namespace: str, run: Run, exporter: str) -> FlowFrame:
    """One softflowd export of mixed.pcap, decoded and normalized as the collector would.

    Each export gets an exporter address of its own: they replay the same capture with the
    same sequence numbers and export times, so from one address their flows' ids would meet.
    """
    decoder, normalizer = Decoder(), Normalizer(NormalizeOptions(namespace=namespace))
    batches = [
        b for data, at in run.datagrams for b in decoder.decode(Datagram(data, exporter, 9995, at)).flows
    ]
    return normalizer.frames(batches)


def _frames(namespace: str) -> list[FlowFrame]:
    """The vendor corpus (one decoder per case, as tests/test_frame.py) and the lab captures."""
    options = NormalizeOptions(namespace=namespace)
    frames = []
    for case in VENDOR_CASES:
        decoder, normalizer = Decoder(), Normalizer(options)
        batches = []
        for i, name in enumerate(case["files"]):
            data = (DATA / "vendors" / "dat" / name).read_bytes()
            batches += decoder.decode(Datagram(data, "192.0.2.1", 4444, float(i))).flows
        frames.append(normalizer.frames(batches))
    for capture in LAB_CAPTURES:
        decoder, normalizer = Decoder(), Normalizer(options)
        batches = [b for dg in iter_replay([str(DATA / "lab" / capture)]) for b in decoder.decode(dg).flows]
        frames.append(normalizer.frames(batches))
    return frames


def _bulk(url: str, stream: str, docs: dict[str, bytes]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    ids = list(docs)
    for start in range(0, len(ids), 2000):
        chunk = ids[start : start + 2000]
        payload = b"".join(orjson.dumps({"create": {"_id": i}}) + b"\n" + docs[i] + b"\n" for i in chunk)
        response = connect(url).perform_request(
            "POST",
            f"/{stream}/_bulk",
            headers={"accept": "application/json", "content-type": "application/x-ndjson"},
            body=payload,
        )
        items += [item["create"] for item in response.body["items"]]
    return items


@pytest.mark.real_exporter
def test_bulk_create_of_the_corpus(
    url: str, namespace: str, first_report: SetupReport, export: Callable[[str], Run]
) -> None:
    assert first_report.ok
    stream = f"logs-tunnelhound.flow-{namespace}"
    docs: dict[str, bytes] = {}
    for frame in _frames(namespace):
        for line in encode_ndjson(frame):
            # The same .dat file in two vendor cases is the same record: one document.
            docs.setdefault(orjson.loads(line)["event"]["id"], line)
    assert len(docs) > 6000
    # softflowd's exports of mixed.pcap: each version adds documents of its own (ids differ).
    from_softflowd: dict[str, int] = {}
    for i, name in enumerate(SPECS):
        frame = _softflowd_frames(namespace, export(name), f"198.51.100.{i + 1}")
        before = len(docs)
        for line in encode_ndjson(frame):
            docs.setdefault(orjson.loads(line)["event"]["id"], line)
        from_softflowd[name] = len(docs) - before
        assert from_softflowd[name] == frame.n, name
    assert from_softflowd == {
        "v5": 487,
        "v9": 563,
        "v10": 563,
        "v10_biflow": 320,
        "v9_sampled": 188,
        "v10_sampled": 188,
    }
    first = _bulk(url, stream, docs)
    failed = [item for item in first if item["status"] != 201]
    assert failed == []
    assert {item["_index"].split("-tunnelhound.flow-")[0] for item in first} == {".ds-logs"}
    _json(url, "POST", f"/{stream}/_refresh")
    assert _json(url, "GET", f"/{stream}/_count")["count"] == len(docs)
    hits = _json(url, "POST", f"/{stream}/_search", {"size": 50, "sort": [{"@timestamp": "asc"}]})["hits"][
        "hits"
    ]
    assert len(hits) == 50
    for hit in hits:
        source = hit["_source"]
        assert source["data_stream"] == {"type": "logs", "dataset": DATASET, "namespace": namespace}
        assert source["@timestamp"] and hit["_id"] == source["event"]["id"]
    again = _bulk(url, stream, docs)
    assert {item["status"] for item in again} == {409}
    assert len(again) == len(docs)
    _json(url, "POST", f"/{stream}/_refresh")
    assert _json(url, "GET", f"/{stream}/_count")["count"] == len(docs)

    exact, patterns = declared(*FLOW_FILES)
    undeclared: set[str] = set()
    dynamic_fields: set[str] = set()
    mapped: set[str] = set()
    for index in _json(url, "GET", f"/{stream}/_mapping").values():
        for name, es_type in _mapping_leaves(index["mappings"]["properties"]):
            mapped.add(name)
            if name in exact:
                continue
            pattern = next((p for p, _ in patterns if fnmatch.fnmatchcase(name, p)), None)
            if pattern is None:
                undeclared.add(name)
            else:
                assert es_type == "keyword", name
                dynamic_fields.add(name)
    assert undeclared == set()
    # Fields only softflowd's exports carry (IPv6 ICMP in v9/v10; the reverse half of biflows).
    assert {
        "netflow.icmp_type_code_ipv6",
        "netflow.reverse_icmp_type_code_ipv6",
        "netflow.reverse_octet_delta_count",
        "netflow.reverse_packet_delta_count",
        "netflow.reverse_tcp_control_bits",
    } <= mapped
    # The corpus carries unknown elements: the wildcard entries are exercised, not just declared.
    assert dynamic_fields


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "sidecar")}
    return subprocess.run(
        [sys.executable, "-m", "tunnelhound", "setup", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_setup(url: str, first_report: SetupReport) -> None:
    proc = _cli("--es-url", url)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        "elasticsearch 8.19.21: ILM no, type fallbacks constant_keyword->keyword, "
        "match_only_text->text, unsigned_long->long"
    )
    assert "index_template logs-tunnelhound.flow: unchanged" in lines
    assert "ilm_policy tunnelhound: skipped (no ILM on this cluster)" in lines
    assert len(lines) == 1 + len(load_assets()) and proc.stderr == ""


def test_cli_setup_closed_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = _cli("--es-url", f"http://127.0.0.1:{port}")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == f"tunnelhound: cannot connect to http://127.0.0.1:{port}: connection refused\n"
