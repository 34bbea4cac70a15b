"""``tunnelhound zeek``: Zeek's conn events into the configured flow sinks until stopped.

Wiring only: the configured transport (``zeek:`` section) feeds a
:class:`~tunnelhound.sources.zeek.ZeekConnSource`, whose frames go to the same sinks
``tunnelhound run`` writes to.  Alerts go back to Zeek through
:class:`~tunnelhound.sinks.zeek.ZeekAlertSink` once the rules stage is wired in.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from tunnelhound.config import Config
from tunnelhound.normalize.frame import FlowFrame
from tunnelhound.pipeline import FlowSink, open_sinks
from tunnelhound.sources.zeek import ZeekConnSource
from tunnelhound.zeek.connect import open_transport
from tunnelhound.zeek.transport import TransportStats

__all__ = ["CollectCounts", "collect"]


@dataclass(slots=True)
class CollectCounts:
    """What one ``collect`` run did."""

    documents: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    transport: TransportStats = field(default_factory=TransportStats)


def collect(config: Config, stopping: Callable[[], bool], *, poll: float = 0.2) -> CollectCounts:
    """Write the flows of Zeek's conn events to the sinks until ``stopping()`` is true."""
    zeek = config.zeek
    sink = open_sinks(config)
    transport = open_transport(zeek)
    source = ZeekConnSource(
        transport,
        observer_ip=zeek.observer_ip,
        internal_networks=config.normalize.internal_networks,
        community_id_seed=config.normalize.community_id_seed,
        namespace=config.namespace,
    )
    counts = CollectCounts(transport=transport.stats)
    transport.start()
    endpoint = zeek.url if zeek.transport == "websocket" else f"{zeek.host}:{zeek.port}"
    print(f"tunnelhound: reading Zeek conn events from {endpoint}", file=sys.stderr, flush=True)
    try:
        while not stopping():
            counts.documents += _write(source.poll(timeout=poll), sink)
        # What already arrived is written before exiting.
        while drained := _write(source.poll(timeout=0), sink):
            counts.documents += drained
    finally:
        transport.close()
        sink.close()
    counts.dropped = dict(source.dropped)
    return counts


def _write(frame: FlowFrame, sink: FlowSink) -> int:
    if frame.n:
        sink.write_frame(frame)
    return frame.n
