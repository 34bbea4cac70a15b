"""Read the generated Kibana bundle the way Kibana would, for tests without a Kibana.

* :func:`lens_panels` yields every by-value Lens panel of the dashboards with its layer;
* :func:`field_uses` lists each field a panel, filter or saved search uses and how
  (``aggregatable``, ``date``, ``numeric``, ``searchable``, ``exists``);
* :func:`es_search` translates a Lens layer to the ``_search`` body Kibana's esaggs sends
  (filters in ``bool.filter``; bucket columns nested in ``columnOrder`` order; a terms column
  ordered by a metric gets that metric as an ``_order`` sub-aggregation; metrics at the leaf;
  ``last_value`` as ``top_hits`` under its ``exists`` filter), and :func:`es_rows` flattens the
  answer into rows;
* :func:`python_rows` computes the same rows from plain documents, independently of
  Elasticsearch: group, order (metric desc, then key asc, as Elasticsearch breaks ties), cut.

Rows are ``{column id: value}``; a ``last_value`` cell is compared as "one of the values of the
latest documents" (several flows can end in the same millisecond).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

DATE_INTERVAL = "30s"
"""The fixed interval the tests give Lens's ``auto`` date histogram (Kibana derives it from the
time range; any fixed value exercises the same aggregation)."""
DATE_INTERVAL_MS = 30_000


@dataclass(frozen=True)
class LensPanel:
    dashboard: str
    title: str
    view_id: str
    attributes: dict[str, Any]

    @property
    def layer(self) -> dict[str, Any]:
        layers = self.attributes["state"]["datasourceStates"]["formBased"]["layers"]
        assert len(layers) == 1, self.title
        return next(iter(layers.values()))

    @property
    def filters(self) -> list[dict[str, Any]]:
        return list(self.attributes["state"]["filters"])


def load_ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def lens_panels(objects: list[dict[str, Any]]) -> Iterator[LensPanel]:
    for obj in objects:
        if obj["type"] != "dashboard":
            continue
        for panel in json.loads(obj["attributes"]["panelsJSON"]):
            if panel["type"] != "lens":
                continue
            attrs = panel["embeddableConfig"]["attributes"]
            (ref,) = [
                r for r in attrs["references"] if r["name"].startswith("indexpattern-datasource-layer-")
            ]
            yield LensPanel(obj["attributes"]["title"], attrs["title"], ref["id"], attrs)


def saved_searches(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(title, attributes, data view id) of every saved search."""
    for obj in objects:
        if obj["type"] == "search":
            (ref,) = [
                r for r in obj["references"] if r["name"] == "kibanaSavedObjectMeta.searchSourceJSON.index"
            ]
            yield obj["attributes"]["title"], obj["attributes"], ref["id"]


def field_uses(objects: list[dict[str, Any]]) -> dict[str, set[tuple[str, str]]]:
    """data view id -> {(field, use)} over every panel, filter and saved search."""
    uses: dict[str, set[tuple[str, str]]] = {}
    for panel in lens_panels(objects):
        out = uses.setdefault(panel.view_id, set())
        for col in panel.layer["columns"].values():
            op, name = col["operationType"], col.get("sourceField")
            if op == "date_histogram":
                out.add((name, "date"))
            elif op == "terms":
                out.add((name, "aggregatable"))
            elif op in ("sum", "max"):
                out.add((name, "numeric"))
            elif op in ("unique_count", "last_value"):
                out.add((name, "aggregatable"))
                if op == "last_value":
                    out.add((col["params"]["sortField"], "date"))
        for f in panel.filters:
            out.add((f["meta"]["key"], "searchable"))
    for _title, attrs, view_id in saved_searches(objects):
        out = uses.setdefault(view_id, set())
        out.update((c, "exists") for c in attrs["columns"])
        out.update((s[0], "aggregatable") for s in attrs["sort"])
        source = json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
        out.update((f["meta"]["key"], "searchable") for f in source["filter"])
    return uses


# --------------------------------------------------------------------------- Elasticsearch side


def _metric_agg(col: dict[str, Any]) -> dict[str, Any] | None:
    op, name = col["operationType"], col["sourceField"]
    if op == "count":
        return None
    if op == "sum":
        return {"sum": {"field": name}}
    if op == "max":
        return {"max": {"field": name}}
    if op == "unique_count":
        return {"cardinality": {"field": name}}
    if op == "last_value":
        hits = {
            "top_hits": {
                "size": 1,
                "sort": [{col["params"]["sortField"]: {"order": "desc"}}],
                "_source": False,
                "fields": [name],
            }
        }
        return {"filter": {"exists": {"field": name}}, "aggs": {"last": hits}}
    raise AssertionError(f"no translation for {op}")


def es_search(panel: LensPanel, time_range: tuple[str, str]) -> dict[str, Any]:
    """The `_search` body for a panel over ``time_range`` (ISO strings, inclusive)."""
    layer = panel.layer
    columns = layer["columns"]
    order = layer["columnOrder"]
    buckets = [c for c in order if columns[c]["isBucketed"]]
    metrics = [c for c in order if not columns[c]["isBucketed"]]
    leaf = {c: agg for c in metrics if (agg := _metric_agg(columns[c])) is not None}
    aggs: dict[str, Any] = leaf
    for cid in reversed(buckets):
        col = columns[cid]
        if col["operationType"] == "date_histogram":
            # includeEmptyRows: Lens asks for empty buckets too; es_rows drops them again.
            body: dict[str, Any] = {
                "date_histogram": {
                    "field": col["sourceField"],
                    "fixed_interval": DATE_INTERVAL,
                    "min_doc_count": 0,
                }
            }
        else:
            params = col["params"]
            by = columns[params["orderBy"]["columnId"]]
            sub = dict(aggs)
            if by["operationType"] == "count":
                order_key = "_count"
            else:
                sub["_order"] = _metric_agg(by)
                order_key = "_order"
            order_by = {order_key: params["orderDirection"]}
            body = {"terms": {"field": col["sourceField"], "size": params["size"], "order": order_by}}
            aggs = sub
        if aggs:
            body["aggs"] = aggs
        aggs = {cid: body}
    filters = [f["query"] for f in panel.filters if not f["meta"]["disabled"]]
    filters.append({"range": {"@timestamp": {"gte": time_range[0], "lte": time_range[1]}}})
    return {"size": 0, "track_total_hits": True, "query": {"bool": {"filter": filters}}, "aggs": aggs}


