"""What a worker reports about itself: a picklable copy of its counters, taken between batches.

Workers never share memory with the metrics endpoint: every ``service.stats_interval`` seconds
(and once more when they stop) they copy their counters into a :class:`WorkerSnapshot` and
hand it over, so a scrape reads plain data and never touches the hot path.
"""

from __future__ import annotations

import copy
import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tunnelhound.decode.stats import DecodeStats
from tunnelhound.pipeline import FlowPipeline, PipelineCounts
from tunnelhound.sources.udp import UdpListener

__all__ = ["WorkerSnapshot", "sink_metrics", "take_snapshot"]

_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(slots=True)
class WorkerSnapshot:
    """Counters and gauges of one worker at one moment."""

    worker: int
    pid: int
    decode: DecodeStats = field(default_factory=DecodeStats)
    counts: PipelineCounts = field(default_factory=PipelineCounts)
    templates: dict[str, int] = field(default_factory=dict)
    """Templates held per exporter IP."""
    held_sets: int = 0
    biflow_pending: int = 0
    kernel_drops: int = 0
    """Datagrams the kernel dropped on this worker's sockets (receive queue full)."""
    receive_queue_bytes: int = 0
    """Bytes waiting in the worker's socket receive queues."""
    receive_buffer: int = 0
    """SO_RCVBUF the kernel granted, in the caller's units (half of what Linux reports)."""
    sinks: dict[str, float] = field(default_factory=dict)
    """Sink counters summed over this worker's sinks (see :func:`sink_metrics`)."""
    frames_sent: int = 0
    """Frames handed to the analysis process."""
    analysis_dropped_rows: int = 0
    """Stitched flows the analysis never saw: their frame found the worker's outbox full."""
    biflow_stitched: int = 0
    """Uniflow pairs stitched into one document."""
    outbox_bytes: int = 0
    """Encoded frames waiting in the worker's outbox for the pipe to the analysis."""
    rss_bytes: int = 0
    peak_rss_bytes: int = 0
    reloads: int = 0
    reload_failures: int = 0


def sink_metrics(sink: Any) -> dict[str, float]:
    """Counters of every sink behind ``sink`` (a FanOut is walked), summed by name."""
    out: dict[str, float] = {}
    inner = getattr(sink, "sinks", None)
    if inner is not None:
        for one in inner:
            _merge(out, sink_metrics(one))
        return out
    metrics = getattr(sink, "metrics", None)
    if callable(metrics):
        _merge(out, metrics())
    if hasattr(sink, "lines_written"):
        _merge(out, {"ndjson_lines": sink.lines_written, "ndjson_bytes": sink.bytes_written})
    return out


def _merge(out: dict[str, float], values: Mapping[str, float]) -> None:
    for key, value in values.items():
        # A latency does not add up: keep the worst.
        old = out.get(key, 0)
        out[key] = max(old, value) if key == "last_bulk_latency_s" else old + value


def take_snapshot(
    worker: int,
    pipeline: FlowPipeline,
    listener: UdpListener,
    frames: tuple[int, int],
    reloads: tuple[int, int],
) -> WorkerSnapshot:
    """Copy what the metrics endpoint needs out of a running worker; ``frames`` is (frames
    sent to the analysis, rows dropped on the way)."""
    stats = pipeline.decoder.stats
    with open("/proc/self/statm", "rb") as fh:
        rss = int(fh.read().split()[1]) * _PAGE
    return WorkerSnapshot(
        worker=worker,
        pid=os.getpid(),
        decode=copy.deepcopy(stats),
        counts=copy.copy(pipeline.counts),
        templates={ip: pipeline.sessions.template_count(ip) for ip in stats.datagrams},
        held_sets=pipeline.decoder.held_sets,
        biflow_pending=pipeline.stitcher.pending if pipeline.stitcher is not None else 0,
        kernel_drops=listener.kernel_drops,
        receive_queue_bytes=listener.queued_bytes,
        receive_buffer=listener.effective_receive_buffer // 2,
        sinks=sink_metrics(pipeline.sink),
        frames_sent=frames[0],
        analysis_dropped_rows=frames[1],
        biflow_stitched=pipeline.stitcher.stats.stitched if pipeline.stitcher is not None else 0,
        rss_bytes=rss,
        # ru_maxrss is in KiB on Linux.
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        reloads=reloads[0],
        reload_failures=reloads[1],
    )
