"""Prometheus ``/metrics`` and ``/healthz`` for ``tunnelhound run``.

The endpoint never touches the hot path: a scrape reads a :class:`ServiceView`, plain data
the service assembles from the snapshots its workers send every ``service.stats_interval``
seconds (:mod:`tunnelhound.service.snapshot`).  Counts are therefore up to one interval old;
after a stop the last snapshot of each worker is exact.

Per-exporter series are labelled by exporter IP.  Their number is bounded by the exporters
that get through the allowlist: set ``inputs.allowed_exporters`` on a collector reachable
from untrusted networks, or a spoofed flood becomes one series per forged source.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tunnelhound.decode.stats import DecodeStats
from tunnelhound.service.analysis import AnalysisStats
from tunnelhound.service.snapshot import WorkerSnapshot

__all__ = ["MetricsServer", "ServiceCollector", "ServiceView", "decode_totals"]

# Sink values that are levels, not running totals.
_SINK_GAUGES = frozenset({"spool_bytes", "spool_batches", "buffered_docs", "last_bulk_latency_s"})
# Stage values that are levels (the rule engine's), not running totals.
_STAGE_GAUGES = frozenset({"rules_loaded", "rules_groups"})


@dataclass(slots=True)
class ServiceView:
    """Everything a scrape shows, as of the last snapshots."""

    workers: list[WorkerSnapshot] = field(default_factory=list)
    analysis: AnalysisStats = field(default_factory=AnalysisStats)
    workers_configured: int = 1
    workers_alive: int = 0
    reloads: int = 0
    reload_failures: int = 0
    kernel_rmem_max: int = 0
    """net.core.rmem_max (0 when unknown)."""
    main_rss_bytes: int = 0


def decode_totals(snapshots: Iterable[WorkerSnapshot]) -> DecodeStats:
    """Decoder counters summed over workers."""
    total = DecodeStats()
    for snap in snapshots:
        for name in DecodeStats.__slots__:
            getattr(total, name).update(getattr(snap.decode, name))
    return total


class ServiceCollector(Collector):
    """Turn a :class:`ServiceView` into metric families at scrape time."""

    def __init__(self, view: Callable[[], ServiceView]) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        """Every tunnelhound metric (see docs/operations.md for the list)."""
        v = self.view()
        stats = decode_totals(v.workers)
        per_exporter: list[tuple[str, str, Counter[str]]] = [
            ("datagrams", "Export datagrams received", stats.datagrams),
            ("records", "Flow records decoded", stats.records),
            ("options_records", "Options records decoded", stats.options_records),
            ("template_sets", "Template sets accepted", stats.template_sets),
            ("template_misses", "Data sets that arrived before their template", stats.template_misses),
            ("held_sets_released", "Held data sets decoded once their template came", stats.held_released),
            ("held_sets_dropped", "Held data sets dropped (timeout or per-exporter cap)", stats.held_dropped),
            ("sequence_lost", "Packets/records missing according to sequence numbers", stats.sequence_lost),
        ]
        for name, doc, counts in per_exporter:
            yield _by(CounterMetricFamily, f"tunnelhound_{name}", doc, "exporter", counts)
        yield _labelled(
            CounterMetricFamily,
            "tunnelhound_decode_errors",
            "Datagrams or sets rejected, by reason",
            ["exporter", "reason"],
            list(stats.errors.items()),
        )
        templates: Counter[str] = Counter()
        for snap in v.workers:
            templates.update(snap.templates)
        yield _by(GaugeMetricFamily, "tunnelhound_templates", "Templates held", "exporter", templates)

        queued = {w: max(0, s.frames_sent - v.analysis.frames[w]) for w, s in _by_worker(v)}
        per_worker: list[tuple[type, str, str, Callable[[WorkerSnapshot], float]]] = [
            (CounterMetricFamily, "rejected_datagrams", "Datagrams from exporters outside the allowlist",
             lambda s: s.counts.rejected_exporters),
            (CounterMetricFamily, "kernel_drops", "Datagrams the kernel dropped: socket receive queue full",
             lambda s: s.kernel_drops),
            (CounterMetricFamily, "documents", "Flow documents handed to the flow sinks",
             lambda s: s.counts.documents),
            (CounterMetricFamily, "frames_to_analysis", "Frames sent to the analysis process",
             lambda s: s.frames_sent),
            (GaugeMetricFamily, "queue_depth", "Frames sent to the analysis and not yet analysed (approx.)",
             lambda s: queued[s.worker]),
            (CounterMetricFamily, "analysis_dropped_rows",
             "Stitched flows not analysed: the worker's outbox to the analysis was full",
             lambda s: s.analysis_dropped_rows),
            (CounterMetricFamily, "biflow_stitched", "Uniflow pairs stitched into one document",
             lambda s: s.biflow_stitched),
            (GaugeMetricFamily, "outbox_bytes", "Encoded frames waiting in the worker for the pipe to the analysis",
             lambda s: s.outbox_bytes),
            (GaugeMetricFamily, "held_sets", "Data sets waiting for their template", lambda s: s.held_sets),
            (GaugeMetricFamily, "biflow_pending", "Uniflows waiting for their partner",
             lambda s: s.biflow_pending),
            (GaugeMetricFamily, "receive_queue_bytes", "Bytes waiting in the UDP receive queues",
             lambda s: s.receive_queue_bytes),
            (GaugeMetricFamily, "receive_buffer_bytes", "UDP receive buffer the kernel granted",
             lambda s: s.receive_buffer),
            (GaugeMetricFamily, "worker_rss_bytes", "Resident memory of the worker", lambda s: s.rss_bytes),
            (GaugeMetricFamily, "worker_peak_rss_bytes", "Peak resident memory of the worker",
             lambda s: s.peak_rss_bytes),
        ]  # fmt: skip
        for kind, name, doc, get in per_worker:
            yield _labelled(
                kind, f"tunnelhound_{name}", doc, ["worker"], [((str(s.worker),), get(s)) for s in v.workers]
            )

        sinks: dict[str, list[tuple[tuple[str, ...], float]]] = {}
        for snap in v.workers:
            for key, value in snap.sinks.items():
                sinks.setdefault(key, []).append(((str(snap.worker),), value))
        for key, samples in sorted(sinks.items()):
            kind = GaugeMetricFamily if key in _SINK_GAUGES else CounterMetricFamily
            name = "tunnelhound_sink_" + key.removesuffix("_s") + ("_seconds" if key.endswith("_s") else "")
            yield _labelled(kind, name, f"Flow sink {key.replace('_', ' ')}", ["worker"], samples)

        a = v.analysis
        rows = {str(w): n for w, n in a.rows.items()}
        yield _by(CounterMetricFamily, "tunnelhound_analysis_rows", "Stitched flows analysed", "worker", rows)
        yield _by(CounterMetricFamily, "tunnelhound_alerts", "Alerts raised", "rule", a.alerts)
        yield _by(GaugeMetricFamily, "tunnelhound_rule_state_entries", "State held by a stage", "stage",
                  a.state_size)  # fmt: skip
        yield from _stage_counters(a.counters)
        singles: list[tuple[type, str, str, float]] = [
            (GaugeMetricFamily, "workers_configured", "Worker processes configured", v.workers_configured),
            (GaugeMetricFamily, "workers_alive", "Worker processes running", v.workers_alive),
            (CounterMetricFamily, "reloads", "Configuration reloads applied (SIGHUP)", v.reloads),
            (
                CounterMetricFamily,
                "reload_failures",
                "Reloads refused (bad configuration)",
                v.reload_failures,
            ),
            (GaugeMetricFamily, "kernel_rmem_max_bytes", "net.core.rmem_max", v.kernel_rmem_max),
            (GaugeMetricFamily, "main_rss_bytes", "Resident memory of the main process", v.main_rss_bytes),
        ]
        for kind, name, doc, value in singles:
            yield kind(f"tunnelhound_{name}", doc, value=value)


def _stage_counters(counters: Mapping[str, Mapping[str, float]]) -> Iterator[Metric]:
    """Each stage's own counters by name, labelled by stage (``tunnelhound_rules_evicted_groups_total``)."""
    samples: dict[str, list[tuple[tuple[str, ...], float]]] = {}
    for stage, values in counters.items():
        for name, value in values.items():
            samples.setdefault(name, []).append(((stage,), value))
    for name, labelled in sorted(samples.items()):
        kind = GaugeMetricFamily if name in _STAGE_GAUGES else CounterMetricFamily
        yield _labelled(
            kind, f"tunnelhound_{name}", f"Analysis stage {name.replace('_', ' ')}", ["stage"], labelled
        )


