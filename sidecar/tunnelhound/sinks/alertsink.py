"""What every alert sink is: the :class:`AlertSink` protocol and its :class:`SinkStats` counters.

An alert is the plain dict of ``/work/alert-contract.md`` (``elastic/fields/alert.yml``).  A
sink must return from :meth:`AlertSink.write_alerts` at once (remote delivery happens on a
background thread, see :mod:`tunnelhound.sinks.delivery`) and never raise because a server is
down; failures are counted in its stats instead.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["AlertSink", "SinkStats"]


class AlertSink(Protocol):
    """Anything that takes alert documents."""

    name: str
    """Short sink name (``syslog``, ``webhook`` ...): the prefix of its counters in a fan-out."""

    def write_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Take alerts; returns quickly and never raises on a remote failure."""

    def close(self) -> None:
        """Flush what can be flushed within the sink's close timeout, then release."""

    def stats(self) -> dict[str, int]:
        """Counters: at least ``sent``, ``failed`` and ``dropped`` (alerts, not messages)."""


class SinkStats:
    """Thread-safe alert counters of one sink.

    ``sent``: delivered (acknowledged by the receiver where the protocol has acknowledgements);
    ``failed``: given up (permanent refusal, or retried past the retry time);
    ``dropped``: never attempted (queue full, sink closing with alerts still queued);
    ``retried``: attempts that failed and were tried again.  Sinks may add their own
    (``rate_limited`` for e-mail) through :meth:`add`.
    """

    __slots__ = ("_counts", "_lock")

    def __init__(self, *extra: str) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(("sent", "failed", "dropped", "retried", *extra), 0)

    def add(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to ``counter`` (created on first use)."""
        with self._lock:
            self._counts[counter] = self._counts.get(counter, 0) + n

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter."""
        with self._lock:
            return dict(self._counts)

    def __getitem__(self, counter: str) -> int:
        with self._lock:
            return self._counts.get(counter, 0)
