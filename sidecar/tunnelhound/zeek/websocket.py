"""Zeek's WebSocket API as a :class:`~tunnelhound.zeek.transport.Transport` (the default).

One background thread owns the connection: it sends the topic list, waits for the ``ack``,
then sends what :meth:`publish` queued and queues what arrives.  Both queues are bounded;
when one is full the event is dropped and counted (``stats.dropped_out``/``dropped_in``), so
a slow or missing Zeek never stalls the pipeline.  When the connection fails or the peer goes
away, the thread reconnects after a backoff that doubles from ``reconnect_initial`` up to
``reconnect_max`` and starts again from the bottom after each successful handshake.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from typing import Any

import orjson
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from tunnelhound.zeek.brokerjson import BrokerJsonError, decode_message, encode_event
from tunnelhound.zeek.events import EventSchema, ZeekEvent
from tunnelhound.zeek.transport import TransportStats

__all__ = ["WebSocketTransport"]

_POLL = 0.05
"""Seconds the thread waits for a message before it sends what was queued meanwhile."""


class _HandshakeError(Exception):
    """The peer did not answer the topic list with an ack."""


class WebSocketTransport:
    """A WebSocket client of Zeek (``ws://host:27759/v1/messages/json``)."""

    def __init__(
        self,
        url: str,
        topics: tuple[str, ...],
        *,
        queue_size: int = 10000,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
        open_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.topics = topics
        self.stats = TransportStats()
        self.peer: dict[str, Any] = {}
        """The last ack's ``endpoint`` and ``version``."""
        self._inbound: queue.Queue[tuple[str, ZeekEvent]] = queue.Queue(queue_size)
        self._outbound: queue.Queue[bytes] = queue.Queue(queue_size)
        self._reconnect = (reconnect_initial, reconnect_max)
        self._open_timeout = open_timeout
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._ws: ClientConnection | None = None
        self._thread = threading.Thread(target=self._run, name="zeek-websocket", daemon=True)

    def start(self) -> None:
        """Start the connection thread."""
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        """Whether a session is up within ``timeout`` seconds (for tests and start-up logs)."""
        return self._connected.wait(timeout)

    def publish(self, topic: str, schema: EventSchema, args: tuple[Any, ...]) -> bool:
        """Queue one event; dropped and counted when the queue is full."""
        try:
            self._outbound.put_nowait(encode_event(topic, schema, args))
        except queue.Full:
            self.stats.dropped_out += 1
            return False
        return True

    def receive(self, max_events: int, timeout: float) -> list[tuple[str, ZeekEvent]]:
        """Received events, waiting up to ``timeout`` for the first one."""
        out: list[tuple[str, ZeekEvent]] = []
        try:
            out.append(self._inbound.get(timeout=timeout))
            while len(out) < max_events:
                out.append(self._inbound.get_nowait())
        except queue.Empty:
            pass
        self.stats.received += len(out)
        return out

    def close(self) -> None:
        """Stop the thread (it sends what is queued, then closes the connection) and wait for it.

        A thread stuck sending to a Zeek that reads nothing is freed by shutting the socket.
        """
        self._stop.set()
        if not self._thread.is_alive():
            return
        self._thread.join(timeout=2 * _POLL)
        ws = self._ws
        if self._thread.is_alive() and ws is not None:
            with contextlib.suppress(OSError):
                ws.socket.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5.0)

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        initial, maximum = self._reconnect
        delay = initial
        while not self._stop.is_set():
            try:
                with connect(self.url, open_timeout=self._open_timeout, max_size=2**24) as ws:
                    self._ws = ws
                    self._handshake(ws)
                    self.stats.connects += 1
                    self._connected.set()
                    delay = initial
                    self._session(ws)
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, _HandshakeError) as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
            except InvalidURI as exc:
                self.stats.last_error = f"bad Zeek WebSocket URL: {exc}"
                return
            if self._connected.is_set():
                self._connected.clear()
                self.stats.disconnects += 1
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, maximum)

    def _handshake(self, ws: ClientConnection) -> None:
        ws.send(orjson.dumps(list(self.topics)).decode())
        try:
            kind, payload = decode_message(ws.recv(timeout=self._open_timeout))
        except BrokerJsonError as exc:
            raise _HandshakeError(f"no ack: {exc}") from None
        if kind != "ack":
            raise _HandshakeError(f"expected an ack, got {kind}: {payload}")
        self.peer = payload

    def _session(self, ws: ClientConnection) -> None:
        while not self._stop.is_set():
            self._send_queued(ws)
            try:
                text = ws.recv(timeout=_POLL)
            except TimeoutError:
                continue
            self._handle(text)
        # Closing: what was published up to now (the last detections) still goes out;
        # close() frees a send stuck on a Zeek that reads nothing.
        self._send_queued(ws)

    def _send_queued(self, ws: ClientConnection) -> None:
        while True:
            try:
                message = self._outbound.get_nowait()
            except queue.Empty:
                return
            try:
                ws.send(message.decode())
            except ConnectionClosed:
                self.stats.dropped_out += 1  # in flight when the peer went away
                raise
            self.stats.sent += 1

    def _handle(self, text: str | bytes) -> None:
        try:
            kind, payload = decode_message(text)
        except BrokerJsonError as exc:
            self.stats.bad_messages += 1
            self.stats.last_error = str(exc)
            return
        if kind == "error":
            self.stats.peer_errors += 1
            self.stats.last_error = f"peer error {payload}"
        elif kind == "data-message":
            try:
                self._inbound.put_nowait(payload)
            except queue.Full:
                self.stats.dropped_in += 1
