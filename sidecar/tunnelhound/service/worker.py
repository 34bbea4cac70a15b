"""One collector worker: receive → allowlist → decode → normalize → stitch → flow sinks.

A :class:`Worker` owns its UDP sockets (shared with its siblings through SO_REUSEPORT), its
decoder state and its flow sinks.  It runs in the main process when ``service.workers`` is 1,
and in a child process of its own otherwise (:func:`worker_main`), talking to the service
over one duplex pipe: frames and snapshots up (through an :class:`~.outbox.Outbox`, so the
receive loop never waits for the pipe), reload and stop requests down.

Templates: worker ``i`` persists to ``<state_dir>/worker-<i>/decoder-state.json`` and, on
start, also loads every other worker's file and the single-process file before its own.  The
kernel may hand an exporter to another worker after a restart (the SO_REUSEPORT hash depends
on the number of sockets), and that worker must decode its data at once all the same.
"""

from __future__ import annotations

import logging
import pickle
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any

from tunnelhound.config import Config
from tunnelhound.errors import TunnelhoundError
from tunnelhound.gc_tuning import tune_gc
from tunnelhound.logs import setup_logging
from tunnelhound.normalize.frame import FlowFrame
from tunnelhound.pipeline import STATE_FILE, FanOut, FlowPipeline, FlowSink, open_sinks
from tunnelhound.service import wire
from tunnelhound.service.outbox import Outbox
from tunnelhound.service.profiling import profiled
from tunnelhound.service.snapshot import WorkerSnapshot, take_snapshot
from tunnelhound.sources.udp import UdpListener

__all__ = ["ReadyInfo", "Worker", "WorkerSpec", "worker_main"]

log = logging.getLogger("tunnelhound.service")