def _by_worker(v: ServiceView) -> Iterator[tuple[int, WorkerSnapshot]]:
    return ((s.worker, s) for s in v.workers)


def _by(kind: type, name: str, doc: str, label: str, values: Mapping[str, float]) -> Any:
    return _labelled(kind, name, doc, [label], [((k,), n) for k, n in values.items()])


def _labelled(
    kind: type, name: str, doc: str, labels: list[str], samples: Iterable[tuple[tuple[str, ...], float]]
) -> Any:
    family = kind(name, doc, labels=labels)
    for values, n in samples:
        family.add_metric(list(values), n)
    return family


class _Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """``/metrics`` (Prometheus text format) and ``/healthz`` (JSON, 503 when unhealthy) in a thread."""

    def __init__(
        self, address: tuple[str, int], view: Callable[[], ServiceView], health: Callable[[], dict[str, Any]]
    ) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ServiceCollector(view))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
                elif path == "/healthz":
                    report = health()
                    body = json.dumps(report).encode()
                    self._send(200 if report["ok"] else 503, "application/json", body)
                else:
                    self._send(404, "text/plain", b"not found; try /metrics or /healthz\n")

            def _send(self, status: int, ctype: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Scrapes are not events: no log line per request."""

        self._server = (_Server6 if ":" in address[0] else ThreadingHTTPServer)(address, Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the port the kernel chose for port 0)."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
