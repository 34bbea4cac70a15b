"""Alert documents (DESIGN §6, /work/alert-contract.md) from the rule engine's detections.

The shape is what Elastic Security's "External Alerts" rule promotes as is: ``event.kind:
alert``, the rule's title as ``message``, ``event.severity`` 21/47/73/99 from the Sigma level,
``rule.*`` from the Sigma rule, ``threat.*`` from its ATT&CK tags (names from
``data/attack.json``), and a bounded evidence block whose query returns the evidence flows.
``event.id`` is deterministic (rule id, group key, window end), so a replayed alert has the
same ``_id`` and is written once.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from tunnelhound.normalize.frame import ECS_VERSION
from tunnelhound.rules.loader import BUILTIN_RULES
from tunnelhound.rules.model import Detection

__all__ = ["ALERT_DATASET", "SEVERITY", "alert_id", "build_alert", "build_alerts", "threat_block"]

ALERT_DATASET = "tunnelhound.alert"
SEVERITY = {"informational": 21, "low": 21, "medium": 47, "high": 73, "critical": 99}
"""``event.severity`` by Sigma level."""

_ATTACK = Path(__file__).resolve().parent / "data" / "attack.json"
_TECHNIQUE = re.compile(r"^attack\.(t\d{4})(\.\d{3})?$", re.IGNORECASE)
_TACTIC_ID = re.compile(r"^attack\.(ta\d{4})$", re.IGNORECASE)


@cache
def _attack() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(tactic id → name, tactic slug → id, technique id → name)."""
    data = json.loads(_ATTACK.read_text(encoding="utf-8"))
    tactics = {tid: name for tid, (name, _) in data["tactics"].items()}
    slugs = {slug: tid for tid, (_, slug) in data["tactics"].items()}
    return tactics, slugs, data["techniques"]


def _ns_iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000 / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def threat_block(tags: tuple[str, ...]) -> dict[str, Any] | None:
    """ECS ``threat.*`` from Sigma tags (``attack.t1071.004``, ``attack.command-and-control``,
    ``attack.ta0011``); None when the rule has no ATT&CK tactic or technique."""
    tactic_names, slugs, technique_names = _attack()
    tactics: list[str] = []
    techniques: list[str] = []
    subtechniques: list[str] = []
    for tag in tags:
        tag = tag.lower()
        if m := _TECHNIQUE.match(tag):
            technique = m.group(1).upper()
            if technique not in techniques:
                techniques.append(technique)
            if m.group(2) and (sub := technique + m.group(2)) not in subtechniques:
                subtechniques.append(sub)
        elif m := _TACTIC_ID.match(tag):
            tactics.append(m.group(1).upper())
        elif tag.startswith("attack.") and (tid := slugs.get(tag[7:].replace("_", "-"))):
            tactics.append(tid)
    tactics = list(dict.fromkeys(tactics))
    if not tactics and not techniques:
        return None

    def url(kind: str, tid: str) -> str:
        return f"https://attack.mitre.org/{kind}/{tid.replace('.', '/')}/"

    return {
        "framework": "MITRE ATT&CK",
        "tactic": {
            "id": tactics,
            "name": [tactic_names.get(t, t) for t in tactics],
            "reference": [url("tactics", t) for t in tactics],
        },
        "technique": {
            "id": techniques,
            "name": [technique_names.get(t, t) for t in techniques],
            "reference": [url("techniques", t) for t in techniques],
            "subtechnique": {
                "id": subtechniques,
                "name": [technique_names.get(t, t) for t in subtechniques],
                "reference": [url("techniques", t) for t in subtechniques],
            },
        },
    }


@cache
def _is_builtin(rule_dir: str) -> bool:
    """Whether rules from ``rule_dir`` are the built-in ones (resolving two paths is two dozen
    system calls: once per directory, not once per alert)."""
    return Path(rule_dir).resolve() == BUILTIN_RULES.resolve()


def alert_id(detection: Detection) -> str:
    """Deterministic ``event.id``: the rule's id, its group key and the firing window's end."""
    key = json.dumps(detection.key, sort_keys=True, default=str)
    text = f"{detection.rule.id}\x1f{key}\x1f{detection.end_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def build_alert(
    detection: Detection, namespace: str = "default", ingested: str | None = None
) -> dict[str, Any]:
    """The alert document of one detection; ``ingested`` defaults to now."""
    rule = detection.rule
    now = ingested or _now_iso()
    severity = SEVERITY.get(rule.level, 47)
    builtin = _is_builtin(str(Path(rule.path).parent)) if rule.path else False
    rule_doc: dict[str, Any] = {
        "id": rule.id,
        "uuid": rule.id,
        "name": rule.name,
        "description": rule.description,
        "ruleset": "tunnelhound" if builtin else "custom",
        "version": rule.modified or rule.date or "1",
    }
    if rule.references:
        rule_doc["reference"] = rule.references[0]
    if rule.author:
        rule_doc["author"] = [a.strip() for a in rule.author.split(",") if a.strip()]
    if builtin:
        rule_doc["license"] = "Apache-2.0"
    doc: dict[str, Any] = {
        "@timestamp": now,
        "ecs": {"version": ECS_VERSION},
        "data_stream": {"type": "logs", "dataset": ALERT_DATASET, "namespace": namespace},
        "message": rule.title,
        "event": {
            "kind": "alert",
            "category": ["network", "intrusion_detection"],
            "type": ["info"],
            "action": rule.detector,
            "dataset": ALERT_DATASET,
            "module": "tunnelhound",
            "id": alert_id(detection),
            "severity": severity,
            "risk_score": float(severity),
            "start": _ns_iso(detection.start_ns),
            "end": _ns_iso(detection.end_ns),
            "reason": detection.reason,
            "ingested": now,
        },
        "rule": rule_doc,
    }
    if (threat := threat_block(rule.tags)) is not None:
        doc["threat"] = threat
    source: dict[str, Any] = {}
    destination: dict[str, Any] = {}
    if detection.source_ip is not None:
        source["ip"] = detection.source_ip
    if detection.source_port is not None:
        source["port"] = detection.source_port
    if detection.destination_ip is not None:
        destination["ip"] = detection.destination_ip
    if detection.destination_port is not None:
        destination["port"] = detection.destination_port
    if source:
        doc["source"] = source
    if destination:
        doc["destination"] = destination
    if detection.community_id is not None:
        doc["network"] = {"community_id": detection.community_id}
    related = list(dict.fromkeys(ip for ip in (detection.source_ip, detection.destination_ip) if ip))
    if related:
        doc["related"] = {"ip": related}
    tunnelhound: dict[str, Any] = {
        "alert": {
            "evidence": {
                "flow_event_ids": detection.flow_ids,
                "flow_count": detection.flow_count,
                "query": detection.query,
            }
        }
    }
    if detection.threat_index is not None:
        tunnelhound["threat_index"] = {"value": detection.threat_index}
    doc["tunnelhound"] = tunnelhound
    return doc


def build_alerts(detections: list[Detection], namespace: str = "default") -> list[dict[str, Any]]:
    """Alert documents of a batch of detections, all with the same ``event.ingested``."""
    now = _now_iso()
    return [build_alert(d, namespace, now) for d in detections]
