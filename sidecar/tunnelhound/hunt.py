"""`tunnelhound hunt`: run every converted rule against flows stored in Elasticsearch and list
the hosts each finds (DESIGN §10: the same Sigma rules, cluster-wide).

Each alerting flow rule's search request (:mod:`tunnelhound.rules.convert`) is sent with a time
range on ``@timestamp``; the buckets that meet the rule's condition name the hosts: the first
``group-by`` field of a correlation, ``source.ip`` for a base rule. Rules that only feed a
correlation and rules on other services (the threat index) are not run.

``bucket_selector`` lives in Elasticsearch's aggregations module, which stripped builds (the
integ-test distribution) lack. When the cluster rejects it, the request is sent again without
the selectors and the same conditions are applied here to the returned buckets; the hosts are
the same, only more buckets travel.
"""

from __future__ import annotations

import argparse
import logging
import operator
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from elasticsearch import BadRequestError, Elasticsearch

if TYPE_CHECKING:  # pySigma loads only for the commands that convert rules
    from tunnelhound.rules.convert import Conversion

log = logging.getLogger(__name__)

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One host a rule found, with the strongest bucket's value and its window start."""

    rule: str
    detector: str
    level: str
    host: str
    group: dict[str, str]
    value: float
    window_start: str


def add_connection_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """--es-url and the TLS/auth options of a command that reads from Elasticsearch."""
    parser.add_argument("--es-url", required=required, help="Elasticsearch URL, e.g. https://es.example:9200")
    parser.add_argument("--es-ca", help="CA certificate (PEM) of the cluster")
    parser.add_argument("--es-user", help="basic-auth user; the password comes from --es-password-env")
    parser.add_argument(
        "--es-password-env", default="TUNNELHOUND_ES_PASSWORD", help="variable holding the password"
    )
    parser.add_argument(
        "--es-api-key-env",
        default="TUNNELHOUND_ES_API_KEY",
        help="variable holding an API key (used when set)",
    )


def connect_from_arguments(args: argparse.Namespace) -> Elasticsearch:
    """A client for the options :func:`add_connection_arguments` added (secrets from the environment)."""
    from tunnelhound.setup.elasticsearch import connect

    api_key = os.environ.get(args.es_api_key_env) if args.es_api_key_env else None
    basic_auth = (args.es_user, os.environ.get(args.es_password_env, "")) if args.es_user else None
    return connect(
        args.es_url, ca_certs=args.es_ca, basic_auth=basic_auth, api_key=api_key or None, request_timeout=60
    )


def time_filter(start: str | None, end: str | None) -> list[dict[str, Any]]:
    """A ``range`` filter on ``@timestamp`` (Elasticsearch date math allowed), or nothing."""
    bounds = {k: v for k, v in (("gte", start), ("lte", end)) if v}
    return [{"range": {"@timestamp": bounds}}] if bounds else []


def hunt(
    client: Elasticsearch,
    conversions: list[Conversion],
    *,
    index: str,
    start: str | None = None,
    end: str | None = None,
) -> list[Finding]:
    """Run each alerting flow rule; one finding per (rule, group key), strongest window first."""
    findings: list[Finding] = []
    for conv in conversions:
        if not conv.alerts or conv.service != "flow":
            continue
        body = dict(conv.search)
        query = body["query"]["bool"]
        body["query"] = {"bool": {**query, "filter": [*query["filter"], *time_filter(start, end)]}}
        aggs = _search(client, index, body)
        best: dict[tuple[str, ...], Finding] = {}
        for group, value, window in _buckets(aggs, conv):
            key = tuple(group.values())
            if key not in best or value > best[key].value:
                best[key] = Finding(conv.name, conv.detector, conv.level, key[0], group, value, window)
        findings.extend(sorted(best.values(), key=lambda f: (-f.value, f.host)))
    return findings


def _search(client: Elasticsearch, index: str, body: dict[str, Any]) -> dict[str, Any]:
    """The aggregations of the search; without bucket selectors when the cluster lacks them."""
    try:
        response = client.search(index=index, body=body, ignore_unavailable=True, allow_no_indices=True)
    except BadRequestError as exc:
        if "bucket_selector" not in str(exc):
            raise
        log.info("cluster has no bucket_selector aggregation; applying conditions client-side")
        response = client.search(
            index=index, body=_without_selectors(body), ignore_unavailable=True, allow_no_indices=True
        )
    return dict(response.body.get("aggregations", {}))


def _without_selectors(node: Any) -> Any:
    """A copy of a request body without its ``bucket_selector`` aggregations."""
    if isinstance(node, dict):
        return {
            k: _without_selectors(v)
            for k, v in node.items()
            if not (isinstance(v, dict) and "bucket_selector" in v)
        }
    if isinstance(node, list):
        return [_without_selectors(v) for v in node]
    return node


def _buckets(aggs: dict[str, Any], conv: Conversion) -> Iterator[tuple[dict[str, str], float, str]]:
    """(group key, value, window start) for every bucket that met the rule's condition."""

    def walk(
        node: dict[str, Any], fields: list[str], key: dict[str, str]
    ) -> Iterator[tuple[dict[str, str], float, str]]:
        if fields:
            for bucket in node.get("group", {}).get("buckets", []):
                yield from walk(bucket, fields[1:], {**key, fields[0]: str(bucket["key"])})
            return
        if conv.kind == "base":
            yield key, float(node["doc_count"]), ""
            return
        for window in node.get("window", {}).get("buckets", []):
            value = _window_value(window, conv.conditions)
            if value is not None:
                yield key, value, window.get("key_as_string", "")

    yield from walk(aggs, conv.group_by, {})


def _window_value(window: dict[str, Any], conditions: list[tuple[str, float]]) -> float | None:
    """The window's value when it meets the outermost condition (inner windows counted when they
    meet theirs), else None."""
    *inner_conditions, (op, threshold) = conditions
    inner = window.get("window", {}).get("buckets")
    if inner is not None:  # a correlation over a correlation: count the inner windows that crossed
        value = float(sum(1 for w in inner if _window_value(w, inner_conditions) is not None))
    else:
        value = (
            float(window.get("metric", {}).get("value") or 0)
            if "metric" in window
            else float(window["doc_count"])
        )
    return value if _COMPARE[op](value, threshold) else None
