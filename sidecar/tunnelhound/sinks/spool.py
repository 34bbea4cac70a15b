"""A bounded, append-only disk spool of bulk bodies: nothing is sent before it is on disk.

Layout: one file per batch under the spool directory, ``<20-digit id>.batch``.  Each file is
a 24-byte header followed by the payload::

    magic  b"THSP"        4 bytes
    version               u8   (1)
    reserved              3 bytes
    items                 u32  (documents in the batch, for drop counters)
    length                u64  (payload bytes)
    crc32                 u32  (of the payload)

Why one file per batch rather than length-prefixed records in big segments: an ack is one
``unlink`` (no compaction, no rewrite of a segment whose head is acknowledged but whose tail is
not), batches can be acknowledged out of order by several senders, the directory listing *is*
the index after a crash, and a torn write can only ever damage the batch being written.  The
cost, one inode and one directory fsync per batch, is small at bulk-sized batches (thousands of
documents, a few fsyncs a second).

A write goes to ``<id>.tmp``, is fsynced, renamed to ``<id>.batch`` and the directory is
fsynced: a ``.batch`` file is whole unless the disk lied.  On open, ``.tmp`` leftovers (a crash
mid-write, never reported as written) are removed, and ``.batch`` files whose header, length
or CRC do not match (a torn or truncated file) are renamed to ``.torn`` and counted in
``torn``; neither stops the spool.

Full policy, when a new batch would take the spool over ``max_bytes``:

* ``block``: the writer waits for acks to free space, up to ``block_timeout`` seconds, then
  raises :class:`SpoolFullError` (back-pressure reaches the decoder instead of losing data).
* ``drop_oldest``: the oldest pending batches that no sender holds are deleted until the new
  one fits, counted in ``dropped`` (batches) and ``dropped_items`` (documents).  A batch
  :meth:`Spool.claim`-ed by a sender is in flight (being sent, or waiting out a retry) and is
  never dropped: it may be landing in Elasticsearch right now, so dropping it would count as
  lost a batch that is not, and free no memory the sender holds.  When only in-flight batches
  are left (at most one per sender), the new batch is written beyond the bound.

A single batch larger than ``max_bytes`` is accepted when the spool is empty, so an oversized
batch cannot wait forever.

Read-back cache (``cache_bytes``, off by default): payloads just appended are also kept in
memory, up to ``cache_bytes`` in all, and :meth:`Spool.read` hands them out without reading
the file back and checking its CRC again.  An entry goes in only once its file is durable
(fsync, rename, directory fsync), so the cache never lets a sender see a batch that is not on
disk; it leaves with the batch (ack, drop, torn).  A payload that does not fit is not cached
(the oldest pending batches, which senders claim first, stay in; after a crash everything is
read from disk).
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from tunnelhound.errors import TunnelhoundError

__all__ = ["FULL_POLICIES", "Spool", "SpoolBatch", "SpoolFullError"]

FULL_POLICIES = ("block", "drop_oldest")
_HEADER = struct.Struct("<4sB3xIQI")
_MAGIC = b"THSP"
_VERSION = 1
_NAME = re.compile(r"(\d{20})\.batch")
_TMP = re.compile(r"(\d{20})\.tmp")
_ANY_ID = re.compile(r"(\d{20})\.(?:batch|tmp|torn)")
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


class SpoolFullError(TunnelhoundError):
    """The spool stayed full for longer than the block timeout (policy ``block``)."""


@dataclass(frozen=True, slots=True)
class SpoolBatch:
    """One pending batch: its id (increasing with write order), document count and file size."""

    batch_id: int
    items: int
    size: int


class Spool:
    """Append-only spool of batches in ``directory``, bounded by ``max_bytes`` on disk.

    Thread-safe: a writer may :meth:`append` while sender threads :meth:`claim`, :meth:`read`,
    :meth:`ack` and :meth:`release`.

    Counters: ``bytes`` and ``batches`` (pending now, headers included), ``dropped`` and
    ``dropped_items`` (deleted unsent by ``drop_oldest``), ``torn`` (damaged files skipped),
    ``blocked_seconds`` (time writers spent waiting under ``block``).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 1024 * 1024 * 1024,
        full_policy: str = "block",
        block_timeout: float = 60.0,
        cache_bytes: int = 0,
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        if full_policy not in FULL_POLICIES:
            raise ValueError(f"full_policy must be one of {', '.join(FULL_POLICIES)}, got {full_policy!r}")
        if block_timeout < 0:
            raise ValueError(f"block_timeout must be >= 0, got {block_timeout}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.full_policy = full_policy
        self.block_timeout = block_timeout
        self.dropped = 0
        self.dropped_items = 0
        self.torn = 0
        self.blocked_seconds = 0.0
        self._cond = threading.Condition()
        self._pending: dict[int, SpoolBatch] = {}
        self._in_flight: set[int] = set()
        self._bytes = 0
        self.cache_bytes = max(0, cache_bytes)
        self._cache: dict[int, builtins.bytes] = {}
        self._cached = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        self._next_id = 1
        self._recover()

    # ------------------------------------------------------------------ counters

    @property
    def bytes(self) -> int:
        """Bytes of pending batch files (headers included)."""
        return self._bytes

    @property
    def batches(self) -> int:
        """Number of pending (unacknowledged) batches."""
        return len(self._pending)

    # ------------------------------------------------------------------ API

    def append(self, payload: builtins.bytes, items: int = 0, *, timeout: float | None = None) -> int:
        """Write one batch durably (fsync before returning) and return its id.

        ``timeout`` overrides ``block_timeout`` for this call (0: fail at once if full).
        Raises :class:`SpoolFullError` when the ``block`` policy times out.
        """
        size = _HEADER.size + len(payload)
        header = _HEADER.pack(_MAGIC, _VERSION, items, len(payload), zlib.crc32(payload))
        with self._cond:
            self._make_room(size, self.block_timeout if timeout is None else timeout)
            batch_id = self._next_id
            self._next_id += 1
            # Reserve the space now so concurrent writers cannot both squeeze into the last gap.
            self._bytes += size
        try:
            self._write_file(batch_id, header, payload)
        except BaseException:
            with self._cond:
                self._bytes -= size
                self._cond.notify_all()
            raise
        with self._cond:
            self._pending[batch_id] = SpoolBatch(batch_id, items, size)
            if self._cached + len(payload) <= self.cache_bytes:
                self._cache[batch_id] = payload
                self._cached += len(payload)
            self._cond.notify_all()
        return batch_id

    def pending(self) -> list[SpoolBatch]:
        """Unacknowledged batches, oldest first."""
        with self._cond:
            return [self._pending[k] for k in sorted(self._pending)]

    def claim(self) -> SpoolBatch | None:
        """The oldest pending batch not in flight, now marked in flight; None if there is none.

        In flight until :meth:`ack` (done) or :meth:`release` (give it back unsent): no other
        claim returns it and ``drop_oldest`` does not drop it.
        """
        with self._cond:
            free = [k for k in self._pending if k not in self._in_flight]
            if not free:
                return None
            batch_id = min(free)
            self._in_flight.add(batch_id)
            return self._pending[batch_id]

    def release(self, batch_id: int) -> None:
        """Give a claimed batch back (not acknowledged): claimable, and droppable, again."""
        with self._cond:
            self._in_flight.discard(batch_id)

    @property
    def in_flight(self) -> int:
        """Number of claimed batches (being sent)."""
        return len(self._in_flight)

    def read(self, batch_id: int) -> builtins.bytes | None:
        """The payload of a pending batch, or None if it is gone (acked or dropped meanwhile).

        A batch damaged since it was written is moved aside as torn, counted, and gives None.
        """
        with self._cond:
            cached = self._cache.get(batch_id)
        if cached is not None:
            return cached
        path = self._path(batch_id)
        try:
            payload = _read_payload(path)
        except FileNotFoundError:
            return None
        if payload is None:
            with self._cond:
                self._forget(batch_id)
                self.torn += 1
            with contextlib.suppress(FileNotFoundError):
                os.rename(path, path.with_suffix(".torn"))
        return payload

    def ack(self, batch_id: int) -> None:
        """Delete a batch whose every item is resolved; a batch already gone is ignored."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(batch_id))
        with self._cond:
            self._forget(batch_id)

    def wait_pending(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until some batch is pending; True if one is."""
        with self._cond:
            return self._cond.wait_for(lambda: bool(self._pending), timeout)

    # ------------------------------------------------------------------ internals

    def _path(self, batch_id: int) -> Path:
        return self.directory / f"{batch_id:020d}.batch"

    def _forget(self, batch_id: int) -> None:
        """Drop a batch from the books (caller holds the lock)."""
        self._in_flight.discard(batch_id)
        cached = self._cache.pop(batch_id, None)
        if cached is not None:
            self._cached -= len(cached)
        batch = self._pending.pop(batch_id, None)
        if batch is not None:
            self._bytes -= batch.size
            self._cond.notify_all()

    def _make_room(self, size: int, timeout: float) -> None:
        """Apply the full policy until ``size`` more bytes fit (caller holds the lock)."""

        def fits() -> bool:
            return self._bytes + size <= self.max_bytes or self._bytes == 0

        if fits():
            return
        if self.full_policy == "drop_oldest":
            # Oldest first, never one in flight; if only those are left, write beyond the bound.
            victims = sorted(k for k in self._pending if k not in self._in_flight)
            for victim in victims:
                if fits():
                    break
                oldest = self._pending[victim]
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path(oldest.batch_id))
                self._forget(oldest.batch_id)
                self.dropped += 1
                self.dropped_items += oldest.items
            return
        start = time.monotonic()
        ok = self._cond.wait_for(fits, timeout)
        self.blocked_seconds += time.monotonic() - start
        if not ok:
            raise SpoolFullError(
                f"spool {self.directory} full: {self._bytes} of {self.max_bytes} bytes pending for "
                f"{timeout:g} s (is Elasticsearch reachable? raise the spool size or use drop_oldest)"
            )

    def _write_file(self, batch_id: int, header: builtins.bytes, payload: builtins.bytes) -> None:
        tmp = self.directory / f"{batch_id:020d}.tmp"
        fd = os.open(tmp, _OPEN_FLAGS, 0o600)
        try:
            _write_all(fd, header, payload)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.close(fd)
        os.rename(tmp, self._path(batch_id))
        # The rename itself must survive a power loss, or a synced batch could vanish.
        _fsync_dir(self.directory)

    def _recover(self) -> None:
        """Find the batches a previous run left, skipping torn ones (counted, kept as .torn)."""
        for name in sorted(os.listdir(self.directory)):
            path = self.directory / name
            any_id = _ANY_ID.fullmatch(name)
            if any_id is not None:
                # Never reuse an id, not even a torn one's: names stay unique and age-ordered.
                self._next_id = max(self._next_id, int(any_id.group(1)) + 1)
            if _TMP.fullmatch(name):
                # Never reported as written: the caller of that append died before it returned.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            match = _NAME.fullmatch(name)
            if match is None:
                continue
            data = path.read_bytes()
            payload = _check(data)
            if payload is None:
                self.torn += 1
                os.rename(path, path.with_suffix(".torn"))
                continue
            items = _HEADER.unpack_from(data)[2]
            batch_id = int(match.group(1))
            self._pending[batch_id] = SpoolBatch(batch_id, items, len(data))
            self._bytes += len(data)


