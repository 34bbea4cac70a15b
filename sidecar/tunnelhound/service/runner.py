"""Start the workers and the analysis, serve metrics, handle signals, stop cleanly."""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from tunnelhound.config import Config, load_config, parse_host_port
from tunnelhound.errors import ConfigError, SourceError, TunnelhoundError
from tunnelhound.metrics import MetricsServer, ServiceView
from tunnelhound.normalize.frame import FlowFrame
from tunnelhound.pipeline import PipelineCounts
from tunnelhound.service import wire
from tunnelhound.service.analysis import Analysis
from tunnelhound.service.profiling import profiled
from tunnelhound.service.snapshot import WorkerSnapshot
from tunnelhound.service.worker import ReadyInfo, StopFlags, Worker, WorkerSpec, worker_main
from tunnelhound.sinks.alerts import open_alert_sinks
from tunnelhound.sources.udp import UdpListener

__all__ = ["ServiceResult", "kernel_rmem_max", "run_service"]

log = logging.getLogger("tunnelhound.service")

RMEM_MAX = Path("/proc/sys/net/core/rmem_max")
START_TIMEOUT = 60.0
"""Seconds the workers get to bind their sockets and load their state."""


def kernel_rmem_max() -> int:
    """``net.core.rmem_max`` in bytes, 0 when it cannot be read (not Linux)."""
    try:
        return int(RMEM_MAX.read_text())
    except (OSError, ValueError):
        return 0


@dataclass(slots=True)
class ServiceResult:
    """Final counters of a run, for the summary line."""

    snapshots: list[WorkerSnapshot] = field(default_factory=list)
    exit_code: int = 0

    @property
    def counts(self) -> PipelineCounts:
        """Pipeline totals over workers."""
        total = PipelineCounts()
        for snap in self.snapshots:
            for name in PipelineCounts.__slots__:
                setattr(total, name, getattr(total, name) + getattr(snap.counts, name))
        return total

    @property
    def kernel_drops(self) -> int:
        """Datagrams the kernel dropped over all workers."""
        return sum(s.kernel_drops for s in self.snapshots)


