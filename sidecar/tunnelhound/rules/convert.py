"""`tunnelhound rules convert`: every rule as an Elasticsearch search request, Lucene and ES|QL.

pySigma's Elasticsearch backend converts base rules to Lucene and ES|QL, and ``event_count`` /
``value_count`` correlations to ES|QL; it has no Lucene form for correlations and no
``value_sum``. The search request (query DSL) is built here for every rule:

* a base rule: its Lucene query in a ``query_string`` filter, hosts as a ``terms`` aggregation
  on ``source.ip``;
* a correlation: the Lucene queries of the rules it counts, then one ``terms`` aggregation per
  ``group-by`` field, a ``date_histogram`` of the timespan, the metric (``_count``,
  ``cardinality`` of the field, ``sum`` of the field) and a ``bucket_selector`` with the
  condition;
* a correlation over a correlation (``exfiltration_repeat``): the inner correlation's buckets
  inside a ``date_histogram`` of the outer timespan, kept when their ``_bucket_count`` meets the
  outer condition.

Windows in Elasticsearch are fixed (tumbling) buckets where the sidecar slides them, so a burst
that straddles a bucket boundary can count lower here than in the sidecar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigma.backends.elasticsearch import ESQLBackend, LuceneBackend
from sigma.collection import SigmaCollection
from sigma.correlations import (
    SigmaCorrelationCondition,
    SigmaCorrelationConditionOperator,
    SigmaCorrelationRule,
)
from sigma.exceptions import SigmaError
from sigma.processing.pipeline import ProcessingPipeline
from sigma.rule import SigmaRule

from tunnelhound.errors import TunnelhoundError
from tunnelhound.rules.check import rule_files
from tunnelhound.sinks.elasticsearch import flow_index

FLOW_INDEX = flow_index("*")
"""Every namespace's flow data stream."""
HOST_FIELD = "source.ip"
"""Hosts a base rule finds are its flows' sources."""
BUCKETS = 10000
"""Terms buckets per group-by field in a search request."""
_OPS = {
    SigmaCorrelationConditionOperator.GT: ">",
    SigmaCorrelationConditionOperator.GTE: ">=",
    SigmaCorrelationConditionOperator.LT: "<",
    SigmaCorrelationConditionOperator.LTE: "<=",
    SigmaCorrelationConditionOperator.EQ: "==",
}


class ConvertError(TunnelhoundError):
    """A rule file that cannot be read or converted."""


@dataclass(slots=True)
class Conversion:
    """One rule in every form it has."""

    name: str
    title: str
    detector: str
    """The rule file's stem (``event.action`` of its alerts)."""
    kind: str
    """``base``, ``event_count``, ``value_count`` or ``value_sum``."""
    level: str
    alerts: bool
    """False for base rules that only feed a correlation."""
    service: str
    """The logsource service of the rule (``flow``, ``threat_index``)."""
    lucene: str
    """The query selecting the flows the rule looks at."""
    search: dict[str, Any]
    """Elasticsearch search request body (query DSL + aggregations)."""
    group_by: list[str] = field(default_factory=list)
    conditions: list[tuple[str, float]] = field(default_factory=list)
    """(operator, threshold) per window level, innermost first: what each ``bucket_selector``
    of ``search`` keeps (so a client can apply them where a cluster lacks the aggregation)."""
    esql: str | None = None
    """None where pySigma's ES|QL backend cannot express the rule."""


def convert_paths(
    paths: Sequence[str], pipeline: ProcessingPipeline, *, index: str = FLOW_INDEX
) -> list[Conversion]:
    """Every rule in the rule files under ``paths``, in file order."""
    out: list[Conversion] = []
    for path in rule_files(paths):
        out.extend(convert_file(path, pipeline, index=index))
    return out


