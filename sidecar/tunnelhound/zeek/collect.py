"""``tunnelhound zeek``: Zeek's conn events through the replay path until stopped.

Wiring only: the configured transport (``zeek:`` section) feeds a
:class:`~tunnelhound.sources.zeek.ZeekConnSource`, whose records run through the same
:func:`~tunnelhound.runtime.open_flow_path` as ``replay``: features, the flow sinks, and the
detection stage, whose alerts go to the configured alert sinks.  With
``zeek.publish_detections`` they also go back to Zeek as ``Tunnelhound::detection`` events,
on the same transport the conn events come in on (one peering, as Zeek expects).  Rule
state (windows, suppression) is kept for the next start, as ``tunnelhound run`` keeps it.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from tunnelhound.config import Config
from tunnelhound.detection import detection_stage
from tunnelhound.runtime import open_flow_path
from tunnelhound.sources.zeek import ZeekConnSource
from tunnelhound.zeek.connect import open_transport
from tunnelhound.zeek.transport import TransportStats

__all__ = ["CollectCounts", "collect"]


@dataclass(slots=True)
class CollectCounts:
    """What one ``collect`` run did."""

    documents: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    """Conn events left out, by reason (see :class:`ZeekConnSource`)."""
    alerts: Counter[str] = field(default_factory=Counter)
    """Alerts raised, by ``rule.name``."""
    transport: TransportStats = field(default_factory=TransportStats)


def collect(config: Config, stopping: Callable[[], bool], *, poll: float = 0.2) -> CollectCounts:
    """Run Zeek's conn events through features, flow sinks and rules until ``stopping()`` is true."""
    zeek = config.zeek
    transport = open_transport(zeek)
    source = ZeekConnSource(transport, observer_ip=zeek.observer_ip)
    counts = CollectCounts(transport=transport.stats)
    try:
        with open_flow_path(config, detection_stage, zeek_transport=transport) as path:
            transport.start()
            endpoint = zeek.url if zeek.transport == "websocket" else f"{zeek.host}:{zeek.port}"
            print(f"tunnelhound: reading Zeek conn events from {endpoint}", file=sys.stderr, flush=True)
            while not stopping():
                path.pipeline.process_records(source.poll(timeout=poll))
            # What already arrived is processed before exiting.
            while records := source.poll(timeout=0):
                path.pipeline.process_records(records)
        # After the pipeline closed: its last frames may still have raised alerts.
        counts.alerts = Counter(path.analysis.stats.alerts)
    finally:
        transport.close()
    counts.documents = path.pipeline.counts.documents
    counts.dropped = dict(source.dropped)
    return counts
