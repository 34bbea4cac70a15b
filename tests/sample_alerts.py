"""Alert documents shaped exactly like the contract's example (/work/alert-contract.md), for
the alert sink tests until the real producer (tunnelhound.alerts) lands."""

from __future__ import annotations

import copy
import hashlib
import uuid
from typing import Any

_EXAMPLE: dict[str, Any] = {
    "@timestamp": "2026-11-23T13:40:12.345Z",
    "ecs": {"version": "8.17.0"},
    "data_stream": {"type": "logs", "dataset": "tunnelhound.alert", "namespace": "default"},
    "message": "Port scan: many unanswered destination ports",
    "event": {
        "kind": "alert",
        "category": ["network", "intrusion_detection"],
        "type": ["info"],
        "action": "port_scan",
        "dataset": "tunnelhound.alert",
        "module": "tunnelhound",
        "id": "",
        "severity": 73,
        "risk_score": 73.0,
        "start": "2026-11-23T13:40:10.100Z",
        "end": "2026-11-23T13:40:11.700Z",
        "reason": "10.77.1.68 sent to 212 unanswered ports of 198.18.5.10 in 300 s (threshold 15)",
        "ingested": "2026-11-23T13:40:12.345Z",
    },
    "rule": {
        "id": "0b8d2a4e-6c1f-4f7e-9a53-2d0c8f6b1e11",
        "uuid": "0b8d2a4e-6c1f-4f7e-9a53-2d0c8f6b1e11",
        "name": "port_scan",
        "description": "Many unanswered destination ports from one host",
        "ruleset": "tunnelhound",
        "version": "2026-11-23",
        "reference": "https://attack.mitre.org/techniques/T1046/",
        "author": "Tunnelhound",
        "license": "Apache-2.0",
    },
    "threat": {
        "framework": "MITRE ATT&CK",
        "tactic": {
            "id": ["TA0007"],
            "name": ["Discovery"],
            "reference": ["https://attack.mitre.org/tactics/TA0007/"],
        },
        "technique": {
            "id": ["T1046"],
            "name": ["Network Service Discovery"],
            "reference": ["https://attack.mitre.org/techniques/T1046/"],
            "subtechnique": {"id": [], "name": [], "reference": []},
        },
    },
    "source": {"ip": "10.77.1.68"},
    "destination": {"ip": "198.18.5.10"},
    "network": {"community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
    "related": {"ip": ["10.77.1.68", "198.18.5.10"]},
    "tunnelhound": {
        "alert": {
            "evidence": {
                "flow_event_ids": ["f1", "f2"],
                "flow_count": 212,
                "query": 'data_stream.dataset:tunnelhound.flow AND event.id:("f1" OR "f2")',
            }
        }
    },
}

# rule name -> (message, severity, tactic, technique, technique name)
RULES = {
    "port_scan": (
        "Port scan: many unanswered destination ports",
        73,
        "TA0007",
        "T1046",
        "Network Service Discovery",
    ),
    "dns_tunnel": ("DNS tunnel: oversized DNS flows", 99, "TA0011", "T1071.004", "DNS"),
    "beacon": ("Beaconing: regular small flows", 47, "TA0011", "T1071", "Application Layer Protocol"),
    "exfiltration": (
        "Exfiltration: large upload to an external host",
        21,
        "TA0010",
        "T1048",
        "Exfiltration Over Alternative Protocol",
    ),
}


def make_alert(
    rule: str = "port_scan",
    *,
    source: str = "10.77.1.68",
    destination: str | None = "198.18.5.10",
    namespace: str = "default",
    seq: int = 0,
) -> dict[str, Any]:
    """A contract-shaped alert of ``rule`` from ``source``; ``seq`` varies the deterministic id."""
    alert = copy.deepcopy(_EXAMPLE)
    message, severity, tactic, technique, technique_name = RULES[rule]
    alert["message"] = message
    alert["data_stream"]["namespace"] = namespace
    event = alert["event"]
    event.update(action=rule, severity=severity, risk_score=float(severity))
    event["id"] = hashlib.sha256(f"{rule}|{source}|{destination}|{seq}".encode()).hexdigest()[:32]
    alert["rule"]["name"] = rule
    # Each rule has its own stable UUID, as the Sigma files will.
    alert["rule"]["id"] = alert["rule"]["uuid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"tunnelhound:{rule}"))
    alert["threat"]["tactic"]["id"] = [tactic]
    if "." in technique:
        parent = technique.split(".")[0]
        alert["threat"]["technique"]["id"] = [parent]
        alert["threat"]["technique"]["name"] = ["Application Layer Protocol"]
        alert["threat"]["technique"]["subtechnique"] = {
            "id": [technique],
            "name": [technique_name],
            "reference": [f"https://attack.mitre.org/techniques/{technique.replace('.', '/')}/"],
        }
    else:
        alert["threat"]["technique"]["id"] = [technique]
        alert["threat"]["technique"]["name"] = [technique_name]
    alert["source"]["ip"] = source
    if destination is None:
        del alert["destination"]
        del alert["network"]
        alert["related"]["ip"] = [source]
    else:
        alert["destination"]["ip"] = destination
        alert["related"]["ip"] = [source, destination]
    return alert
