"""`tunnelhound baseline build`: learn the baseline metrics from known-good traffic.

Sources: captures (replayed through decode, normalize and biflow stitching exactly as the
pipeline does) and/or a time range of flows already in Elasticsearch. The samples of every
metric (:mod:`tunnelhound.features.dns`, :mod:`tunnelhound.features.icmp`) are pooled and
summarized into a baseline file (:mod:`tunnelhound.features.baseline` describes the format) that
``detections.baseline`` or ``--baseline`` uses. A command module, like :mod:`tunnelhound.hunt`: it
drives the pipeline, so it lives beside it rather than inside ``features/``.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from elasticsearch import Elasticsearch

from tunnelhound.config import Config, DetectionsConfig, load_config
from tunnelhound.errors import SourceError
from tunnelhound.features import dns, icmp
from tunnelhound.features.baseline import Baseline, summarize
from tunnelhound.hunt import add_connection_arguments, connect_from_arguments, time_filter
from tunnelhound.normalize.frame import ABSENT, COLUMNS, FlowFrame
from tunnelhound.pipeline import FlowPipeline
from tunnelhound.sinks.elasticsearch import flow_index
from tunnelhound.sources.files import iter_replay_items


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `baseline build`."""
    b = sub.add_parser("baseline", help="learn a known-good baseline for the DNS and ICMP detections")
    bsub = b.add_subparsers(dest="baseline_command", required=True)
    build = bsub.add_parser("build", help="from captures and/or a time range of flows in Elasticsearch")
    build.add_argument("files", nargs="*", help="captures of export packets (pcap, pcapng, .dat)")
    build.add_argument("-c", "--config", help="YAML config (internal networks, DNS ports)")
    add_connection_arguments(build, required=False)  # --es-url: also learn from stored flows
    build.add_argument("--from", dest="start", help="start of the Elasticsearch time range (e.g. now-7d)")
    build.add_argument("--to", dest="end", help="end of the Elasticsearch time range")
    build.add_argument("--index", default=flow_index("*"), help="flow index pattern")
    build.add_argument("-o", "--output", required=True, help="baseline file to write")
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    if not args.files and not args.es_url:
        raise SourceError("baseline build needs capture files or --es-url")
    config = load_config(args.config)
    frames = list(capture_frames(config, args.files))
    if args.es_url:
        client = connect_from_arguments(args)
        try:
            frames.extend(elasticsearch_frames(client, args.index, args.start, args.end, config.detections))
        finally:
            client.close()
    baseline = build_baseline(frames, config.detections)
    baseline.sources = [
        *args.files,
        *([f"{args.es_url} {args.index} {args.start or ''}..{args.end or ''}"] if args.es_url else []),
    ]
    baseline.save(Path(args.output))
    for name, stats in sorted(baseline.metrics.items()):
        print(f"{name}: {stats.count} samples, mean {stats.mean:.4g}, std {stats.std:.4g}")
    print(f"wrote {args.output}")
    return 0


def build_baseline(frames: list[FlowFrame], config: DetectionsConfig) -> Baseline:
    """A fixed baseline from every DNS and ICMP echo flow of ``frames``."""
    pooled: dict[str, list[np.ndarray]] = {}
    for frame in frames:
        for name, values in (dns.samples(frame, config.dns) | icmp.samples(frame)).items():
            pooled.setdefault(name, []).append(values)
    return summarize({name: np.concatenate(parts) for name, parts in pooled.items()})


def capture_frames(config: Config, files: list[str]) -> Iterator[FlowFrame]:
    """Stitched flow frames of the captures, as the pipeline produces them (nothing written)."""
    if not files:
        return
    for name in files:
        if not Path(name).is_file():
            raise SourceError(f"{name}: no such file")
    frames: list[FlowFrame] = []

    class Collect:
        def write_frame(self, frame: FlowFrame) -> None:
            frames.append(frame)

        def close(self) -> None:
            pass

    with tempfile.TemporaryDirectory(prefix="tunnelhound-baseline-") as state:
        pipeline = FlowPipeline(replace(config, state_dir=state), Collect())
        pipeline.feed(iter_replay_items(files))  # captures, .dat and nfcapd archives
        pipeline.close()
    yield from frames


_SOURCE_FIELDS = [
    "@timestamp",
    "event.duration",
    "network.iana_number",
    "source.port",
    "destination.port",
    "source.bytes",
    "source.packets",
    "destination.bytes",
    "destination.packets",
    "tunnelhound.icmp.type",
    "tunnelhound.icmpv6.type",
]


def elasticsearch_frames(
    client: Elasticsearch, index: str, start: str | None, end: str | None, config: DetectionsConfig
) -> Iterator[FlowFrame]:
    """Frames (only the columns the metrics read) of the DNS and ICMP flows stored in a time range."""
    from elasticsearch import helpers

    query = {
        "bool": {
            "filter": time_filter(start, end),
            "should": [
                {"terms": {"destination.port": list(config.dns.ports)}},
                {"terms": {"source.port": list(config.dns.ports)}},
                {"terms": {"network.transport": ["icmp", "ipv6-icmp"]}},
            ],
            "minimum_should_match": 1,
        }
    }
    batch: list[dict[str, Any]] = []
    for hit in helpers.scan(client, index=index, query={"query": query, "_source": _SOURCE_FIELDS}):
        batch.append(hit["_source"])
        if len(batch) >= 10000:
            yield frame_from_documents(batch)
            batch = []
    if batch:
        yield frame_from_documents(batch)


def frame_from_documents(docs: list[dict[str, Any]]) -> FlowFrame:
    """A frame holding the counters, ports, times and ICMP type of stored flow documents."""
    n = len(docs)
    frame = FlowFrame(n, {name: np.full(n, _absent(dtype), dtype=dtype) for name, dtype in COLUMNS.items()})
    c = frame.cols

    def get(doc: dict[str, Any], dotted: str, default: Any = ABSENT) -> Any:
        node: Any = doc
        for key in dotted.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        return default if node is None else node

    for i, doc in enumerate(docs):
        c["proto"][i] = int(get(doc, "network.iana_number", ABSENT))
        c["src_port"][i] = get(doc, "source.port")
        c["dst_port"][i] = get(doc, "destination.port")
        c["src_bytes"][i] = get(doc, "source.bytes", 0)
        c["src_packets"][i] = get(doc, "source.packets", 0)
        c["dst_bytes"][i] = get(doc, "destination.bytes", 0)
        c["dst_packets"][i] = get(doc, "destination.packets", 0)
        c["end_ns"][i] = get(doc, "event.duration", 0)
        c["icmp_type"][i] = get(doc, "tunnelhound.icmp.type", get(doc, "tunnelhound.icmpv6.type"))
    c["start_ns"][:] = 0  # durations are what the metrics read: start 0, end = duration
    return frame


def _absent(dtype: str) -> Any:
    return {"i8": ABSENT, "f8": np.nan, "?": False, "i1": 0}.get(dtype)
