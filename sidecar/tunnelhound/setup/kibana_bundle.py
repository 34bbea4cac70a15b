"""Kibana saved objects (data views, dashboards, saved search, tag) and the Elastic Security
promotion rule, generated from the compact panel specs below (DESIGN §9, issue 6).

Nothing here is hand-edited JSON: :data:`DASHBOARDS` says what each panel shows (data set,
chart, bucket columns, metric columns) and :func:`saved_objects` renders it as by-value Lens
panels in the shape Kibana :data:`OLDEST_KIBANA` exports. Every id (objects, panels, layers,
columns) is a name-based UUID, so the output is byte-identical on every run and the objects
overwrite themselves on re-import instead of piling up copies.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OLDEST_KIBANA = "8.11.0"
"""The oldest Kibana the bundle is written for (elastic/README.md says so too). Newer Kibanas
migrate the objects up on import; older ones would refuse the migration versions below."""

CORE_MIGRATION_VERSION = "8.8.0"
TYPE_MIGRATION_VERSIONS = {
    # The latest migration each type has in Kibana 8.11 (what its export writes) or, for
    # `search`, the latest of its own migrations (its search-source ones are harmless to rerun).
    "index-pattern": "8.0.0",
    "tag": "8.0.0",
    "search": "7.9.3",
    "dashboard": "8.9.0",
}
PANEL_VERSION = OLDEST_KIBANA
"""`version` of each dashboard panel: the embeddable migrations newer Kibanas run start there."""

NAMESPACE = uuid.UUID("3f7c2a4e-8d7b-5e61-9a2f-6c1d0b4e7a93")
"""Root of every generated id (uuid5 of a readable name)."""

FLOW_DATASET = "tunnelhound.flow"
ALERT_DATASET = "tunnelhound.alert"
ALERT_INDEX = "logs-tunnelhound.alert-*"
TAG_NAME = "Security Solution"
"""The tag Elastic Security's Dashboards page lists dashboards by."""
TAG_ID = "tunnelhound-security-solution"

SAVED_OBJECTS_FILE = "tunnelhound-saved-objects.ndjson"
RULES_FILE = "tunnelhound-detection-rule.ndjson"


def stable_id(name: str) -> str:
    """The uuid5 of ``name`` under :data:`NAMESPACE`."""
    return str(uuid.uuid5(NAMESPACE, name))


# --------------------------------------------------------------------------- the compact source


@dataclass(frozen=True, slots=True)
class DataView:
    """A Kibana data view over one data stream pattern."""

    key: str
    title: str
    name: str
    dataset: str
    byte_fields: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """Readable and stable: users refer to data views by id in URLs and APIs."""
        return f"tunnelhound-{self.key}"


FLOWS = DataView(
    "flows",
    "logs-tunnelhound.flow-*",
    "Tunnelhound flows",
    FLOW_DATASET,
    ("network.bytes", "source.bytes", "destination.bytes"),
)
ALERTS = DataView("alerts", ALERT_INDEX, "Tunnelhound alerts", ALERT_DATASET)
DATA_VIEWS = (FLOWS, ALERTS)


