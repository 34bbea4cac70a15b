"""A WebSocket server that speaks Broker's JSON API v1 as documented (test helper).

It stands in for Zeek's WebSocket API, because no Zeek binary exists where these tests run:
it expects the topic list as the first message, answers with an ``ack`` (or, for the first
``reject`` attempts, with an ``error`` and a close), sends the frames the test queues, and
keeps every data message the client sends.  ``drop()`` closes the current connection, as a
Zeek that restarts would.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

GOLDEN = Path(__file__).parent / "data" / "zeek"
PATH = "/v1/messages/json"


def golden(name: str) -> str:
    """A golden frame from tests/data/zeek/, as the text a WebSocket message carries."""
    return json.dumps(json.loads((GOLDEN / name).read_text()))


class BrokerJsonPeer:
    """The server side of Zeek's WebSocket API on 127.0.0.1 (an ephemeral port)."""

    def __init__(self, *, reject: int = 0, stall: bool = False) -> None:
        self.reject = reject
        self.stall = stall
        """After the ack, read nothing until ``drop()`` (a Zeek too busy to keep up)."""
        self.attempts: list[float] = []
        """time.monotonic() of every connection attempt."""
        self.subscriptions: list[list[str]] = []
        """The topic list of every attempt, in order."""
        self.received: queue.Queue[dict[str, Any]] = queue.Queue()
        self.sessions = 0
        """Attempts that got an ack."""
        self._outgoing: queue.Queue[str] = queue.Queue()
        self._drop = threading.Event()
        self._server = serve(self._handle, "127.0.0.1", 0, close_timeout=1)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The URL a client connects to."""
        return f"ws://127.0.0.1:{self.port}{PATH}"

    def send(self, frame: str) -> None:
        """Send ``frame`` on the current (or next) session."""
        self._outgoing.put(frame)

    def drop(self) -> None:
        """Close the current connection (the client should reconnect)."""
        self._drop.set()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._thread.join(timeout=5)

    def take(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The next ``n`` data messages the client sent (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        return [self.received.get(timeout=max(deadline - time.monotonic(), 0.01)) for _ in range(n)]

    def _handle(self, ws: ServerConnection) -> None:
        self.attempts.append(time.monotonic())
        assert ws.request is not None and ws.request.path == PATH, ws.request
        try:
            topics = json.loads(ws.recv(timeout=5))
            assert isinstance(topics, list) and all(isinstance(t, str) for t in topics), topics
            self.subscriptions.append(topics)
            if len(self.attempts) <= self.reject:
                ws.send(golden("error.json"))
                return
            self.sessions += 1  # before the ack: the client may look as soon as it has it
            ws.send(golden("ack.json"))
            self._serve(ws)
        except ConnectionClosed:
            return

    def _serve(self, ws: ServerConnection) -> None:
        if self.stall:
            self._drop.wait()
        while not self._drop.is_set():
            while not self._outgoing.empty():
                ws.send(self._outgoing.get_nowait())
            try:
                message = json.loads(ws.recv(timeout=0.02))
            except TimeoutError:
                continue
            assert message["type"] == "data-message", message
            self.received.put(message)
        self._drop.clear()