class _Service:
    """State shared by both process layouts: view for metrics, banner, reload."""

    def __init__(self, config: Config, config_path: str | None, binds: list[tuple[str, int]]) -> None:
        self.config = config
        self.config_path = config_path
        self.workers = config.service.workers
        self.alert_sinks = open_alert_sinks(config)
        self.analysis = Analysis(config, alert_sink=self.alert_sinks.write_alerts)
        self.spec = WorkerSpec(0, self.workers, config, tuple(binds), forward=self.analysis.active)
        self.snapshots: dict[int, WorkerSnapshot] = {}
        self.view = ServiceView(workers_configured=self.workers, kernel_rmem_max=kernel_rmem_max())
        self.alive = 0
        self.flags = StopFlags()
        self.metrics: MetricsServer | None = None
        self.metrics_error = ""

    # ------------------------------------------------------------------ metrics

    def refresh_view(self) -> None:
        """Publish the latest snapshots to the metrics endpoint (a new object: scrapes never see half)."""
        with open("/proc/self/statm", "rb") as fh:
            rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        self.view = ServiceView(
            workers=[self.snapshots[i] for i in sorted(self.snapshots)],
            analysis=self.analysis.snapshot(),
            workers_configured=self.workers,
            workers_alive=self.alive,
            reloads=self.view.reloads,
            reload_failures=self.view.reload_failures,
            kernel_rmem_max=self.view.kernel_rmem_max,
            main_rss_bytes=rss,
        )

    def health(self) -> dict[str, Any]:
        """/healthz: ok while every worker runs."""
        return {"ok": self.alive == self.workers, "workers": self.workers, "alive": self.alive}

    def start_metrics(self) -> None:
        """Serve /metrics and /healthz unless ``service.metrics_listen`` is empty (or taken)."""
        listen = self.config.service.metrics_listen
        if listen:
            host, port = parse_host_port(listen)
            try:
                self.metrics = MetricsServer((host, port), lambda: self.view, self.health)
            except OSError as exc:
                # Flows matter more than their metrics: collect anyway, and say so (after the banner).
                self.metrics_error = f"metrics endpoint off: cannot listen on {listen}: {exc.strerror or exc}"

    # ------------------------------------------------------------------ start and reload

    def announce(self, ready: list[ReadyInfo]) -> None:
        """Print the one banner line tests and operators read first, then what went wrong at start."""
        addrs = " ".join(f"{h}:{p}" for h, p in ready[0].addresses)
        print(
            f"tunnelhound: listening on {addrs}; templates restored: {any(r.restored for r in ready)}; "
            f"workers: {self.workers}",
            file=sys.stderr,
            flush=True,
        )
        log.info("started", extra={"workers": self.workers, "listen": addrs})
        if self.metrics is not None:
            log.info("metrics on http://%s:%d/metrics", *self.metrics.address)
        if self.metrics_error:
            log.error(self.metrics_error)
        asked = self.config.inputs.udp.receive_buffer
        capped = [r for r in ready if r.buffer_capped]
        if capped:
            log.warning(
                "receive buffer capped by the kernel at %d bytes (asked %d, net.core.rmem_max is %d); "
                "raise it with sysctl -w net.core.rmem_max=%d or run with CAP_NET_ADMIN",
                min(r.receive_buffer for r in capped),
                asked,
                self.view.kernel_rmem_max,
                asked,
                extra={"receive_buffer.asked": asked, "receive_buffer.granted": capped[0].receive_buffer},
            )

    def load_reload(self) -> Config | None:
        """The config file read again, or None (logged and counted) when it is unusable."""
        self.flags.reload = False
        if self.config_path is None:
            log.warning("SIGHUP ignored: started without a config file")
            return None
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            self.view.reload_failures += 1
            log.error("reload refused, keeping the running config: %s", exc)
            return None
        try:
            self.analysis.reload(config)
        except TunnelhoundError as exc:  # e.g. a broken rule in a users' directory
            self.view.reload_failures += 1
            log.error("reload refused, keeping the running rules: %s", exc)
            return None
        self.view.reloads += 1
        return config

    def close_analysis(self) -> None:
        """Persist the analysis state, then flush and close the alert sinks (in that order, so
        alerts raised while closing are still delivered)."""
        try:
            self.analysis.close()
        finally:
            self.alert_sinks.close()


def run_service(config: Config, config_path: str | None, binds: list[tuple[str, int]]) -> ServiceResult:
    """Run until SIGTERM/SIGINT; returns the final counters (``exit_code`` 1 if a worker died)."""
    if config.service.workers > 1 and config.output.ndjson_enabled and config.output.ndjson.path == "-":
        raise ConfigError(
            "service.workers", "several workers cannot share stdout; give output.ndjson.path a directory"
        )
    with profiled("main"):
        service = _Service(config, config_path, binds)
        # With rules loaded even one worker gets a process of its own: decode, normalize and
        # the flow sinks there, the rules here, so the two use two cores and a slow rule
        # window never stops the receive loop.  Without, one process does it all.
        if service.workers == 1 and not service.analysis.active:
            return _run_in_process(service)
        return _run_workers(service)


def _run_in_process(service: _Service) -> ServiceResult:
    worker = Worker(service.spec, _no_analysis)
    result = ServiceResult()
    try:
        service.flags.install()
        service.start_metrics()
        service.alive = 1
        service.announce([worker.ready])
        interval = service.config.service.stats_interval
        next_snapshot = 0.0
        while not service.flags.stopping:
            worker.step()
            if service.flags.reload:
                config = service.load_reload()
                if config is not None:
                    worker.reload(config)
            if time.monotonic() >= next_snapshot:
                service.snapshots[0] = worker.snapshot()
                service.refresh_view()
                next_snapshot = time.monotonic() + interval
        worker.drain()
    finally:
        try:
            worker.close()
        finally:
            service.close_analysis()
    service.alive = 0
    service.snapshots[0] = worker.snapshot()
    service.refresh_view()
    if service.metrics is not None:
        service.metrics.close()
    result.snapshots = [service.snapshots[0]]
    return result