@dataclass(frozen=True, slots=True)
class Bucket:
    """A bucket column: ``date`` (date histogram on ``field``), ``terms`` (top ``size`` values
    of ``field``) ordered by the metric column ``order_by`` (an
    index into the panel's metrics; None orders by count)."""

    kind: str
    field: str = "@timestamp"
    label: str = ""
    size: int = 10
    order_by: int | None = None


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric column: ``count``, ``sum``, ``max``, ``unique_count`` or ``last_value`` of a field
    (the value of the document latest by the date field ``sort``)."""

    op: str
    field: str = ""
    label: str = ""
    sort: str = "@timestamp"


@dataclass(frozen=True, slots=True)
class Panel:
    """One by-value Lens panel. ``chart`` is a Lens XY series type (``bar_stacked``, ``line``,
    ``bar_horizontal`` ...) or ``table``; ``buckets`` nest in the order given (a breakdown comes
    before the date histogram, so its top values are over the whole time range, as Lens does).
    An XY chart's x axis is its date histogram, else its first bucket; another bucket splits
    the series."""

    key: str
    title: str
    view: DataView
    chart: str
    buckets: tuple[Bucket, ...]
    metrics: tuple[Metric, ...]
    filters: tuple[tuple[str, str], ...] = ()
    """Phrase filters beyond the data set one: (field, value)."""
    width: int = 24
    height: int = 12


@dataclass(frozen=True, slots=True)
class SavedSearch:
    """A Discover search (by reference in a dashboard)."""

    key: str
    title: str
    description: str
    view: DataView
    columns: tuple[str, ...]
    sort: tuple[str, str] = ("@timestamp", "desc")


@dataclass(frozen=True, slots=True)
class Dashboard:
    """A dashboard: panels laid out two per row (full width for width 48)."""

    key: str
    title: str
    description: str
    panels: tuple[Panel | SavedSearch, ...]
    time_from: str = "now-24h"

    @property
    def id(self) -> str:
        return f"tunnelhound-{self.key}"


BYTES = Metric("sum", "network.bytes", "Bytes")
FLOW_COUNT = Metric("count", label="Flows")
ALERT_COUNT = Metric("count", label="Alerts")
THREAT_INDEX = "tunnelhound.threat_index.value"
"""The source host's threat index after the alert (sidecar/tunnelhound/alerts.py)."""
THREAT_INDEX_NOW = Metric("last_value", THREAT_INDEX, "Index at the latest alert", sort="event.end")
"""Latest in flow time: a replay or a backlog writes many alerts with one @timestamp."""

EVIDENCE_SEARCH = SavedSearch(
    "alerts-evidence",
    "Tunnelhound alerts with evidence",
    "Every alert with its reason and the query that returns exactly its evidence flows "
    "(paste tunnelhound.alert.evidence.query into Discover on the Tunnelhound flows data view).",
    ALERTS,
    (
        "message",
        "rule.name",
        "event.severity",
        "source.ip",
        "destination.ip",
        "event.reason",
        "tunnelhound.alert.evidence.flow_count",
        "tunnelhound.alert.evidence.query",
    ),
)

