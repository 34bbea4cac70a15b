"""The configured transport (``zeek:`` config section)."""

from __future__ import annotations

from tunnelhound.config import ZeekConfig
from tunnelhound.zeek.transport import Transport

__all__ = ["open_transport"]


def open_transport(config: ZeekConfig, topics: tuple[str, ...] | None = None) -> Transport:
    """A transport subscribed to ``topics`` (default: ``conn_topic``; ``()`` for one that only
    publishes), not yet started (call ``start()``).

    ``broker`` raises :class:`~tunnelhound.errors.ConfigError` when Broker's Python module
    cannot be imported from the configured paths.
    """
    if topics is None:
        topics = (config.conn_topic,)
    if config.transport == "broker":
        from tunnelhound.zeek.native import BrokerTransport  # imports broker: only when chosen

        return BrokerTransport(
            config.host,
            config.port,
            topics,
            broker_path=config.broker_python_path,
            reconnect=config.reconnect_initial,
            queue_size=config.queue_size,
        )
    from tunnelhound.zeek.websocket import WebSocketTransport

    return WebSocketTransport(
        config.url,
        topics,
        queue_size=config.queue_size,
        reconnect_initial=config.reconnect_initial,
        reconnect_max=config.reconnect_max,
    )