BATCH_DATAGRAMS = 1024
"""Most datagrams a worker takes per wakeup (about 28,000 records), read without waiting
again.  Under load a round then costs one ``select`` and one normalize/stitch/render pass
per 1,024 datagrams instead of per 256; when idle, rounds are as small as the traffic."""
POLL_SECONDS = 0.2
"""Longest wait for datagrams; bounds how late a stop, reload or snapshot is noticed."""


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a worker needs to start (picklable, for a spawned child)."""

    index: int
    workers: int
    config: Config
    binds: tuple[tuple[str, int], ...]
    forward: bool
    """Hand stitched frames to the analysis (some analysis stage is registered)."""

    @property
    def state_dir(self) -> Path:
        """Where this worker keeps its templates."""
        root = Path(self.config.state_dir)
        return root if self.workers == 1 else root / f"worker-{self.index}"


@dataclass(frozen=True, slots=True)
class ReadyInfo:
    """What a started worker tells the service (for the banner and the buffer warning)."""

    index: int
    addresses: tuple[tuple[str, int], ...]
    restored: bool
    receive_buffer: int
    buffer_capped: bool


Deliver = Callable[[FlowFrame], bool]
"""Hands a frame to the analysis; False when it had to be dropped (the outbox was full)."""


class _FrameTap:
    """A flow sink that hands each frame to a callback (the analysis, or the pipe to it)."""

    def __init__(self, deliver: Deliver) -> None:
        self.deliver = deliver
        self.frames = 0
        """Frames delivered."""
        self.dropped_rows = 0
        """Rows of the frames that could not be delivered."""

    def write_frame(self, frame: FlowFrame) -> None:
        """Deliver the frame, or count its rows as dropped."""
        if self.deliver(frame):
            self.frames += 1
        else:
            self.dropped_rows += frame.n

    def close(self) -> None:
        """Nothing to release: the analysis is closed by the service after every worker."""


class Worker:
    """Sockets, pipeline and sinks of one worker; :meth:`step` runs one receive → write round."""

    def __init__(self, spec: WorkerSpec, deliver: Deliver) -> None:
        self.spec = spec
        config = spec.config
        sink: FlowSink = open_sinks(config, worker=spec.index if spec.workers > 1 else None)
        self.tap = _FrameTap(deliver)
        if spec.forward:
            sink = FanOut([sink, self.tap])
        try:
            self.pipeline = FlowPipeline(config, sink, state_dir=spec.state_dir)
            restored = self._restore_siblings()
            self.listener = UdpListener(
                list(spec.binds), receive_buffer=config.inputs.udp.receive_buffer, reuse_port=spec.workers > 1
            )
        except BaseException:
            sink.close()
            raise
        self.reloads = self.reload_failures = 0
        self.ready = ReadyInfo(
            spec.index,
            tuple(self.listener.addresses),
            self.pipeline.restored or restored,
            self.listener.effective_receive_buffer // 2,
            self.listener.buffer_capped,
        )

    def _restore_siblings(self) -> bool:
        """Merge the other workers' persisted templates in, then this worker's own again (it wins)."""
        root = Path(self.spec.config.state_dir)
        own = self.spec.state_dir / STATE_FILE
        others = [p for p in [root / STATE_FILE, *sorted(root.glob(f"worker-*/{STATE_FILE}"))] if p != own]
        restored = False
        for path in others:
            restored |= self.pipeline.sessions.load(path)
        if restored:
            self.pipeline.sessions.load(own)
        return restored

    def step(self, timeout: float = POLL_SECONDS) -> int:
        """Receive one batch (waiting up to ``timeout``) and run it through; returns datagrams."""
        batch = self.listener.recv_batch(BATCH_DATAGRAMS, timeout=timeout)
        if batch:
            self.pipeline.process(batch)
        return len(batch)

    def drain(self) -> None:
        """Process everything the kernel has already accepted: nothing delivered is lost."""
        while self.step(timeout=0):
            pass

    def reload(self, config: Config) -> None:
        """Apply the parts of ``config`` that are safe to change while running (the allowlist)."""
        try:
            for hook in WORKER_RELOAD_HOOKS:
                hook(self.pipeline, config)
        except (TunnelhoundError, ValueError) as exc:
            self.reload_failures += 1
            log.error("reload failed in worker %d, keeping what applied: %s", self.spec.index, exc)
            return
        self.reloads += 1
        log.info("reloaded", extra={"worker": self.spec.index})

    def snapshot(self) -> WorkerSnapshot:
        """Counters now."""
        return take_snapshot(
            self.spec.index,
            self.pipeline,
            self.listener,
            (self.tap.frames, self.tap.dropped_rows),
            (self.reloads, self.reload_failures),
        )

    def close(self) -> None:
        """Flush the stitcher into the sinks, persist templates, close sinks and sockets."""
        try:
            self.pipeline.close()
        finally:
            self.listener.close()


def _reload_allowlist(pipeline: FlowPipeline, config: Config) -> None:
    pipeline.set_allowed_exporters(config.inputs.allowed_exporters)


WORKER_RELOAD_HOOKS: list[Callable[[FlowPipeline, Config], None]] = [_reload_allowlist]
"""What a SIGHUP changes in a running worker; listen addresses, sinks and decode limits need a restart."""


class StopFlags:
    """SIGTERM/SIGINT set ``stopping``; SIGHUP sets ``reload`` (the caller clears it)."""

    def __init__(self) -> None:
        self.stopping = False
        self.reload = False

    def install(self, on_signal: Callable[[int], None] | None = None, *, hangup: bool = True) -> None:
        """Install the handlers; ``on_signal(signum)`` runs after the flag is set.

        ``hangup=False`` ignores SIGHUP instead (workers: the service sends them the reloaded config).
        """

        def handle(signum: int, _frame: FrameType | None) -> None:
            if signum == signal.SIGHUP:
                self.reload = True
            else:
                self.stopping = True
            if on_signal is not None:
                on_signal(signum)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, handle)
        signal.signal(signal.SIGHUP, handle if hangup else signal.SIG_IGN)


# --------------------------------------------------------------------------- child process


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """Entry point of a worker process: report ready, loop until stopped, report done."""
    with profiled(f"worker-{spec.index}"):
        _worker_loop(spec, conn)


def _worker_loop(spec: WorkerSpec, conn: Connection) -> None:
    sc = spec.config.service
    tune_gc()  # a spawned interpreter starts with the defaults
    setup_logging(sc.log_format, sc.log_level, process_name=f"worker-{spec.index}")
    flags = StopFlags()
    # The service forwards SIGHUP as a ("reload", config) message; a SIGHUP sent to the
    # whole process group must not make the worker re-read a file the service did not.
    flags.install(hangup=False)
    outbox = Outbox(conn.send_bytes)

    def send(message: tuple[Any, ...]) -> None:
        outbox.put_control(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def deliver(frame: FlowFrame) -> bool:
        return outbox.put_frame(wire.encode(frame, "frame", spec.index), frame.n)

    try:
        worker = Worker(spec, deliver)
    except (TunnelhoundError, ValueError, OSError) as exc:
        send(("failed", spec.index, str(exc)))
        outbox.close()
        raise SystemExit(1) from None
    send(("ready", worker.ready))
    interval = sc.stats_interval
    next_snapshot = time.monotonic() + interval
    try:
        while not flags.stopping:
            worker.step()
            while conn.poll():
                message = pickle.loads(conn.recv_bytes())
                if message[0] == "reload":
                    worker.reload(message[1])
                elif message[0] == "stop":
                    flags.stopping = True
            if time.monotonic() >= next_snapshot:
                send(("stats", replace(worker.snapshot(), outbox_bytes=outbox.queued_bytes)))
                next_snapshot = time.monotonic() + interval
        # Stopping: nothing new is received, so every frame of the drain may wait for room.
        outbox.hold()
        worker.drain()
    finally:
        worker.close()
    send(("done", worker.snapshot()))
    outbox.close()
    conn.close()