DASHBOARDS = (
    Dashboard(
        "flows-overview",
        "Tunnelhound: Flows overview",
        "NetFlow/IPFIX flows written by the Tunnelhound sidecar: volume, talkers, ports, "
        "protocols, direction and exporters.",
        (
            Panel(
                "flows-over-time",
                "Flows over time",
                FLOWS,
                "bar_stacked",
                (Bucket("terms", "network.transport", "Transport", 5), Bucket("date")),
                (FLOW_COUNT,),
            ),
            Panel(
                "bytes-over-time",
                "Bytes over time by direction",
                FLOWS,
                "area_stacked",
                (Bucket("terms", "network.direction", "Direction", 5, 0), Bucket("date")),
                (BYTES,),
            ),
            Panel(
                "top-talkers",
                "Top talkers (bytes)",
                FLOWS,
                "bar_horizontal",
                (Bucket("terms", "source.ip", "Source", 10, 0),),
                (BYTES,),
            ),
            Panel(
                "top-destination-ports",
                "Top destination ports (flows)",
                FLOWS,
                "bar_horizontal",
                (Bucket("terms", "destination.port", "Destination port", 10),),
                (FLOW_COUNT,),
            ),
            Panel(
                "protocols",
                "Protocols",
                FLOWS,
                "table",
                (Bucket("terms", "network.transport", "Transport", 10),),
                (FLOW_COUNT, BYTES),
            ),
            Panel(
                "direction",
                "Direction",
                FLOWS,
                "table",
                (Bucket("terms", "network.direction", "Direction", 5),),
                (FLOW_COUNT, BYTES),
            ),
            Panel(
                "exporters",
                "Exporters",
                FLOWS,
                "table",
                (Bucket("terms", "observer.ip", "Exporter", 20),),
                (FLOW_COUNT, BYTES, Metric("max", "netflow.exporter.version", "NetFlow version")),
                width=48,
            ),
        ),
    ),
    Dashboard(
        "detections",
        "Tunnelhound: Detections",
        "Alerts the Tunnelhound sidecar raised: over time by rule and severity, the hosts they name, "
        "ATT&CK techniques, and every alert with its evidence query.",
        (
            Panel(
                "alerts-by-rule",
                "Alerts over time by rule",
                ALERTS,
                "bar_stacked",
                (Bucket("terms", "rule.name", "Rule", 10), Bucket("date")),
                (ALERT_COUNT,),
            ),
            Panel(
                "alerts-by-severity",
                "Alerts over time by severity",
                ALERTS,
                "bar_stacked",
                (Bucket("terms", "event.severity", "Severity", 4), Bucket("date")),
                (ALERT_COUNT,),
            ),
            Panel(
                "rules",
                "Alerts by rule",
                ALERTS,
                "table",
                (Bucket("terms", "rule.name", "Rule", 20),),
                (
                    ALERT_COUNT,
                    Metric("max", "event.severity", "Highest severity"),
                    Metric("unique_count", "source.ip", "Hosts"),
                ),
            ),
            Panel(
                "top-hosts",
                "Top alerted hosts",
                ALERTS,
                "bar_horizontal",
                (Bucket("terms", "source.ip", "Host", 10),),
                (ALERT_COUNT,),
            ),
            Panel(
                "techniques",
                "ATT&CK techniques",
                ALERTS,
                "table",
                (Bucket("terms", "threat.technique.id", "Technique", 20),),
                (ALERT_COUNT, Metric("unique_count", "source.ip", "Hosts")),
            ),
            Panel(
                "tactics",
                "ATT&CK tactics",
                ALERTS,
                "bar_horizontal",
                (Bucket("terms", "threat.tactic.name", "Tactic", 10),),
                (ALERT_COUNT,),
            ),
            EVIDENCE_SEARCH,
        ),
    ),
    Dashboard(
        "host-threat-index",
        "Tunnelhound: Host threat index",
        "Hosts by their threat index (the weights of their alerts, decaying; half-life 6 h by default). "
        "Every alert naming a source host carries the host's index after it "
        "(tunnelhound.threat_index.value), so the index is read from all alerts by source.ip, in "
        "flow time (event.end); threat_index_high alerts mark where a host crossed 20.",
        (
            Panel(
                "threat-index-hosts",
                "Hosts by threat index",
                ALERTS,
                "table",
                (Bucket("terms", "source.ip", "Host", 20, 1),),
                (
                    THREAT_INDEX_NOW,
                    Metric("max", THREAT_INDEX, "Highest index"),
                    Metric("count", label="Alerts"),
                ),
            ),
            Panel(
                "threat-index-history",
                "Threat index history (flow time)",
                ALERTS,
                "line",
                (Bucket("terms", "source.ip", "Host", 10, 0), Bucket("date", "event.end")),
                (Metric("max", THREAT_INDEX, "Threat index"),),
            ),
        ),
        time_from="now-7d",
    ),
    Dashboard(
        "conversations",
        "Tunnelhound: Conversations",
        "Top conversations with the bytes each side sent, and their Community IDs for pivoting to "
        "Zeek (conn.log community_id) and Suricata (community_id) data.",
        (
            Panel(
                "top-pairs",
                "Top pairs (bytes both ways): the top 3 peers of the top 20 sources",
                FLOWS,
                "table",
                # Nested terms, not multi_terms: that one needs x-pack analytics on the cluster.
                (
                    Bucket("terms", "source.ip", "Source", 20, 0),
                    Bucket("terms", "destination.ip", "Destination", 3, 0),
                ),
                (
                    BYTES,
                    Metric("sum", "source.bytes", "Bytes source → destination"),
                    Metric("sum", "destination.bytes", "Bytes destination → source"),
                    FLOW_COUNT,
                ),
                width=48,
            ),
            Panel(
                "community-ids",
                "Conversations by Community ID",
                FLOWS,
                "table",
                (Bucket("terms", "network.community_id", "Community ID", 20, 0),),
                (
                    BYTES,
                    FLOW_COUNT,
                    Metric("last_value", "source.ip", "Source"),
                    Metric("last_value", "destination.ip", "Destination"),
                    Metric("last_value", "destination.port", "Port"),
                    Metric("last_value", "network.transport", "Transport"),
                ),
                width=48,
                height=15,
            ),
        ),
    ),
)