def es_rows(panel: LensPanel, answer: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows (bucket keys + metric values) of a `_search` answer, empty buckets dropped."""
    layer = panel.layer
    columns = layer["columns"]
    buckets = [c for c in layer["columnOrder"] if columns[c]["isBucketed"]]
    metrics = [c for c in layer["columnOrder"] if not columns[c]["isBucketed"]]
    rows: list[dict[str, Any]] = []

    def leaf(node: dict[str, Any], row: dict[str, Any]) -> None:
        if node.get("doc_count", 1) == 0:
            return
        for cid in metrics:
            op = columns[cid]["operationType"]
            if op == "count":
                row[cid] = node["doc_count"]
            elif op == "last_value":
                hits = node[cid]["last"]["hits"]["hits"]
                row[cid] = hits[0]["fields"][columns[cid]["sourceField"]][0] if hits else None
            else:
                row[cid] = node[cid]["value"]
        rows.append(row)

    def walk(node: dict[str, Any], depth: int, row: dict[str, Any]) -> None:
        if depth == len(buckets):
            leaf(node, row)
            return
        cid = buckets[depth]
        for bucket in node[cid]["buckets"]:
            walk(bucket, depth + 1, {**row, cid: bucket["key"]})

    walk({**answer["aggregations"], "doc_count": answer["hits"]["total"]["value"]}, 0, {})
    return rows


# --------------------------------------------------------------------------- Python side


def get(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _values(doc: dict[str, Any], dotted: str) -> list[Any]:
    value = get(doc, dotted)
    if value is None:
        return []
    return list(dict.fromkeys(value)) if isinstance(value, list) else [value]


def epoch_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _sort_key(value: Any) -> Any:
    """Elasticsearch's key order: ips by address bytes, numbers numerically, strings bytewise."""
    if isinstance(value, str):
        try:
            return ipaddress.ip_address(value).packed
        except ValueError:
            return value.encode()
    return value


def _metric(col: dict[str, Any], docs: list[dict[str, Any]]) -> Any:
    op, name = col["operationType"], col["sourceField"]
    if op == "count":
        return len(docs)
    values = [v for d in docs for v in _values(d, name)]
    if op == "sum":
        return float(sum(values)) if values else None
    if op == "max":
        return float(max(values)) if values else None
    if op == "unique_count":
        return len(set(values))
    if op == "last_value":
        sort = col["params"]["sortField"]
        having = [d for d in docs if _values(d, name)]
        if not having:
            return None
        latest = max(epoch_ms(get(d, sort)) for d in having)
        return frozenset(v for d in having if epoch_ms(get(d, sort)) == latest for v in _values(d, name))
    raise AssertionError(op)


def python_rows(
    panel: LensPanel, docs: list[dict[str, Any]], time_range: tuple[str, str]
) -> list[dict[str, Any]]:
    """The panel's rows computed from ``docs`` (``last_value`` cells are sets of candidates)."""
    layer = panel.layer
    columns = layer["columns"]
    buckets = [c for c in layer["columnOrder"] if columns[c]["isBucketed"]]
    metrics = [c for c in layer["columnOrder"] if not columns[c]["isBucketed"]]
    lo, hi = epoch_ms(time_range[0]), epoch_ms(time_range[1])
    selected = [
        d
        for d in docs
        if lo <= epoch_ms(d["@timestamp"]) <= hi
        and all(
            (f["meta"]["params"]["query"] in _values(d, f["meta"]["key"])) != f["meta"]["negate"]
            for f in panel.filters
            if not f["meta"]["disabled"]
        )
    ]
    rows: list[dict[str, Any]] = []

    def walk(group: list[dict[str, Any]], depth: int, row: dict[str, Any]) -> None:
        if depth == len(buckets):
            if group:
                rows.append({**row, **{cid: _metric(columns[cid], group) for cid in metrics}})
            return
        cid = buckets[depth]
        col = columns[cid]
        groups: dict[Any, list[dict[str, Any]]] = {}
        if col["operationType"] == "date_histogram":
            for d in group:
                ts = epoch_ms(get(d, col["sourceField"]))
                groups.setdefault(ts - ts % DATE_INTERVAL_MS, []).append(d)
            ordered = sorted(groups)
        else:
            for d in group:
                for key in _values(d, col["sourceField"]):
                    groups.setdefault(key, []).append(d)
            by = columns[col["params"]["orderBy"]["columnId"]]
            sign = -1 if col["params"]["orderDirection"] == "desc" else 1

            def rank(key: Any, by: dict[str, Any] = by, sign: int = sign) -> tuple[Any, ...]:
                value = _metric(by, groups[key])
                return (value is None, sign * (value or 0), _sort_key(key))

            ordered = sorted(groups, key=rank)[: col["params"]["size"]]
        for key in ordered:
            walk(groups[key], depth + 1, {**row, cid: key})

    walk(selected, 0, {})
    return rows