def _check(data: bytes) -> bytes | None:
    """The payload of a whole batch file, or None if its header, length or CRC is wrong."""
    if len(data) < _HEADER.size:
        return None
    magic, version, _items, length, crc = _HEADER.unpack_from(data)
    if magic != _MAGIC or version != _VERSION or len(data) != _HEADER.size + length:
        return None
    payload = data[_HEADER.size :]
    return payload if zlib.crc32(payload) == crc else None


def _read_payload(path: Path) -> bytes | None:
    """A batch file's payload read straight into its own buffer (no copy of the whole file),
    or None if its header, length or CRC is wrong."""
    with open(path, "rb", buffering=0) as fh:
        head = fh.read(_HEADER.size)
        payload = fh.read()
    if len(head) < _HEADER.size:
        return None
    magic, version, _items, length, crc = _HEADER.unpack(head)
    if magic != _MAGIC or version != _VERSION or len(payload) != length or zlib.crc32(payload) != crc:
        return None
    return payload


def _write_all(fd: int, *pieces: bytes) -> None:
    """``os.writev`` until everything is written; a regular file may accept less at once.

    The pieces go to the kernel as they are: no joined copy of header and payload.
    """
    views = [memoryview(p) for p in pieces if p]
    while views:
        done = os.writev(fd, views)
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if done:
            views[0] = views[0][done:]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