# --------------------------------------------------------------------------- rendering


def _json(value: Any) -> str:
    """Compact, key-sorted JSON for the string-encoded attributes (panelsJSON ...)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _object(
    kind: str, obj_id: str, attributes: dict[str, Any], references: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "attributes": attributes,
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "id": obj_id,
        "managed": False,
        "references": references,
        "type": kind,
        "typeMigrationVersion": TYPE_MIGRATION_VERSIONS[kind],
    }


def _ref(kind: str, obj_id: str, name: str) -> dict[str, str]:
    return {"id": obj_id, "name": name, "type": kind}


def _phrase_filter(view: DataView, key: str, value: str) -> dict[str, Any]:
    """A pinned-to-app phrase filter, as Kibana's filter bar writes it."""
    return {
        "$state": {"store": "appState"},
        "meta": {
            "alias": None,
            "disabled": False,
            "index": view.id,
            "key": key,
            "negate": False,
            "params": {"query": value},
            "type": "phrase",
        },
        "query": {"match_phrase": {key: value}},
    }


def panel_filters(panel: Panel) -> list[dict[str, Any]]:
    """The panel's filters: its data set first, then its own."""
    pairs = (("data_stream.dataset", panel.view.dataset), *panel.filters)
    return [_phrase_filter(panel.view, k, v) for k, v in pairs]


LENS_TYPES = {
    "source.ip": "ip",
    "destination.ip": "ip",
    "observer.ip": "ip",
    "destination.port": "number",
    "event.severity": "number",
    "tunnelhound.threat_index.value": "number",
}
"""Lens ``dataType`` of the fields the panels bucket or take the last value of, where it is not
``string`` (tests/test_kibana_bundle.py checks every column against elastic/fields)."""


def _data_type(field_name: str) -> str:
    return LENS_TYPES.get(field_name, "string")


def _metric_column(metric: Metric) -> dict[str, Any]:
    label = metric.label or f"{metric.op} of {metric.field}"
    column: dict[str, Any] = {
        "customLabel": True,
        "dataType": "number",
        "isBucketed": False,
        "label": label,
        "operationType": metric.op,
        "params": {"emptyAsNull": True},
        "scale": "ratio",
        "sourceField": metric.field or "___records___",
    }
    if metric.op == "last_value":
        column["dataType"] = _data_type(metric.field)
        column["scale"] = "ratio" if column["dataType"] == "number" else "ordinal"
        column["filter"] = {"language": "kuery", "query": f"{metric.field}: *"}
        column["params"] = {"showArrayValues": False, "sortField": metric.sort}
    elif metric.op == "count":
        column["params"] = {"emptyAsNull": False}
    return column


