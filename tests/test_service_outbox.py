"""The worker's outbox: bounded in bytes, drops counted, everything sent on close."""

from __future__ import annotations

import threading
import time

import pytest

from tunnelhound.service.outbox import Outbox


class Pipe:
    """A send callback that blocks until released (the analysis busy) and records what came."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.open = threading.Event()

    def send(self, data: bytes) -> None:
        self.open.wait(timeout=10)
        self.received.append(data)


def _wait_until(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def test_a_full_outbox_drops_frames_and_counts_their_rows_and_keeps_order() -> None:
    pipe = Pipe()
    box = Outbox(pipe.send, limit=100)
    assert box.put_frame(b"a" * 10, rows=1)  # taken by the thread, which now waits on the pipe
    _wait_until(lambda: box.queued_bytes == 10)
    assert box.put_frame(b"b" * 60, rows=6)
    assert box.put_frame(b"c" * 30, rows=3)  # exactly at the limit: 100 bytes queued
    assert not box.put_frame(b"d" * 1, rows=2)  # one byte over: dropped, not blocked
    assert not box.put_frame(b"e" * 50, rows=5)
    assert (box.dropped_frames, box.dropped_rows, box.sent, box.queued_bytes) == (2, 7, 3, 100)
    box.put_control(b"stats" * 100)  # control messages pass the limit: they must arrive
    pipe.open.set()
    box.close()
    assert pipe.received == [b"a" * 10, b"b" * 60, b"c" * 30, b"stats" * 100]
    assert box.queued_bytes == 0


def test_one_frame_bigger_than_the_limit_goes_when_the_queue_is_empty() -> None:
    pipe = Pipe()
    pipe.open.set()
    box = Outbox(pipe.send, limit=10)
    assert box.put_frame(b"x" * 50, rows=1)
    box.close()
    assert pipe.received == [b"x" * 50] and box.dropped_rows == 0


def test_after_hold_a_full_outbox_waits_instead_of_dropping_and_close_drains_it() -> None:
    pipe = Pipe()
    box = Outbox(pipe.send, limit=20)
    box.hold()  # SIGTERM: the final drain must not lose a frame
    frames = [bytes([i]) * 10 for i in range(6)]
    putter = threading.Thread(target=lambda: [box.put_frame(f, rows=1) for f in frames])
    putter.start()
    _wait_until(lambda: box.queued_bytes == 20)
    time.sleep(0.1)
    assert putter.is_alive() and box.queued_bytes <= 20  # waiting for room, within the bound
    pipe.open.set()
    putter.join(timeout=5)
    box.close()
    assert pipe.received == frames
    assert (box.dropped_frames, box.dropped_rows, box.sent) == (0, 0, 6)


def test_a_broken_pipe_is_raised_in_the_worker() -> None:
    def broken(_data: bytes) -> None:
        raise BrokenPipeError("the service is gone")

    box = Outbox(broken)
    box.put_frame(b"x", rows=1)
    _wait_until(lambda: box.queued_bytes == 0)
    with pytest.raises(BrokenPipeError):
        box.put_frame(b"y", rows=1)
    with pytest.raises(BrokenPipeError):
        box.close()
