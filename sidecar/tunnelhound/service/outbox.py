"""A worker's messages to the service, written to the pipe by a thread of their own.

Without it the worker's receive loop writes each frame into the pipe itself and blocks
whenever the analysis process is busy (a rule window closing, a state save): meanwhile no
datagram is read, and the kernel drops what overflows the socket buffer.  With it the loop
only queues the bytes; the thread writes them (``send_bytes`` releases the GIL while it
waits), so the loop keeps receiving.

The queue is bounded in bytes (:data:`DEFAULT_LIMIT`).  When the analysis falls that far
behind, frames are dropped, never flows: the flow sinks already have them.  Dropped rows
are counted (``tunnelhound_analysis_dropped_rows_total``), the way a bounded queue should
(STYLE.md, errors).  Control messages (ready, stats, done) are never dropped, and after
:meth:`Outbox.hold` (SIGTERM: the final drain) frames are not either: ``put`` waits for
room instead, since the service is stopping and nothing new is being received.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Final

__all__ = ["DEFAULT_LIMIT", "Outbox"]

DEFAULT_LIMIT: Final = 256 * 1024 * 1024
"""Bytes queued at most: about 800,000 flows of 333 bytes, 8 s at 100,000 flows/s."""


class Outbox:
    """A FIFO of byte messages, bounded in bytes, emptied into ``send`` by a daemon thread.

    ``send`` failing (the service is gone) stops the thread; the next :meth:`put` or
    :meth:`close` raises that error in the caller.
    """

    def __init__(self, send: Callable[[bytes], None], limit: int = DEFAULT_LIMIT) -> None:
        self._send = send
        self.limit = limit
        self._queue: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._hold = False
        self._error: BaseException | None = None
        self.queued_bytes = 0
        self.sent = 0
        """Frames queued (and so sent, unless the service went away)."""
        self.dropped_frames = 0
        self.dropped_rows = 0
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    def put_frame(self, data: bytes, rows: int) -> bool:
        """Queue a frame of ``rows`` flows; False (and counted) when the queue is full."""
        with self._cond:
            self._raise_error()
            if self.queued_bytes + len(data) > self.limit and self._queue and not self._hold:
                self.dropped_frames += 1
                self.dropped_rows += rows
                return False
            self._wait_for_room(len(data))
            self._append(data)
            self.sent += 1
            return True

    def put_control(self, data: bytes) -> None:
        """Queue a message that must arrive (never dropped; it may exceed the limit)."""
        with self._cond:
            self._raise_error()
            self._append(data)

    def hold(self) -> None:
        """From now on :meth:`put_frame` waits for room instead of dropping (the final drain)."""
        with self._cond:
            self._hold = True

    def close(self) -> None:
        """Send everything queued, then stop the thread; raises the thread's send error."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        with self._cond:
            self._raise_error()

    def _append(self, data: bytes) -> None:
        self._queue.append(data)
        self.queued_bytes += len(data)
        self._cond.notify_all()

    def _wait_for_room(self, size: int) -> None:
        # Only in hold mode can we get here over the limit: one frame may always go into
        # an empty queue (a frame bigger than the limit must not wait forever).
        while self._queue and self.queued_bytes + size > self.limit:
            self._cond.wait()
            self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return  # closing, and everything went out
                data = self._queue[0]
            try:
                self._send(data)  # outside the lock: the worker keeps queueing meanwhile
            except BaseException as exc:  # the pipe broke: hand the error to the worker
                with self._cond:
                    self._error = exc
                    self._queue.clear()
                    self.queued_bytes = 0
                    self._cond.notify_all()
                return
            with self._cond:
                self._queue.popleft()
                self.queued_bytes -= len(data)
                self._cond.notify_all()
