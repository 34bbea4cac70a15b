"""Alerts back to Zeek: each alert document becomes one ``Tunnelhound::detection`` event.

The Zeek package (``zeek-scripts/``) turns the event into a ``NOTICE`` whose type follows
``event.action`` (see ``docs/zeek.md``).  :meth:`ZeekAlertSink.write_alerts` only queues on
the transport, so it returns at once whether Zeek is there or not; alerts that do not fit
(no ``source.ip``) and alerts the transport had to drop are counted in :attr:`dropped`.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tunnelhound.zeek.events import DETECTION, EVENT_VERSION
from tunnelhound.zeek.transport import Transport

__all__ = ["ZeekAlertSink", "detection_args"]

DEFAULT_TOPIC = "tunnelhound/detections"


def _ip(doc: Mapping[str, Any], side: str) -> str | None:
    value = (doc.get(side) or {}).get("ip")
    try:
        return str(ipaddress.ip_address(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def _time(text: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return datetime.now(UTC)


def detection_args(alert: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The ``Tunnelhound::detection`` arguments of one alert document; None without a source IP."""
    src = _ip(alert, "source")
    if src is None:
        return None
    dst = _ip(alert, "destination")
    event, rule = alert.get("event") or {}, alert.get("rule") or {}
    return (
        EVENT_VERSION,
        str(event.get("id", "")),
        _time(alert.get("@timestamp")),
        str(event.get("action", "")),
        str(rule.get("name", "")),
        str(rule.get("id", "")),
        max(int(event.get("severity", 0)), 0),
        str(alert.get("message", "")),
        str(event.get("reason", "")),
        src,
        [dst] if dst is not None else [],
        str((alert.get("network") or {}).get("community_id", "")),
    )


class ZeekAlertSink:
    """Publishes alerts as detection events on ``topic`` through a Zeek transport.

    ``close_transport``: :meth:`close` closes the transport too (False when the transport is
    lent, e.g. by ``tunnelhound zeek``, whose conn events come in on it).
    """

    name = "zeek"

    def __init__(
        self, transport: Transport, *, topic: str = DEFAULT_TOPIC, close_transport: bool = True
    ) -> None:
        self.transport = transport
        self.topic = topic
        self.close_transport = close_transport
        self.published = 0
        self.dropped: Counter[str] = Counter()

    def write_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Queue one detection event per alert (never waits for Zeek)."""
        for alert in alerts:
            args = detection_args(alert)
            if args is None:
                self.dropped["no_source_ip"] += 1
            elif self.transport.publish(self.topic, DETECTION, args):
                self.published += 1
            else:
                self.dropped["transport_full"] += 1

    def stats(self) -> dict[str, int]:
        """``sent``: handed to the transport (it counts what it could not deliver); ``dropped``
        by reason as ``dropped_<reason>``."""
        counts = {"sent": self.published, "failed": 0, "dropped": sum(self.dropped.values())}
        return counts | {f"dropped_{reason}": n for reason, n in self.dropped.items()}

    def close(self) -> None:
        """Close the transport, unless it was lent."""
        if self.close_transport:
            self.transport.close()
