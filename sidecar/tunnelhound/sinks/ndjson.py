"""Rotating NDJSON files, the sink that needs no server.

Files are named ``<prefix>-<UTC yyyymmddTHHMMSS>-<seq>.ndjson`` after the time they were
opened.  While being written a file carries an extra ``.part`` suffix; it is renamed on
rotation and on close, so a reader (Filebeat, Elastic Agent, ``jq``) that only picks
``*.ndjson`` never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from tunnelhound.normalize._kernels import count_newlines
from tunnelhound.normalize.frame import FlowFrame, ndjson_rows

__all__ = ["NdjsonSink"]

_STAMP = "%Y%m%dT%H%M%S"
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
# Documents from normalize may still hold numpy scalars; orjson writes them natively.
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_PIECE_ROWS = 512
"""Rows of a frame rendered and written at a time (~750 KB): the write then copies the piece
from cache instead of reading back a 10 MB block from memory (bench/README.md)."""


class NdjsonSink:
    """Append batches of JSON lines to rotating files under ``path``, or to stdout if ``path == "-"``.

    A new file is started when the current one has reached ``rotate_bytes`` or has been open
    ``rotate_seconds`` (by ``clock``).  Limits are checked between batches only, so a line is
    never split and a file may exceed ``rotate_bytes`` by up to one batch.  With
    ``max_files > 0`` the oldest finished files of this prefix beyond that number are deleted,
    including those left by earlier runs.  Rotation does not apply to stdout.

    Counters: ``lines_written``, ``bytes_written`` (newlines included) and ``files_rotated``
    (files finished because a limit was reached; the one finished by ``close`` is not counted).

    Not thread-safe: one sink per worker, each with its own ``prefix`` if they share a directory.
    """

    def __init__(
        self,
        path: str,
        *,
        rotate_bytes: int = 100 * 1024 * 1024,
        rotate_seconds: float = 3600,
        max_files: int = 0,
        prefix: str = "flows",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if rotate_bytes < 1:
            raise ValueError(f"rotate_bytes must be >= 1, got {rotate_bytes}")
        if rotate_seconds <= 0:
            raise ValueError(f"rotate_seconds must be > 0, got {rotate_seconds}")
        if max_files < 0:
            raise ValueError(f"max_files must be >= 0, got {max_files}")
        if not prefix or "/" in prefix or os.sep in prefix:
            raise ValueError(f"prefix must be a non-empty file name part, got {prefix!r}")
        self.path = path
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.max_files = max_files
        self.prefix = prefix
        self.lines_written = 0
        self.bytes_written = 0
        self.files_rotated = 0
        self._clock = clock
        self._stdout = path == "-"
        self._dir = Path(path)
        self._finished_name = re.compile(rf"{re.escape(prefix)}-\d{{8}}T\d{{6}}-\d+\.ndjson")
        self._fd: int | None = None
        self._part: Path | None = None
        self._file_bytes = 0
        self._opened_at = 0.0
        self._seq = 0
        self._closed = False
        # Frames are encoded into this one buffer, a piece at a time (it keeps the size of the
        # largest piece): a fresh block per frame costs as much in page faults as encoding it.
        self._buffer = bytearray()
        if not self._stdout:
            # Fail at startup, not on the first batch, if the directory cannot be made.
            self._dir.mkdir(parents=True, exist_ok=True)

    @property
    def current_path(self) -> Path | None:
        """The ``.part`` file being written, or ``None`` (no batch since the last rotation, stdout)."""
        return self._part

    def write(self, lines: Sequence[bytes]) -> None:
        """Append serialized JSON documents, one per line; each must not contain a newline."""
        if self._closed:
            raise ValueError("write to a closed NdjsonSink")
        if not lines:
            return
        self._append([(b"\n".join(lines) + b"\n", len(lines))], len(lines))

    def write_frame(self, frame: FlowFrame) -> None:
        """Write normalized flows, one ECS document per line."""
        if self._closed:
            raise ValueError("write to a closed NdjsonSink")
        if frame.n:
            pieces = self._pieces(frame)
            try:
                self._append(pieces, frame.n)
            finally:
                pieces.close()  # releases the view of the buffer even when a write failed

    def _pieces(self, frame: FlowFrame) -> Generator[tuple[memoryview, int], None, None]:
        """The frame's lines a piece at a time, each rendered into the one reused buffer."""
        rows = ndjson_rows(frame)
        for start in range(0, frame.n, _PIECE_ROWS):
            stop = min(start + _PIECE_ROWS, frame.n)
            size = rows.block_into(self._buffer, start, stop)
            with memoryview(self._buffer) as whole, whole[:size] as piece:
                yield piece, stop - start

    def _append(self, pieces: Iterable[tuple[bytes | memoryview, int]], lines: int) -> None:
        """Write one batch of ``lines`` lines given as (block, lines in it) pieces.

        A file gets the whole batch or none of it; on stdout the pieces before a failing one
        are out (each of them whole lines).
        """
        size = 0
        if self._stdout:
            for data, count in pieces:
                _check_lines(data, count)
                sys.stdout.buffer.write(data)
                size += len(data)
        else:
            fd: int | None = None
            try:
                for data, count in pieces:
                    _check_lines(data, count)
                    if fd is None:
                        # Opened for the first good piece: a rejected batch leaves no file.
                        self._rotate_if_due()
                        fd = self._fd if self._fd is not None else self._open()
                    _write_all(fd, data)
                    size += len(data)
            except (OSError, ValueError):
                # Disk full or a bad line mid-batch: cut the partial batch so the next one
                # starts on a line.
                if fd is not None:
                    os.ftruncate(fd, self._file_bytes)
                raise
            self._file_bytes += size
            # Finish a full file now rather than on the next batch, so readers get it promptly.
            self._rotate_if_due()
        self.lines_written += lines
        self.bytes_written += size

    def write_docs(self, docs: Sequence[dict[str, Any]]) -> None:
        """Serialize documents with orjson and :meth:`write` them."""
        self.write([orjson.dumps(doc, option=_DUMPS_OPTIONS) for doc in docs])

    def flush(self) -> None:
        """Push stdout's buffer; for files, finish the current one if its time is up.

        File writes go straight to the descriptor, so there is no buffer to flush; calling
        this periodically lets an idle file be renamed without waiting for the next batch.
        """
        if self._closed:
            return
        if self._stdout:
            sys.stdout.buffer.flush()
        else:
            self._rotate_if_due()

    def close(self) -> None:
        """Finish the current file (rename it to ``.ndjson``); stdout is flushed, not closed."""
        if self._closed:
            return
        if self._stdout:
            sys.stdout.buffer.flush()
        else:
            self._finish()
        self._closed = True

    def __enter__(self) -> NdjsonSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ files

    def _rotate_if_due(self) -> None:
        if self._fd is None:
            return
        if self._file_bytes >= self.rotate_bytes or self._clock() - self._opened_at >= self.rotate_seconds:
            self._finish()
            self.files_rotated += 1

    def _open(self) -> int:
        now = self._clock()
        stamp = time.strftime(_STAMP, time.gmtime(now))
        while True:
            name = f"{self.prefix}-{stamp}-{self._seq:06d}.ndjson"
            self._seq += 1
            final = self._dir / name
            part = self._dir / f"{name}.part"
            # A restart within the same second may meet names of the previous run: skip them.
            if final.exists():
                continue
            try:
                fd = os.open(part, _OPEN_FLAGS, 0o644)
            except FileExistsError:
                continue
            break
        self._fd, self._part = fd, part
        self._file_bytes = 0
        self._opened_at = now
        return fd

    def _finish(self) -> None:
        """Close and rename the current file, then prune; nothing to do if none is open."""
        if self._fd is None or self._part is None:
            return
        fd, part = self._fd, self._part
        self._fd = self._part = None
        try:
            # A file named *.ndjson is promised whole: after a power loss, a renamed but
            # unsynced file could come back empty while readers trust it.
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(part, part.with_suffix(""))
        self._prune()

    def _prune(self) -> None:
        if self.max_files == 0:
            return
        # Names start with the UTC open time, so name order is age order.
        finished = sorted(name for name in os.listdir(self._dir) if self._finished_name.fullmatch(name))
        for name in finished[: -self.max_files]:
            # Someone else (a shipper, an operator) may have removed it meanwhile.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._dir / name)


def _check_lines(data: bytes | memoryview, lines: int) -> None:
    # One C-speed count of the newlines catches a pretty-printed document that would break
    # every reader (memchr: bytes.count goes a byte at a time).
    if count_newlines(data) != lines:
        raise ValueError("a line contains a newline; NDJSON documents must be serialized on one line")


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until everything is written; a regular file may accept less at once."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
