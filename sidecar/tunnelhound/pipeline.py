"""Wiring: sources → decode → normalize (+ biflow) → features → sinks, in one place.

Stages never call each other; the pipeline hands each one the previous one's output.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tunnelhound.config import Config
from tunnelhound.decode.decoder import Decoder
from tunnelhound.decode.sessions import SessionStore
from tunnelhound.errors import ConfigError
from tunnelhound.features import FeatureStage
from tunnelhound.model import Datagram, FlowBatch, OptionsRecord
from tunnelhound.normalize.applications import resolver
from tunnelhound.normalize.biflow import BiflowStitcher
from tunnelhound.normalize.ecs import NormalizeOptions, Normalizer
from tunnelhound.normalize.frame import FlowFrame
from tunnelhound.normalize.locality import Networks
from tunnelhound.normalize.records import FlowRecord, frame_from_records
from tunnelhound.sinks.elasticsearch import ElasticsearchSink
from tunnelhound.sinks.ndjson import NdjsonSink

REPLAY_CHUNK = 256
"""Datagrams a replay normalizes together (more amortizes per-batch work; fewer bounds memory)."""
STATE_FILE = "decoder-state.json"
"""Templates and options data, under ``state_dir``."""


class FlowSink(Protocol):
    """Anything that takes normalized flows."""

    def write_frame(self, frame: FlowFrame) -> None:
        """Write the rows of a frame."""

    def close(self) -> None:
        """Flush and release."""


class FanOut:
    """Several sinks behind one: every frame goes to each."""

    def __init__(self, sinks: list[FlowSink]) -> None:
        self.sinks = sinks

    def write_frame(self, frame: FlowFrame) -> None:
        """Write the frame to every sink."""
        for sink in self.sinks:
            sink.write_frame(frame)

    def close(self) -> None:
        """Close every sink, even when one fails; the first failure is raised after."""
        errors: list[Exception] = []
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # the other sinks must still flush and release
                errors.append(exc)
        if errors:
            raise errors[0]


def open_sinks(config: Config, *, worker: int | None = None) -> FlowSink:
    """The flow sinks the configuration asks for (NDJSON files and/or Elasticsearch).

    ``worker`` numbers one of several processes writing side by side: its NDJSON files get
    the prefix ``flows-w<worker>`` and its Elasticsearch spool a directory of its own.
    """
    sinks: list[FlowSink] = []
    out = config.output
    if out.ndjson_enabled:
        nd = out.ndjson
        sinks.append(
            NdjsonSink(
                nd.path,
                rotate_bytes=nd.rotate_bytes,
                rotate_seconds=nd.rotate_seconds,
                max_files=nd.max_files,
                prefix="flows" if worker is None else f"flows-w{worker}",
            )
        )
    es = out.elasticsearch
    if es.url:
        api_key = os.environ.get(es.api_key_env) if es.api_key_env else None
        password = os.environ.get(es.password_env, "") if es.password_env else ""
        spool_dir = Path(es.spool_dir or Path(config.state_dir) / "spool")
        sinks.append(
            ElasticsearchSink(
                es.url,
                spool_dir=spool_dir if worker is None else spool_dir / f"worker-{worker}",
                spool_max_bytes=es.spool_max_bytes,
                full_policy=es.full_policy,
                batch_docs=es.batch_docs,
                flush_interval=es.flush_interval,
                ca_certs=es.ca_certs or None,
                verify_certs=es.verify_certs,
                basic_auth=(es.username, password) if es.username else None,
                api_key=api_key or None,
            )
        )
    if not sinks:
        raise ConfigError("output", "no sink enabled; set output.ndjson_enabled or output.elasticsearch.url")
    return sinks[0] if len(sinks) == 1 else FanOut(sinks)


@dataclass(slots=True)
class PipelineCounts:
    """Totals for a summary line."""

    datagrams: int = 0
    rejected_exporters: int = 0
    """Datagrams dropped because their exporter is not in ``inputs.allowed_exporters``."""
    records: int = 0
    options_records: int = 0
    documents: int = 0


class FlowPipeline:
    """Decode, normalize and write flows; persists decoder state under ``state_dir``."""

    def __init__(
        self,
        config: Config,
        sink: FlowSink,
        *,
        state_dir: Path | None = None,
        baseline_path: str | None = None,
    ) -> None:
        """``baseline_path``: a learned DNS/ICMP baseline (``--baseline``) over
        ``detections.baseline``; raises BaselineError for a bad file."""
        self.config = config
        self.sink = sink
        dc = config.decode
        self.sessions = SessionStore(
            share_templates=dc.share_templates, max_templates_per_exporter=dc.max_templates_per_exporter
        )
        self.state_path = Path(state_dir if state_dir is not None else config.state_dir) / STATE_FILE
        self.restored = self.sessions.load(self.state_path)
        self.decoder = Decoder(
            self.sessions,
            fast_path=dc.fast_path,
            max_held_sets=dc.max_held_sets,
            held_set_timeout=dc.held_set_timeout,
        )
        nc = config.normalize
        self.normalizer = Normalizer(
            NormalizeOptions(
                internal_networks=nc.internal_networks,
                community_id_seed=nc.community_id_seed,
                namespace=config.namespace,
                application_tables=nc.application_tables,
            )
        )
        resolver(nc.application_tables)  # a bad table fails here, at start, not on the first flow
        self.stitcher = (
            BiflowStitcher(timeout=nc.biflow.timeout, max_pending=nc.biflow.max_pending)
            if nc.biflow.enabled
            else None
        )
        self.allowed: Networks | None = None
        self._allowed_cache: dict[str, bool] = {}
        self.set_allowed_exporters(config.inputs.allowed_exporters)
        # Features go onto the flows before any sink, so stored flows carry what rules read.
        self.features = FeatureStage.from_config(
            config, baseline_path=baseline_path, state_dir=self.state_path.parent
        )
        self.counts = PipelineCounts()
        self.options: list[OptionsRecord] = []
        """Options records of the last :meth:`process` call (joined, not written as flows)."""

    def process(self, datagrams: Iterable[Datagram]) -> int:
        """Run a chunk of datagrams through every stage; returns documents written."""
        batches: list[FlowBatch] = []
        self.options = []
        for dg in datagrams:
            self.counts.datagrams += 1
            if self.allowed is not None and not self._is_allowed(dg.exporter_ip):
                self.counts.rejected_exporters += 1
                continue
            decoded = self.decoder.decode(dg)
            self.options.extend(decoded.options)
            self.counts.options_records += len(decoded.options)
            for batch in decoded.flows:
                self.counts.records += batch.count
                batches.append(batch)
        frame = self.normalizer.frames(batches)
        self._stitch_and_write(frame)
        # Save as soon as a template changes: data arriving right after a crash or restart
        # must decode at once (templates change rarely, so this costs nothing in steady state).
        if self.sessions.dirty:
            self.sessions.save(self.state_path)
        return frame.n

    def feed(self, items: Iterable[Datagram | Sequence[FlowRecord]]) -> None:
        """Run a replay through, in order: datagrams in chunks of :data:`REPLAY_CHUNK` (as many
        as are normalized together), and the chunks of decoded records an nfcapd file yields."""
        chunk: list[Datagram] = []
        for item in items:
            if isinstance(item, Datagram):
                chunk.append(item)
                if len(chunk) >= REPLAY_CHUNK:
                    self.process(chunk)
                    chunk = []
            else:
                self.process(chunk)
                chunk = []
                self.process_records(item)
        self.process(chunk)

    def process_records(self, records: Sequence[FlowRecord]) -> int:
        """Run flow records another tool decoded (nfdump archives) through normalize, biflow
        and the sinks, like the records of :meth:`process`; returns documents written."""
        self.counts.records += len(records)
        options = self.normalizer.options
        frame = frame_from_records(
            records,
            internal_networks=self.normalizer.networks,
            community_id_seed=options.community_id_seed,
            namespace=options.namespace,
        )
        return self._stitch_and_write(frame)

    def _stitch_and_write(self, frame: FlowFrame) -> int:
        if self.stitcher is not None:
            frame = self.stitcher.push(frame)
        self._write(frame)
        return frame.n

    def set_allowed_exporters(self, cidrs: tuple[str, ...]) -> None:
        """Replace the exporter allowlist (CIDRs; empty accepts all), e.g. on a SIGHUP reload."""
        self.allowed = Networks(cidrs) if cidrs else None
        self._allowed_cache = {}

    def _is_allowed(self, ip: str) -> bool:
        allowed = self._allowed_cache.get(ip)
        if allowed is None:
            assert self.allowed is not None
            allowed = self.allowed.contains(ipaddress.ip_address(ip).packed)
            # Bounded: a flood from spoofed sources must not grow this without limit.
            if len(self._allowed_cache) < 65536:
                self._allowed_cache[ip] = allowed
        return allowed

    def flush(self) -> int:
        """Emit every waiting uniflow (end of input)."""
        if self.stitcher is None:
            return 0
        frame = self.stitcher.flush()
        self._write(frame)
        return frame.n

    def close(self) -> None:
        """Flush, persist decoder and feature state and close the sink."""
        try:
            self.flush()
            self.sessions.save(self.state_path)
            self.features.save()
        finally:
            self.sink.close()

    def _write(self, frame: FlowFrame) -> None:
        if frame.n:
            self.sink.write_frame(self.features.apply(frame))
            self.counts.documents += frame.n