def _bucket_column(bucket: Bucket, metric_ids: list[str]) -> dict[str, Any]:
    if bucket.kind == "date":
        return {
            "dataType": "date",
            "isBucketed": True,
            "label": bucket.field,
            "operationType": "date_histogram",
            "params": {"dropPartials": False, "includeEmptyRows": True, "interval": "auto"},
            "scale": "interval",
            "sourceField": bucket.field,
        }
    # Without order_by the first metric, a count (checked in _lens_attributes), orders it.
    order = {"type": "column", "columnId": metric_ids[bucket.order_by or 0]}
    params: dict[str, Any] = {
        "exclude": [],
        "excludeIsRegex": False,
        "include": [],
        "includeIsRegex": False,
        "missingBucket": False,
        "orderBy": order,
        "orderDirection": "desc",
        "otherBucket": False,
        "parentFormat": {"id": "terms"},
        "size": bucket.size,
    }
    return {
        "customLabel": True,
        "dataType": _data_type(bucket.field),
        "isBucketed": True,
        "label": bucket.label or bucket.field,
        "operationType": "terms",
        "params": params,
        "scale": "ordinal",
        "sourceField": bucket.field,
    }


def _lens_attributes(dashboard: Dashboard, panel: Panel) -> dict[str, Any]:
    """The by-value Lens attributes of one panel."""
    base = f"{dashboard.key}/{panel.key}"
    layer = stable_id(base + "/layer")
    metric_ids = [stable_id(f"{base}/metric/{i}") for i in range(len(panel.metrics))]
    bucket_ids = [stable_id(f"{base}/bucket/{i}") for i in range(len(panel.buckets))]
    for bucket in panel.buckets:
        if bucket.kind == "terms" and bucket.order_by is None and panel.metrics[0].op != "count":
            raise ValueError(f"{base}: a terms column ordered by count needs a count as first metric")
    columns: dict[str, Any] = {
        cid: _bucket_column(b, metric_ids) for cid, b in zip(bucket_ids, panel.buckets, strict=True)
    }
    columns.update({cid: _metric_column(m) for cid, m in zip(metric_ids, panel.metrics, strict=True)})
    visualization: dict[str, Any]
    if panel.chart == "table":
        vis_type = "lnsDatatable"
        visualization = {
            "columns": [{"columnId": cid, "isTransposed": False} for cid in bucket_ids + metric_ids],
            "layerId": layer,
            "layerType": "data",
        }
    else:
        vis_type = "lnsXY"
        kinds = [b.kind for b in panel.buckets]
        x_index = kinds.index("date") if "date" in kinds else 0
        xy_layer: dict[str, Any] = {
            "accessors": metric_ids,
            "layerId": layer,
            "layerType": "data",
            "seriesType": panel.chart,
            "xAccessor": bucket_ids[x_index],
        }
        splits = [cid for i, cid in enumerate(bucket_ids) if i != x_index]
        if splits:
            xy_layer["splitAccessor"] = splits[0]
        visualization = {
            "layers": [xy_layer],
            "legend": {"isVisible": True, "position": "right"},
            "preferredSeriesType": panel.chart,
            "title": "Empty XY chart",
            "valueLabels": "hide",
        }
    return {
        "description": "",
        "references": [_ref("index-pattern", panel.view.id, f"indexpattern-datasource-layer-{layer}")],
        "state": {
            "adHocDataViews": {},
            "datasourceStates": {
                "formBased": {
                    "layers": {
                        layer: {
                            "columnOrder": bucket_ids + metric_ids,
                            "columns": columns,
                            "incompleteColumns": {},
                            "sampling": 1,
                        }
                    }
                }
            },
            "filters": panel_filters(panel),
            "internalReferences": [],
            "query": {"language": "kuery", "query": ""},
            "visualization": visualization,
        },
        "title": panel.title,
        "type": "lens",
        "visualizationType": vis_type,
    }


def _layout(panels: Iterable[Panel | SavedSearch]) -> list[dict[str, int]]:
    """Grid positions: left to right, two 24-wide panels a row (Kibana's grid is 48 wide)."""
    out = []
    x = y = row_height = 0
    for panel in panels:
        width = panel.width if isinstance(panel, Panel) else 48
        height = panel.height if isinstance(panel, Panel) else 15
        if x + width > 48:
            x, y, row_height = 0, y + row_height, 0
        out.append({"h": height, "w": width, "x": x, "y": y})
        x += width
        row_height = max(row_height, height)
    return out


