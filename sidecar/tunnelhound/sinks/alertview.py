"""Read the fields of an alert document that the text-making sinks (syslog, e-mail) show.

Only fields of the alert contract are read; a missing one gives an empty value, never an error,
so a sink can always say something about an alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["attack_ids", "attack_names", "hosts", "lookup", "rule_key", "severity", "severity_label", "title"]

# event.severity is one of 21/47/73/99 (Sigma low/medium/high/critical, DESIGN §6).
_LABELS = ((99, "critical"), (73, "high"), (47, "medium"))


def lookup(alert: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted path (``"event.severity"``), or None."""
    value: Any = alert
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list | tuple):
        return [str(v) for v in value if v not in (None, "")]
    return []


def severity(alert: Mapping[str, Any]) -> int:
    """``event.severity`` as an int (21, the lowest, when missing or malformed)."""
    value = lookup(alert, "event.severity")
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 21


def severity_label(alert: Mapping[str, Any]) -> str:
    """``critical``, ``high``, ``medium`` or ``low``."""
    value = severity(alert)
    return next((label for floor, label in _LABELS if value >= floor), "low")


def title(alert: Mapping[str, Any]) -> str:
    """The human title (``message``), else the rule name."""
    return str(lookup(alert, "message") or lookup(alert, "rule.name") or "Tunnelhound alert")


def hosts(alert: Mapping[str, Any]) -> list[str]:
    """Source and destination address when present, else ``related.ip``."""
    pair = _strings([lookup(alert, "source.ip"), lookup(alert, "destination.ip")])
    return pair or _strings(lookup(alert, "related.ip"))


def rule_key(alert: Mapping[str, Any]) -> tuple[str, str]:
    """(rule, host) an e-mail rate limit applies to: rule id (else name) and the source host."""
    rule = str(lookup(alert, "rule.id") or lookup(alert, "rule.name") or "")
    host = str(lookup(alert, "source.ip") or next(iter(hosts(alert)), ""))
    return rule, host


def attack_ids(alert: Mapping[str, Any]) -> list[str]:
    """ATT&CK tactic, technique and sub-technique ids, in that order."""
    return [
        *_strings(lookup(alert, "threat.tactic.id")),
        *_strings(lookup(alert, "threat.technique.id")),
        *_strings(lookup(alert, "threat.technique.subtechnique.id")),
    ]


def attack_names(alert: Mapping[str, Any]) -> list[str]:
    """``id name`` for every tactic, technique and sub-technique."""
    out = []
    for path in ("threat.tactic", "threat.technique", "threat.technique.subtechnique"):
        ids, names = _strings(lookup(alert, f"{path}.id")), _strings(lookup(alert, f"{path}.name"))
        out += [f"{i} {n}".strip() for i, n in zip(ids, [*names, *[""] * len(ids)], strict=False)]
    return out