def _no_analysis(_frame: FlowFrame) -> bool:
    raise AssertionError("no analysis stage: the worker forwards no frame")


def _run_workers(service: _Service) -> ServiceResult:
    # SO_REUSEPORT would let a second collector of the same user share the ports silently,
    # each getting part of the exporters. Binding once without it first fails if anyone holds them.
    UdpListener(list(service.spec.binds), receive_buffer=65536).close()
    ctx = multiprocessing.get_context("spawn")
    procs: dict[int, BaseProcess] = {}
    conns: dict[int, Connection] = {}
    for i in range(service.workers):
        parent, child = ctx.Pipe(duplex=True)
        spec = WorkerSpec(i, service.workers, service.config, service.spec.binds, service.spec.forward)
        procs[i] = ctx.Process(target=worker_main, args=(spec, child), name=f"tunnelhound-worker-{i}")
        procs[i].start()
        child.close()
        conns[i] = parent

    def stop_all(_signum: int = signal.SIGTERM) -> None:
        for proc in procs.values():
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    service.flags.install(lambda signum: stop_all() if signum != signal.SIGHUP else None)
    result = ServiceResult()
    ready: dict[int, ReadyInfo] = {}
    done: set[int] = set()
    failed: list[str] = []

    def receive(i: int, conn: Connection) -> None:
        try:
            message = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            if i not in done:
                failed.append(f"worker {i} exited unexpectedly (code {procs[i].exitcode})")
                done.add(i)
            return
        kind = message[0]
        if kind == "frame":
            service.analysis.process(wire.frame_of(message), message[1])
        elif kind == "stats":
            service.snapshots[i] = message[1]
        elif kind == "ready":
            ready[i] = message[1]
        elif kind == "done":
            service.snapshots[i] = message[1]
            done.add(i)
        elif kind == "failed":
            failed.append(f"worker {i}: {message[2]}")
            done.add(i)

    def pump(timeout: float) -> None:
        waiting = {c: i for i, c in conns.items() if i not in done}
        for conn in wait(list(waiting), timeout):
            receive(waiting[conn], conn)  # type: ignore[index, arg-type]

    try:
        deadline = time.monotonic() + START_TIMEOUT
        while len(ready) + len(done) < service.workers and not failed and time.monotonic() < deadline:
            pump(0.2)
        if failed or len(ready) < service.workers:
            stop_all()
            raise SourceError(failed[0] if failed else "workers did not start in time")
        service.start_metrics()
        service.alive = service.workers
        service.announce([ready[i] for i in sorted(ready)])
        interval = service.config.service.stats_interval
        next_view = 0.0
        while len(done) < service.workers:
            pump(0.2)
            if failed and not service.flags.stopping:
                # One worker gone: stop the rest cleanly and exit non-zero so the supervisor
                # (systemd Restart=on-failure) starts the whole service again.
                log.error("%s; stopping the service", failed[0])
                service.flags.stopping = True
                stop_all()
            if service.flags.reload:
                config = service.load_reload()
                if config is not None:
                    for i, conn in conns.items():
                        if i not in done:
                            conn.send_bytes(
                                pickle.dumps(("reload", config), protocol=pickle.HIGHEST_PROTOCOL)
                            )
            service.alive = sum(1 for i in procs if i not in done)
            if time.monotonic() >= next_view:
                service.refresh_view()
                next_view = time.monotonic() + interval
    finally:
        for proc in procs.values():
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
        service.close_analysis()
        if service.metrics is not None:
            service.metrics.close()
    service.alive = 0
    service.refresh_view()
    result.snapshots = [service.snapshots[i] for i in sorted(service.snapshots)]
    result.exit_code = 1 if failed else 0
    return result