def _search_object(search: SavedSearch) -> dict[str, Any]:
    source = {
        "filter": [
            {
                **f,
                "meta": {k: v for k, v in f["meta"].items() if k != "index"}
                | {"indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.filter[0].meta.index"},
            }
            for f in [_phrase_filter(search.view, "data_stream.dataset", search.view.dataset)]
        ],
        "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
        "query": {"language": "kuery", "query": ""},
    }
    attributes = {
        "columns": list(search.columns),
        "description": search.description,
        "grid": {},
        "hideChart": False,
        "isTextBasedQuery": False,
        "kibanaSavedObjectMeta": {"searchSourceJSON": _json(source)},
        "sort": [list(search.sort)],
        "timeRestore": False,
        "title": search.title,
    }
    references = [
        _ref("index-pattern", search.view.id, "kibanaSavedObjectMeta.searchSourceJSON.index"),
        _ref("index-pattern", search.view.id, "kibanaSavedObjectMeta.searchSourceJSON.filter[0].meta.index"),
        _ref("tag", TAG_ID, f"tag-ref-{TAG_ID}"),
    ]
    return _object("search", f"tunnelhound-{search.key}", attributes, references)


def _dashboard_object(dashboard: Dashboard) -> dict[str, Any]:
    panels_json = []
    references = []
    for panel, grid in zip(dashboard.panels, _layout(dashboard.panels), strict=True):
        panel_index = stable_id(f"{dashboard.key}/{panel.key}/panel")
        entry: dict[str, Any] = {
            "gridData": {**grid, "i": panel_index},
            "panelIndex": panel_index,
            "title": panel.title,
            "version": PANEL_VERSION,
        }
        if isinstance(panel, SavedSearch):
            entry |= {
                "embeddableConfig": {"enhancements": {}},
                "panelRefName": f"panel_{panel_index}",
                "type": "search",
            }
            references.append(
                _ref("search", f"tunnelhound-{panel.key}", f"{panel_index}:panel_{panel_index}")
            )
        else:
            attributes = _lens_attributes(dashboard, panel)
            entry |= {"embeddableConfig": {"attributes": attributes, "enhancements": {}}, "type": "lens"}
            references.extend(
                _ref(r["type"], r["id"], f"{panel_index}:{r['name']}") for r in attributes["references"]
            )
        panels_json.append(entry)
    references.append(_ref("tag", TAG_ID, f"tag-ref-{TAG_ID}"))
    attributes = {
        "description": dashboard.description,
        "kibanaSavedObjectMeta": {
            "searchSourceJSON": _json({"filter": [], "query": {"language": "kuery", "query": ""}})
        },
        "optionsJSON": _json(
            {
                "hidePanelTitles": False,
                "syncColors": False,
                "syncCursor": True,
                "syncTooltips": False,
                "useMargins": True,
            }
        ),
        "panelsJSON": _json(panels_json),
        "refreshInterval": {"pause": True, "value": 60000},
        "timeFrom": dashboard.time_from,
        "timeRestore": True,
        "timeTo": "now",
        "title": dashboard.title,
        "version": 1,
    }
    return _object("dashboard", dashboard.id, attributes, references)


def _data_view_object(view: DataView) -> dict[str, Any]:
    attributes = {
        "allowNoIndex": True,
        "fieldAttrs": "{}",
        "fieldFormatMap": _json({f: {"id": "bytes"} for f in view.byte_fields}),
        "fields": "[]",
        "name": view.name,
        "runtimeFieldMap": "{}",
        "sourceFilters": "[]",
        "timeFieldName": "@timestamp",
        "title": view.title,
        "typeMeta": "{}",
    }
    return _object("index-pattern", view.id, attributes, [])


