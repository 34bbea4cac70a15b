"""Alert documents shaped exactly like /work/alert-contract.md (elastic/fields/alert.yml), for
tests that need alerts before the real producer (sidecar/tunnelhound/alerts.py) exists.

:func:`lab_alerts` makes one alert per alerting scenario of tests/data/lab/labels.json, with its
evidence taken from the given flow documents, plus ``threat_index`` documents (the host in
``source.ip``, the index in ``event.risk_score``) for every alerted host.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from replay import DATA

SEVERITY = {"low": 21, "medium": 47, "high": 73, "critical": 99}

TACTICS = {
    "TA0007": "Discovery",
    "TA0010": "Exfiltration",
    "TA0011": "Command and Control",
}
TECHNIQUES = {
    "T1046": "Network Service Discovery",
    "T1048": "Exfiltration Over Alternative Protocol",
    "T1030": "Data Transfer Size Limits",
    "T1041": "Exfiltration Over C2 Channel",
    "T1071": "Application Layer Protocol",
    "T1095": "Non-Application Layer Protocol",
    "T1571": "Non-Standard Port",
    "T1572": "Protocol Tunneling",
    "T1573": "Encrypted Channel",
}
RULES: dict[str, tuple[str, str, list[str], list[str], list[str]]] = {
    # slug: (title, level, tactics, techniques, subtechniques)
    "app_tunnel": (
        "Application tunneling: a service port carries another protocol",
        "high",
        ["TA0011"],
        ["T1572", "T1571"],
        [],
    ),
    "dns_tunnel": (
        "DNS tunnel: DNS flows far above the baseline",
        "high",
        ["TA0011", "TA0010"],
        ["T1071", "T1048"],
        ["T1071.004"],
    ),
    "icmp_tunnel": ("ICMP tunnel: oversized echo packets", "high", ["TA0011"], ["T1095", "T1572"], []),
    "port_scan": ("Port scan: many unanswered destination ports", "medium", ["TA0007"], ["T1046"], []),
    "exfiltration": (
        "Exfiltration: over 20 MB to external hosts in 5 minutes",
        "high",
        ["TA0010"],
        ["T1048", "T1030", "T1041"],
        [],
    ),
    "beacon": (
        "Beaconing: regular connections of regular size",
        "medium",
        ["TA0011"],
        ["T1071", "T1573"],
        [],
    ),
    "threat_index": ("Host threat index crossed a threshold", "medium", [], [], []),
}
KIND_RULE = {"exfil": "exfiltration"}
SLACK_S = 5.0


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def alert(
    rule: str,
    *,
    namespace: str,
    at: datetime,
    start: datetime,
    end: datetime,
    source_ip: str,
    destination_ip: str | None = None,
    evidence: list[str] | None = None,
    reason: str = "",
    risk_score: float | None = None,
    level: str | None = None,
) -> dict[str, Any]:
    """One contract-shaped alert document."""
    title, default_level, tactics, techniques, subs = RULES[rule]
    severity = SEVERITY[level or default_level]
    rule_uuid = str(hashlib.md5(f"tunnelhound/{rule}".encode()).hexdigest())
    rule_uuid = f"{rule_uuid[:8]}-{rule_uuid[8:12]}-{rule_uuid[12:16]}-{rule_uuid[16:20]}-{rule_uuid[20:]}"
    ids = list(evidence or [])
    doc: dict[str, Any] = {
        "@timestamp": _iso(at),
        "ecs": {"version": "8.17.0"},
        "data_stream": {"type": "logs", "dataset": "tunnelhound.alert", "namespace": namespace},
        "message": title,
        "event": {
            "kind": "alert",
            "category": ["network", "intrusion_detection"],
            "type": ["info"],
            "action": rule,
            "dataset": "tunnelhound.alert",
            "module": "tunnelhound",
            "id": hashlib.sha256(f"{rule}|{source_ip}|{destination_ip}|{_iso(start)}".encode()).hexdigest()[
                :32
            ],
            "severity": severity,
            "risk_score": float(severity) if risk_score is None else risk_score,
            "start": _iso(start),
            "end": _iso(end),
            "reason": reason or f"{source_ip} matched {rule}",
            "ingested": _iso(at + timedelta(milliseconds=250)),
        },
        "rule": {
            "id": rule_uuid,
            "uuid": rule_uuid,
            "name": rule,
            "description": title,
            "ruleset": "tunnelhound",
            "version": "2026-11-23",
            "reference": f"https://github.com/tunnelhound/tunnelhound/blob/main/sigma-rules/{rule}.yml",
            "author": "Tunnelhound",
            "license": "Apache-2.0",
        },
        "threat": {
            "framework": "MITRE ATT&CK",
            "tactic": {
                "id": tactics,
                "name": [TACTICS[t] for t in tactics],
                "reference": [f"https://attack.mitre.org/tactics/{t}/" for t in tactics],
            },
            "technique": {
                "id": techniques,
                "name": [TECHNIQUES[t] for t in techniques],
                "reference": [f"https://attack.mitre.org/techniques/{t}/" for t in techniques],
                "subtechnique": {
                    "id": subs,
                    "name": ["DNS" for _ in subs],
                    "reference": [
                        f"https://attack.mitre.org/techniques/{s.replace('.', '/')}/" for s in subs
                    ],
                },
            },
        },
        "source": {"ip": source_ip},
        "related": {"ip": [source_ip] + ([destination_ip] if destination_ip else [])},
        "tunnelhound": {
            "alert": {
                "evidence": {
                    "flow_event_ids": ids[:100],
                    "flow_count": len(ids),
                    "query": "data_stream.dataset:tunnelhound.flow AND event.id:("
                    + " OR ".join(f'"{i}"' for i in ids)
                    + ")",
                }
            }
        },
    }
    if destination_ip:
        doc["destination"] = {"ip": destination_ip}
    return doc


def _ports(spec: str) -> set[int]:
    out: set[int] = set()
    for part in filter(None, spec.split(",")):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _matches(flow: dict[str, Any], label: dict[str, Any]) -> bool:
    ends = {flow["source"]["ip"], flow["destination"]["ip"]}
    if ends != {label["src"], label["dst"]} or flow["network"]["transport"] != label["proto"]:
        return False
    ports = _ports(label["dst_ports"])
    if ports:
        external = (
            flow["destination"]["port"]
            if flow["destination"]["ip"] == label["dst"]
            else flow["source"]["port"]
        )
        if external not in ports:
            return False
    start = _parse(flow["event"]["start"]).timestamp()
    end = _parse(flow["event"]["end"]).timestamp()
    return start <= label["end_epoch"] + SLACK_S and end >= label["start_epoch"] - SLACK_S


def lab_alerts(flows: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """Alerts for the lab scenarios (evidence from ``flows``) and threat-index updates."""
    labels = json.loads((DATA / "lab" / "labels.json").read_text())
    alerts = []
    last_seen: dict[str, datetime] = {}
    for label in labels:
        if not label["expected_alert"]:
            continue
        rule = KIND_RULE.get(label["kind"], label["kind"])
        evidence = sorted(f["event"]["id"] for f in flows if _matches(f, label))
        start, end = _parse(label["start"]), _parse(label["end"])
        at = end + timedelta(seconds=1)
        alerts.append(
            alert(
                rule,
                namespace=namespace,
                at=at,
                start=start,
                end=end,
                source_ip=label["src"],
                destination_ip=label["dst"],
                evidence=evidence,
                reason=f"{label['scenario']}: {label['notes']}",
            )
        )
        last_seen[label["src"]] = max(at, last_seen.get(label["src"], at))
    for n, (host, seen) in enumerate(sorted(last_seen.items())):
        # An index that rises and decays: 3 updates a minute apart, distinct per host.
        for step, factor in enumerate((1.0, 1.5, 0.75)):
            value = (20 + 4 * n) * factor
            at = seen + timedelta(minutes=step + 1)
            level = "high" if value >= 40 else "medium"
            alerts.append(
                alert(
                    "threat_index",
                    namespace=namespace,
                    at=at,
                    start=at - timedelta(hours=24),
                    end=at,
                    source_ip=host,
                    risk_score=value,
                    level=level,
                    reason=f"threat index of {host} is {value}",
                )
            )
    return alerts
