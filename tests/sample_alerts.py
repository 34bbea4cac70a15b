"""Alert documents shaped exactly like the alert contract's example, for the sink tests that
need fixed, hand-checkable values (golden frames, parsers); end-to-end tests use the real
producer (tunnelhound.alerts) on a lab replay."""

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
        "id": "5f0c2b1e9d7a4c3b8e6f1a2d3c4b5a69",
        "severity": 73,
        "risk_score": 73.0,
        "start": "2026-11-23T13:40:10.100Z",
        "end": "2026-11-23T13:40:11.700Z",
        "reason": "10.77.1.68 sent to 212 unanswered ports of 198.18.5.10 in 300 s (threshold 15)",
        "ingested": "2026-11-23T13:40:12.345Z",
    },
    "rule": {
        "id": "0b8d2a4e-5c1f-4e2a-9b7d-3f6a8c1e2d40",
        "uuid": "0b8d2a4e-5c1f-4e2a-9b7d-3f6a8c1e2d40",
        "name": "port_scan_vertical",
        "description": "Many unanswered destination ports of one host",
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
    "network": {"community_id": "1:k9pBKU8ZwDnZuEXOOZyUfgsG8k0="},
    "related": {"ip": ["10.77.1.68", "198.18.5.10"]},
    "tunnelhound": {
        "alert": {
            "evidence": {
                "flow_event_ids": ["a1", "a2"],
                "flow_count": 212,
                "query": 'data_stream.dataset:tunnelhound.flow AND event.id:("a1" OR "a2")',
            }
        }
    },
}


def example_alert(**sections: Any) -> dict[str, Any]:
    """A deep copy of the contract's example; keyword arguments replace or (None) remove
    top-level members, e.g. ``example_alert(destination=None)``."""
    alert = copy.deepcopy(_EXAMPLE)
    for key, value in sections.items():
        if value is None:
            alert.pop(key, None)
        else:
            alert[key] = value
    return alert


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
