"""Background delivery for remote alert sinks: a bounded queue, one thread, retries with backoff.

The caller's thread only appends to the queue (:meth:`Deliverer.put` never waits); a full queue
drops the new item and counts its alerts as ``dropped``.  The thread sends items in order with
the sink's ``send`` callable:

* it returns: the item's alerts are ``sent``;
* it raises :class:`DeliveryError` with ``permanent=True`` (the receiver refused the content,
  re-sending cannot help): ``failed``;
* it raises :class:`DeliveryError` (temporary) or ``OSError`` (connection refused, timeout):
  the same item is tried again after ``min(backoff_max, backoff_initial * 2**n)`` seconds with
  equal jitter, counted in ``retried``, until ``retry_seconds`` have passed since its first
  attempt; then ``failed``.  Order is kept: later items wait behind it (a down server fails
  them all anyway, and an e-mail digest must not overtake the alerts it follows).

:meth:`Deliverer.close` keeps sending for at most ``close_timeout`` seconds; what is still
queued then is counted ``dropped``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tunnelhound.sinks.alertsink import SinkStats

__all__ = ["Deliverer", "DeliveryError", "DeliveryPolicy"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_LOG_EVERY_S = 30.0
# How often the thread wakes without work, to run on_idle (e-mail digests fall due on it).
_IDLE_TICK_S = 0.2


class DeliveryError(Exception):
    """A send failed; ``permanent`` means retrying the same content cannot succeed."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        """Seconds the receiver asked us to wait (HTTP Retry-After), capped by backoff_max."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryPolicy:
    """Queue bound, retry time and backoff shared by the remote alert sinks."""

    queue_size: int = 10000
    retry_seconds: float = 3600.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    close_timeout: float = 5.0

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (equal jitter)."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** min(failures - 1, 30))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(slots=True)
class _Item(Generic[T]):
    payload: T
    alerts: int
    first_try: float | None = None


class Deliverer(Generic[T]):
    """Send queued items on a thread of their own; see the module docstring for the rules.

    ``on_idle`` runs on the delivery thread between items and at least every 0.2 s while the
    queue is empty (the e-mail sink moves a due digest into the queue from there).
    """

    def __init__(
        self,
        name: str,
        send: Callable[[T], None],
        stats: SinkStats,
        policy: DeliveryPolicy,
        *,
        on_idle: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.policy = policy
        self._send = send
        self._stats = stats
        self._on_idle = on_idle
        self._clock = clock
        self._queue: deque[_Item[T]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._stop = threading.Event()
        self._busy = False
        self._last_log = -_LOG_EVERY_S
        self._retry_after: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"alert-{name}", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Alerts waiting in the queue, the one being sent included."""
        with self._cond:
            return sum(item.alerts for item in self._queue)

    def put(self, payload: T, alerts: int = 1) -> bool:
        """Queue ``payload`` (carrying ``alerts`` alerts) without waiting; False if dropped."""
        with self._cond:
            if self._closing or len(self._queue) >= self.policy.queue_size:
                self._stats.add("dropped", alerts)
                return False
            self._queue.append(_Item(payload, alerts))
            self._cond.notify()
        return True

    def close(self) -> None:
        """Send for at most ``close_timeout`` s, then stop; the rest is counted ``dropped``."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify()
        deadline = time.monotonic() + self.policy.close_timeout
        with self._cond:
            while (self._queue or self._busy) and time.monotonic() < deadline:
                self._cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        self._stop.set()
        with self._cond:
            self._cond.notify()
        # A send in progress is bounded by the sink's socket timeout.
        self._thread.join()
        with self._cond:
            left = sum(item.alerts for item in self._queue)
            self._queue.clear()
        if left:
            self._stats.add("dropped", left)
            log.warning("alert sink %s closed with %d alerts undelivered", self.name, left)

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._idle()
            with self._cond:
                if not self._queue:
                    if self._closing:
                        self._cond.notify_all()
                    self._cond.wait(_IDLE_TICK_S)
                    continue
                item = self._queue[0]
                self._busy = True
            try:
                done = self._attempt(item)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if done:
                failures = 0
                with self._cond:
                    self._queue.popleft()
                continue
            failures += 1
            self._stop.wait(self._delay(failures))

    def _attempt(self, item: _Item[T]) -> bool:
        """One send; True when the item is finished (sent or failed for good)."""
        now = self._clock()
        if item.first_try is None:
            item.first_try = now
        try:
            self._send(item.payload)
        except (DeliveryError, OSError) as err:
            permanent = isinstance(err, DeliveryError) and err.permanent
            if permanent or now - item.first_try >= self.policy.retry_seconds:
                self._stats.add("failed", item.alerts)
                self._warn("%s: gave up on %d alerts: %s", self.name, item.alerts, _one_line(err))
                return True
            if isinstance(err, DeliveryError) and err.retry_after is not None:
                self._retry_after = err.retry_after
            self._stats.add("retried", item.alerts)
            self._warn("%s: delivery failed, retrying: %s", self.name, _one_line(err))
            return False
        except Exception:  # a bug in one sink must not kill its thread and queue
            log.exception("alert sink %s: unexpected error; %d alerts failed", self.name, item.alerts)
            self._stats.add("failed", item.alerts)
            return True
        self._stats.add("sent", item.alerts)
        return True

    def _delay(self, failures: int) -> float:
        delay = self.policy.backoff(failures)
        if self._retry_after is not None:
            delay = max(delay, min(self._retry_after, self.policy.backoff_max))
            self._retry_after = None
        return delay

    def _idle(self) -> None:
        if self._on_idle is None:
            return
        try:
            self._on_idle()
        except Exception:
            log.exception("alert sink %s: on_idle failed", self.name)

    def _warn(self, msg: str, *args: object) -> None:
        # A down server fails every attempt: one line per 30 s, the counters hold the rest.
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            log.warning(msg, *args)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:300]