def convert_file(path: Path, pipeline: ProcessingPipeline, *, index: str = FLOW_INDEX) -> list[Conversion]:
    """The rules of one file (base rules and correlations)."""
    try:
        text = path.read_text(encoding="utf-8")
        collection = SigmaCollection.from_yaml(text)
        # Resolving references marks correlated base rules as not output, and the backend then
        # converts them to nothing: convert base rules from a second, unresolved parse.
        unresolved = SigmaCollection.from_yaml(text, resolve_references=False)
        plain = {str(r.name or r.id): r for r in unresolved.rules if isinstance(r, SigmaRule)}
    except (OSError, SigmaError) as exc:
        raise ConvertError(f"{path}: {exc}") from None
    lucene, esql = LuceneBackend(pipeline), ESQLBackend(pipeline)
    # Sigma: rules a correlation refers to do not alert on their own unless it says generate
    correlated = {
        str(ref.reference)
        for rule in collection.rules
        if isinstance(rule, SigmaCorrelationRule) and not rule.generate
        for ref in rule.rules or []
    }
    queries: dict[str, str] = {}
    out: list[Conversion] = []
    for rule in collection.rules:
        name = str(rule.name or rule.id)
        try:
            if isinstance(rule, SigmaRule):
                query = str(lucene.convert_rule(plain[name])[0])
                queries[name] = query
                out.append(_base(rule, path.stem, query, name not in correlated))
                # only flow rules read the flow data stream (threat-index events are not stored)
                out[-1].esql = _esql(esql, plain[name], index if out[-1].service == "flow" else "*")
            elif isinstance(rule, SigmaCorrelationRule):
                out.append(_correlation(rule, path.stem, queries, {c.name: c for c in out}))
                out[-1].alerts = name not in correlated
                out[-1].esql = _esql(esql, rule, index)
        # NotImplementedError: what pySigma's backends raise for forms they do not convert.
        except (SigmaError, NotImplementedError, KeyError, ConvertError) as exc:
            raise ConvertError(f"{path}: rule {name}: {exc}") from None
    return out


def _esql(backend: ESQLBackend, rule: SigmaRule | SigmaCorrelationRule, index: str) -> str | None:
    try:
        if isinstance(rule, SigmaCorrelationRule):
            # The backend converts correlations only as part of a collection that holds the
            # rules they refer to (those are not output themselves).
            queries = backend.convert(SigmaCollection([*_referenced(rule), rule]))
        else:
            queries = backend.convert_rule(rule)
    except (NotImplementedError, SigmaError):
        return None
    if not queries:
        return None
    text = str(queries[0])
    # The backend reads from every index; flows live in one data stream pattern.
    prefix = "from * "
    return f"from {index} {text[len(prefix) :]}" if text.startswith(prefix) else text


def _referenced(rule: SigmaCorrelationRule) -> list[SigmaRule | SigmaCorrelationRule]:
    """The rules a correlation counts, and theirs, innermost first."""
    out: list[SigmaRule | SigmaCorrelationRule] = []
    for ref in rule.rules or []:
        if isinstance(ref.rule, SigmaCorrelationRule):
            out.extend(_referenced(ref.rule))
        out.append(ref.rule)
    return out


def _base(rule: SigmaRule, detector: str, query: str, alerts: bool) -> Conversion:
    search = {
        "size": 0,
        "query": {"bool": {"filter": [{"query_string": {"query": query}}]}},
        "aggs": {"group": {"terms": {"field": HOST_FIELD, "size": BUCKETS}}},
    }
    return Conversion(
        name=str(rule.name or rule.id),
        title=rule.title,
        detector=detector,
        kind="base",
        level=str(rule.level.name.lower()) if rule.level else "medium",
        alerts=alerts,
        service=rule.logsource.service or "",
        lucene=query,
        search=search,
        group_by=[HOST_FIELD],
    )


