"""Alert documents shaped exactly like the example in the alert contract (test helper)."""

from __future__ import annotations

import copy
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
