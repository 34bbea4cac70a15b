"""The interface the Zeek source and sink talk through, and what both transports share.

A transport subscribes to topics, hands received events over (:meth:`Transport.receive`)
and publishes events (:meth:`Transport.publish`).  Neither call blocks for long: a slow or
absent Zeek costs dropped, counted events, never a stalled pipeline.  Implementations:
:class:`~tunnelhound.zeek.websocket.WebSocketTransport` (Zeek's WebSocket API, default) and
:class:`~tunnelhound.zeek.native.BrokerTransport` (Broker's Python bindings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from tunnelhound.zeek.events import EventSchema, ZeekEvent

__all__ = ["Transport", "TransportStats"]


@dataclass(slots=True)
class TransportStats:
    """What a transport counted since it started."""

    connects: int = 0
    """Sessions established (WebSocket: ack received; Broker: peer added)."""
    disconnects: int = 0
    received: int = 0
    """Events handed to :meth:`Transport.receive` callers."""
    sent: int = 0
    dropped_in: int = 0
    """Received events dropped because the pipeline did not take them fast enough."""
    dropped_out: int = 0
    """Events not published because Zeek did not take them fast enough (or was away)."""
    bad_messages: int = 0
    """Messages that did not follow Broker's data model (see ``last_error``)."""
    peer_errors: int = 0
    """Error messages the peer sent."""
    last_error: str = ""


class Transport(Protocol):
    """A connection to Zeek that carries :class:`ZeekEvent` both ways."""

    stats: TransportStats

    def start(self) -> None:
        """Begin connecting (returns at once; connecting and reconnecting go on behind)."""

    def publish(self, topic: str, schema: EventSchema, args: tuple[Any, ...]) -> bool:
        """Queue one event for ``topic``; False (and counted) when it had to be dropped."""

    def receive(self, max_events: int, timeout: float) -> list[tuple[str, ZeekEvent]]:
        """Up to ``max_events`` received ``(topic, event)`` pairs, waiting at most ``timeout``."""

    def close(self) -> None:
        """Stop and release; queued events go out if a session is up (bounded in time), else they are dropped."""
