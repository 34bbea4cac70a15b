"""What the engine hands on: :class:`RuleInfo` (a loaded rule's metadata) and
:class:`Detection` (one firing, before it becomes an alert document in ``alerts.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Detection", "RuleInfo"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleInfo:
    """A Sigma rule's metadata, as the alert needs it.

    ``detector`` is the stem of the file the rule came from (``port_scan``); ``query`` is the
    Lucene form of the rule's own condition on flow documents (None for correlation rules, whose
    evidence comes from the rules they correlate).
    """

    id: str
    name: str
    title: str
    description: str = ""
    level: str = "medium"
    tags: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    author: str = ""
    date: str = ""
    modified: str = ""
    falsepositives: tuple[str, ...] = ()
    detector: str = ""
    path: str = ""


@dataclass(slots=True, kw_only=True)
class Detection:
    """One firing of a rule for one group key.

    ``key`` maps the rule's group-by fields (or, for a base rule, the flow's addresses) to
    values; ``start_ns``/``end_ns`` bound the evidence window on flow time; ``flow_ids`` lists
    at most 100 evidence flows' ``event.id``, ``flow_count`` counts them all; ``query`` is a
    Lucene query returning exactly the evidence flows.  ``value``/``threshold``/``op`` say what
    crossed (a count, a distinct count or a sum).  ``source_ip`` … ``community_id`` are set when
    the key or every evidence flow pins them down.
    """

    rule: RuleInfo
    key: dict[str, Any]
    start_ns: int
    end_ns: int
    flow_ids: list[str]
    flow_count: int
    query: str
    reason: str
    value: float | None = None
    threshold: float | None = None
    op: str | None = None
    source_ip: str | None = None
    destination_ip: str | None = None
    source_port: int | None = None
    destination_port: int | None = None
    community_id: str | None = None
    threat_index: float | None = None
