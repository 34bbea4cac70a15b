"""The generated Kibana bundle (issue 6, acceptance 1): every NDJSON line is a well-formed saved
object whose references resolve within the bundle, migration versions are no newer than the
oldest Kibana elastic/README.md declares, and the committed files are exactly what
``tunnelhound setup --emit-kibana`` generates (this test fails when they are stale)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fieldlist import declared
from kibana_lens import field_uses, lens_panels, load_ndjson
from tunnelhound.cli import main
from tunnelhound.setup.kibana_bundle import (
    ALERTS,
    DATA_VIEWS,
    FLOWS,
    OLDEST_KIBANA,
    RULES_FILE,
    SAVED_OBJECTS_FILE,
    TAG_NAME,
    bundle,
)

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "elastic" / "kibana"
OBJECTS = load_ndjson((BUNDLE / SAVED_OBJECTS_FILE).read_text())
BY_KEY = {(o["type"], o["id"]): o for o in OBJECTS}


def version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def test_committed_bundle_is_what_setup_emits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["setup", "--emit-kibana", str(tmp_path / "out")]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted([SAVED_OBJECTS_FILE, RULES_FILE])
    assert sorted(p.name for p in BUNDLE.iterdir()) == written
    for name in written:
        fresh = (tmp_path / "out" / name).read_bytes()
        assert fresh == (BUNDLE / name).read_bytes(), (
            f"elastic/kibana/{name} is stale: run tunnelhound setup --emit-kibana"
        )
        assert fresh == bundle().files[name]  # and generating twice gives the same bytes
    assert "kibana bundle: wrote" in capsys.readouterr().out


def test_every_line_is_a_saved_object() -> None:
    raw = (BUNDLE / SAVED_OBJECTS_FILE).read_bytes()
    assert raw.endswith(b"\n") and b"\n\n" not in raw
    for obj in OBJECTS:
        assert {"type", "id", "attributes", "references"} <= set(obj), obj.get("id")
        assert isinstance(obj["attributes"], dict) and isinstance(obj["references"], list)
        assert obj["attributes"].get("title") or obj["attributes"].get("name")
    assert len(BY_KEY) == len(OBJECTS), "duplicate (type, id)"
    assert Counter(o["type"] for o in OBJECTS) == {"tag": 1, "index-pattern": 2, "search": 1, "dashboard": 4}
    titles = {o["attributes"]["title"] for o in OBJECTS if o["type"] == "dashboard"}
    assert titles == {
        "Tunnelhound: Flows overview",
        "Tunnelhound: Detections",
        "Tunnelhound: Host threat index",
        "Tunnelhound: Conversations",
    }


def test_references_resolve_within_the_bundle() -> None:
    for obj in OBJECTS:
        names = [r["name"] for r in obj["references"]]
        assert len(names) == len(set(names)), obj["id"]
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in BY_KEY, (obj["id"], ref)
        if obj["type"] == "search":
            source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
            wanted = {source["indexRefName"], *(f["meta"]["indexRefName"] for f in source["filter"])}
            assert wanted <= set(names)
        if obj["type"] != "dashboard":
            continue
        for panel in json.loads(obj["attributes"]["panelsJSON"]):
            pid = panel["panelIndex"]
            assert panel["gridData"]["i"] == pid
            if panel["type"] == "search":
                assert f"{pid}:{panel['panelRefName']}" in names
                continue
            attrs = panel["embeddableConfig"]["attributes"]
            for ref in attrs["references"]:
                # By value: the panel's own references, also on the dashboard with the panel's prefix.
                assert f"{pid}:{ref['name']}" in names and (ref["type"], ref["id"]) in BY_KEY
            for f in attrs["state"]["filters"]:
                assert ("index-pattern", f["meta"]["index"]) in BY_KEY


def test_lens_panels_are_consistent_and_filtered_on_their_data_set() -> None:
    datasets = {v.id: v.dataset for v in DATA_VIEWS}
    panels = list(lens_panels(OBJECTS))
    assert len(panels) == 17
    for panel in panels:
        layer = panel.layer
        columns = layer["columns"]
        assert sorted(layer["columnOrder"]) == sorted(columns), panel.title
        for col in columns.values():
            order = col.get("params", {}).get("orderBy")
            if order:
                assert order["columnId"] in columns and not columns[order["columnId"]]["isBucketed"]
        vis = panel.attributes["state"]["visualization"]
        used = (
            [c["columnId"] for c in vis["columns"]]
            if panel.attributes["visualizationType"] == "lnsDatatable"
            else [
                a
                for layer_ in vis["layers"]
                for a in (layer_["xAccessor"], *layer_["accessors"], layer_.get("splitAccessor"))
                if a
            ]
        )
        assert sorted(used) == sorted(columns), panel.title
        first = panel.filters[0]
        assert first["meta"]["key"] == "data_stream.dataset"
        assert first["query"] == {"match_phrase": {"data_stream.dataset": datasets[panel.view_id]}}


def test_migration_versions_are_no_newer_than_the_oldest_kibana() -> None:
    readme = (ROOT / "elastic" / "README.md").read_text()
    declared = re.search(r"oldest Kibana[^.]*?(\d+\.\d+\.\d+)", readme)
    assert declared and declared.group(1) == OLDEST_KIBANA
    oldest = version(OLDEST_KIBANA)
    for obj in OBJECTS:
        assert version(obj["coreMigrationVersion"]) <= oldest
        assert version(obj["typeMigrationVersion"]) <= oldest
        if obj["type"] == "dashboard":
            for panel in json.loads(obj["attributes"]["panelsJSON"]):
                assert version(panel["version"]) <= oldest


def test_dashboards_and_search_carry_the_security_solution_tag() -> None:
    (tag,) = [o for o in OBJECTS if o["type"] == "tag"]
    assert tag["attributes"]["name"] == TAG_NAME
    for obj in OBJECTS:
        if obj["type"] in ("dashboard", "search"):
            assert {"type": "tag", "id": tag["id"], "name": f"tag-ref-{tag['id']}"} in obj["references"]


def test_promotion_rule_is_what_the_issue_asks() -> None:
    (rule,) = load_ndjson((BUNDLE / RULES_FILE).read_text())
    expected: dict[str, Any] = {
        "type": "query",
        "language": "kuery",
        "index": ["logs-tunnelhound.alert-*"],
        "rule_name_override": "message",
        "timestamp_override": "event.ingested",
        "risk_score_mapping": [{"field": "event.risk_score", "operator": "equals", "value": ""}],
    }
    assert {k: rule[k] for k in expected} == expected
    assert re.fullmatch(
        r"event\.kind: alert (and|AND) data_stream\.dataset: tunnelhound\.alert", rule["query"]
    )
    assert [(m["field"], m["value"], m["severity"]) for m in rule["severity_mapping"]] == [
        ("event.severity", "21", "low"),
        ("event.severity", "47", "medium"),
        ("event.severity", "73", "high"),
        ("event.severity", "99", "critical"),
    ]
    assert "External Alerts" in rule["description"]


def test_every_used_field_is_declared_in_the_field_lists() -> None:
    """The field lists generate the index templates; tests/test_kibana_elasticsearch.py checks the
    types on the real node."""
    files = {FLOWS.id: ("flow.yml", "netflow.yml"), ALERTS.id: ("alert.yml",)}
    for view_id, pairs in field_uses(OBJECTS).items():
        exact, _patterns = declared(*files[view_id])
        missing = sorted({f for f, _ in pairs} - set(exact))
        assert not missing, f"{view_id}: {missing} not in elastic/fields/{files[view_id]}"


def test_column_data_types_match_the_field_lists() -> None:
    lens_type = {
        "ip": "ip",
        "keyword": "string",
        "constant_keyword": "string",
        "long": "number",
        "float": "number",
        "double": "number",
    }
    files = {FLOWS.id: ("flow.yml", "netflow.yml"), ALERTS.id: ("alert.yml",)}
    for panel in lens_panels(OBJECTS):
        exact, _patterns = declared(*files[panel.view_id])
        for col in panel.layer["columns"].values():
            if col["operationType"] in ("terms", "last_value"):
                assert col["dataType"] == lens_type[exact[col["sourceField"]]["type"]], (panel.title, col)
            elif col["operationType"] in ("sum", "max", "count", "unique_count"):
                assert col["dataType"] == "number"
