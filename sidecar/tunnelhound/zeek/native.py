"""Broker's Python bindings as a :class:`~tunnelhound.zeek.transport.Transport`.

The bindings ship with a Zeek install (``zeek-config --python_dir``) and are not on PyPI;
Debian's ``python3-broker`` is the same library (Broker 1.4, older wire format than
current Zeek, used as a real peer in tests).  :func:`import_broker` finds the module on the
configured paths without leaving them on ``sys.path``.  Broker keeps the peering up by itself
(``retry``); its publish call queues and returns, so this transport needs no thread.
"""

from __future__ import annotations

import importlib
import ipaddress
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from tunnelhound.errors import ConfigError
from tunnelhound.zeek.brokerjson import BrokerJsonError, event_from_data
from tunnelhound.zeek.events import EventSchema, Port, ZeekEvent
from tunnelhound.zeek.transport import TransportStats

__all__ = ["BrokerTransport", "broker_paths", "import_broker"]


def broker_paths(configured: Sequence[str]) -> list[str]:
    """Where to look for ``broker``: the configured paths, then ``zeek-config --python_dir``."""
    paths = list(configured)
    zeek_config = shutil.which("zeek-config")
    if zeek_config:
        found = subprocess.run([zeek_config, "--python_dir"], capture_output=True, text=True, check=False)
        if found.returncode == 0 and found.stdout.strip():
            paths.append(found.stdout.strip())
    return paths


def import_broker(paths: Sequence[str]) -> ModuleType:
    """The ``broker`` module: importable as it is, or from one of ``paths``.

    The paths are appended to ``sys.path`` only for the import (appended, so the
    environment's own packages still win) and removed after.  Raises :class:`ConfigError`
    when no path has it.
    """
    try:
        return importlib.import_module("broker")
    except ImportError:
        pass
    added = [p for p in paths if p not in sys.path]
    sys.path.extend(added)
    try:
        return importlib.import_module("broker")
    except ImportError as exc:
        raise ConfigError(
            "zeek.transport",
            f"broker: cannot import broker ({exc}); searched {list(paths)}. "
            "Install Zeek (its Python bindings) or use transport: websocket",
        ) from None
    finally:
        for path in added:
            sys.path.remove(path)


@contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Hold SIGTERM and SIGINT back from this thread until the block ends.

    A stop signal arriving while Broker's ``get`` waits aborts the process ("terminate called
    without an active exception", Broker 1.4): held, it is delivered when the wait is over
    and Python's handler runs as usual.
    """
    stops = {signal.SIGTERM, signal.SIGINT}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class BrokerTransport:
    """A native Broker peer of Zeek (``host:port``, Zeek's ``Broker::listen``)."""

    def __init__(
        self,
        host: str,
        port: int,
        topics: tuple[str, ...],
        *,
        broker_path: Sequence[str] = (),
        reconnect: float = 1.0,
        queue_size: int = 10000,
    ) -> None:
        self.broker = import_broker(broker_paths(broker_path))
        self.host, self.port = host, port
        self.stats = TransportStats()
        self._retry = reconnect
        self._endpoint = self.broker.Endpoint()
        # One topic at a time: Broker 1.4's make_subscriber fails on a list under Python >= 3.10
        # (it tests collections.Iterable); a single string and add_topic work everywhere.
        # Broker's default subscriber queue (20) would push back on Zeek between two polls.
        # No topics: a transport that only publishes (detections from `replay` or `run`).
        self._subscriber: Any = None
        if topics:
            self._subscriber = self._endpoint.make_subscriber(topics[0], queue_size)
            for topic in topics[1:]:
                self._subscriber.add_topic(topic, True)
        self._status = self._endpoint.make_status_subscriber(True)
        self._protocols = {
            "tcp": self.broker.Port.TCP,
            "udp": self.broker.Port.UDP,
            "icmp": self.broker.Port.ICMP,
            "?": self.broker.Port.Unknown,
        }
        self._encoders = {
            "count": self.broker.Count,
            "string": str,
            "bool": bool,
            "time": lambda v: v,
            "interval": lambda v: v,
            "addr": ipaddress.ip_address,
            "port": lambda v: self.broker.Port(v.number, self._protocols[v.protocol]),
            "transport_proto": self.broker.Enum,
            "vector of addr": lambda v: [ipaddress.ip_address(a) for a in v],
        }

    def start(self) -> None:
        """Peer with Zeek; Broker retries every ``reconnect`` seconds until it answers."""
        self._endpoint.peer_nosync(self.host, self.port, self._retry)

    def publish(self, topic: str, schema: EventSchema, args: tuple[Any, ...]) -> bool:
        """Publish one event: Broker buffers it and returns at once, peer or no peer
        (measured: 20,000 events in about 0.5 s with no peer and with one that reads nothing)."""
        values = [self._encoders[t](v) for (_, t), v in zip(schema.args, args, strict=True)]
        self._endpoint.publish(topic, self.broker.zeek.Event(schema.name, *values))
        self.stats.sent += 1
        return True

    def receive(self, max_events: int, timeout: float) -> list[tuple[str, ZeekEvent]]:
        """Received events, waiting up to ``timeout`` for them."""
        self._note_status()
        out: list[tuple[str, ZeekEvent]] = []
        if self._subscriber is None:
            return out
        with _stop_signals_held():
            received = self._subscriber.get(max_events, timeout)
        for topic, data in received:
            try:
                out.append((topic, event_from_data(self._plain(data))))
            except BrokerJsonError as exc:
                self.stats.bad_messages += 1
                self.stats.last_error = str(exc)
        self.stats.received += len(out)
        return out

    def close(self) -> None:
        """Leave the peering and shut the endpoint down."""
        self._endpoint.shutdown()

    def _note_status(self) -> None:
        sc = self.broker.SC
        for status in self._status.poll():
            if not isinstance(status, self.broker.Status):
                self.stats.last_error = str(status)  # a Broker error, e.g. peer unreachable
            elif status.code() == sc.PeerAdded:
                self.stats.connects += 1
            elif status.code() in (sc.PeerLost, sc.PeerRemoved):
                self.stats.disconnects += 1

    def _plain(self, value: Any) -> Any:
        """Broker's Python values as the plain values of ``events`` (Count → int, …)."""
        b = self.broker
        if isinstance(value, tuple | list):
            return [self._plain(v) for v in value]
        if isinstance(value, b.Count):
            return value.value
        if isinstance(value, b.Enum):
            return value.name
        if isinstance(value, b.Port):
            return Port(value.number(), _PROTOCOL_NAMES.get(str(value.get_type()), "?"))
        if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return str(value)
        return value


_PROTOCOL_NAMES = {"Protocol.TCP": "tcp", "Protocol.UDP": "udp", "Protocol.ICMP": "icmp"}