def _correlation(
    rule: SigmaCorrelationRule, detector: str, queries: dict[str, str], converted: dict[str, Conversion]
) -> Conversion:
    refs = [str(r.reference) for r in rule.rules or []]
    inner = [converted[r] for r in refs if converted.get(r) is not None and converted[r].kind != "base"]
    condition = _condition(rule)
    conditions = [(_OPS[condition.op], float(condition.count))]
    if inner:  # a correlation over correlations: their flows, their windows
        query = " OR ".join(f"({c.lucene})" for c in inner)
        window = _chain_window(rule, inner[0])
        conditions = inner[0].conditions + conditions
    else:
        query = " OR ".join(f"({queries[r]})" for r in refs)
        window = _window(rule)
    search = {
        "size": 0,
        "query": {"bool": {"filter": [{"query_string": {"query": query}}]}},
        "aggs": _nest_terms(list(rule.group_by or []), window),
    }
    return Conversion(
        name=str(rule.name or rule.id),
        title=rule.title,
        detector=detector,
        kind=_kind(rule),
        level=str(rule.level.name.lower()) if rule.level else "medium",
        alerts=True,
        service="flow",
        lucene=query,
        search=search,
        group_by=list(rule.group_by or []),
        conditions=conditions,
    )


def _condition(rule: SigmaCorrelationRule) -> SigmaCorrelationCondition:
    if not isinstance(rule.condition, SigmaCorrelationCondition):
        raise ConvertError("extended correlation conditions have no search request form")
    return rule.condition


def _kind(rule: SigmaCorrelationRule) -> str:
    return rule.type.name.lower()


def _nest_terms(group_by: list[str], leaf: dict[str, Any]) -> dict[str, Any]:
    """One terms aggregation per group-by field, ``leaf`` under the innermost."""
    aggs = leaf
    for name in reversed(group_by):
        aggs = {"group": {"terms": {"field": name, "size": BUCKETS}, "aggs": aggs}}
    return aggs


def _metric(rule: SigmaCorrelationRule) -> tuple[dict[str, Any], str]:
    """The metric aggregation of a correlation and its buckets_path."""
    kind = _kind(rule)
    fieldref = _condition(rule).fieldref
    if kind == "event_count":
        return {}, "_count"
    if kind == "value_count":
        return {"metric": {"cardinality": {"field": fieldref}}}, "metric"
    if kind == "value_sum":
        return {"metric": {"sum": {"field": fieldref}}}, "metric"
    raise ConvertError(f"correlation type {kind} has no search request form")


def _selector(rule: SigmaCorrelationRule, path: str) -> dict[str, Any]:
    condition = _condition(rule)
    op = _OPS[condition.op]
    return {
        "bucket_selector": {
            "buckets_path": {"value": path},
            "script": f"params.value {op} {condition.count}",
        }
    }


def _window(rule: SigmaCorrelationRule) -> dict[str, Any]:
    """date_histogram of the timespan, the metric and the condition per bucket."""
    metric, path = _metric(rule)
    return {
        "window": {
            "date_histogram": {"field": "@timestamp", "fixed_interval": f"{rule.timespan.seconds}s"},
            "aggs": {**metric, "condition": _selector(rule, path)},
        }
    }


def _chain_window(rule: SigmaCorrelationRule, inner: Conversion) -> dict[str, Any]:
    """The inner correlation's windows inside the outer timespan, counted (event_count only)."""
    kind = _kind(rule)
    if kind != "event_count":
        raise ConvertError(f"{kind} over a correlation has no search request form")
    inner_window = _innermost(inner.search["aggs"])
    return {
        "window": {
            "date_histogram": {"field": "@timestamp", "fixed_interval": f"{rule.timespan.seconds}s"},
            "aggs": {**inner_window, "condition": _selector(rule, "window._bucket_count")},
        }
    }


def _innermost(aggs: dict[str, Any]) -> dict[str, Any]:
    """The ``window`` aggregation under a chain of ``group`` terms aggregations."""
    while "group" in aggs:
        aggs = aggs["group"]["aggs"]
    return aggs