def saved_objects() -> list[dict[str, Any]]:
    """Every saved object, referenced ones before those that reference them."""
    tag = _object(
        "tag",
        TAG_ID,
        {
            "color": "#6092C0",
            "description": "Dashboards Elastic Security lists (Tunnelhound)",
            "name": TAG_NAME,
        },
        [],
    )
    searches = [p for d in DASHBOARDS for p in d.panels if isinstance(p, SavedSearch)]
    return [
        tag,
        *(_data_view_object(v) for v in DATA_VIEWS),
        *(_search_object(s) for s in searches),
        *(_dashboard_object(d) for d in DASHBOARDS),
    ]


# --------------------------------------------------------------------------- promotion rule

PROMOTION_QUERY = f"event.kind: alert AND data_stream.dataset: {ALERT_DATASET}"
"""KQL, and the same query in Lucene syntax (upper-case AND), so a query_string search can
prove what it matches."""
SEVERITIES = (("21", "low"), ("47", "medium"), ("73", "high"), ("99", "critical"))


def promotion_rule() -> dict[str, Any]:
    """The Elastic Security custom query rule that promotes Tunnelhound alert documents."""
    return {
        "author": ["Tunnelhound"],
        "description": (
            "Promotes the alerts the Tunnelhound sidecar writes to logs-tunnelhound.alert-* into "
            "Elastic Security alerts: the alert's message becomes the alert name, event.severity "
            "(21/47/73/99) its severity and event.risk_score its risk score. Elastic's prebuilt "
            "External Alerts rule matches the same documents; add the exception event.module is "
            "tunnelhound to it (or disable this rule) so each alert is promoted once."
        ),
        "enabled": True,
        "exceptions_list": [],
        "false_positives": [],
        "from": "now-6m",
        "index": [ALERT_INDEX],
        "interval": "5m",
        "language": "kuery",
        "license": "Apache-2.0",
        "max_signals": 1000,
        "name": "Tunnelhound alert promotion",
        "query": PROMOTION_QUERY,
        "references": [],
        "risk_score": 47,
        "risk_score_mapping": [{"field": "event.risk_score", "operator": "equals", "value": ""}],
        "rule_id": stable_id("rule/promotion"),
        "rule_name_override": "message",
        "severity": "medium",
        "severity_mapping": [
            {"field": "event.severity", "operator": "equals", "severity": name, "value": value}
            for value, name in SEVERITIES
        ],
        "tags": ["Tunnelhound", "Network", "Promotion"],
        "threat": [],
        "timestamp_override": "event.ingested",
        "timestamp_override_fallback_disabled": False,
        "to": "now",
        "type": "query",
        "version": 1,
    }


# --------------------------------------------------------------------------- files


def ndjson(objects: Iterable[dict[str, Any]]) -> bytes:
    """One key-sorted JSON object a line, UTF-8, newline-terminated."""
    return "".join(_json(o) + "\n" for o in objects).encode()


@dataclass(frozen=True, slots=True)
class Bundle:
    """The generated files: name -> content."""

    files: dict[str, bytes] = field(default_factory=dict)


def bundle() -> Bundle:
    """The saved objects file and the detection rule file."""
    return Bundle({SAVED_OBJECTS_FILE: ndjson(saved_objects()), RULES_FILE: ndjson([promotion_rule()])})


def write_bundle(directory: str | Path) -> list[Path]:
    """Write the bundle into ``directory`` (created if missing); returns the paths written."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in bundle().files.items():
        path = out / name
        path.write_bytes(content)
        written.append(path)
    return written


__all__ = [
    "ALERTS",
    "DASHBOARDS",
    "DATA_VIEWS",
    "FLOWS",
    "OLDEST_KIBANA",
    "PROMOTION_QUERY",
    "RULES_FILE",
    "SAVED_OBJECTS_FILE",
    "Bucket",
    "Bundle",
    "Dashboard",
    "DataView",
    "Metric",
    "Panel",
    "SavedSearch",
    "bundle",
    "ndjson",
    "panel_filters",
    "promotion_rule",
    "saved_objects",
    "stable_id",
    "write_bundle",
]
