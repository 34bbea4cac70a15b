"""The decoder: datagrams in, columnar flow batches and options records out.

It dispatches on the version field, keeps template sessions, holds data that arrives
before its template, joins options data, tracks sequence numbers, and never raises on
bad input: every rejection is counted by exporter and reason in :class:`DecodeStats`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunnelhound.decode.columns import Layout, compile_template, decode_records, fixed_records
from tunnelhound.decode.elements import V5_LAYOUT
from tunnelhound.decode.messages import (
    V5_RECORD_LENGTH,
    MessageHeader,
    SetSpan,
    ipfix_messages,
    v5_packets,
    v9_message,
    version_of,
)
from tunnelhound.decode.sessions import SessionKey, SessionStore, TemplateLimitExceeded
from tunnelhound.decode.stats import DecodeStats
from tunnelhound.decode.template import Template, TemplateField, parse_ipfix_templates, parse_v9_templates
from tunnelhound.errors import DecodeError
from tunnelhound.model import Datagram, FlowBatch, OptionsRecord, SessionOptions

_V5_TEMPLATE = Template(0, tuple(TemplateField(el, length) for el, length in V5_LAYOUT))
_V5_LAYOUT: Layout = compile_template(_V5_TEMPLATE)
_U32 = 0xFFFFFFFF


@dataclass(slots=True)
class Decoded:
    """What one datagram gave (plus any held sets its templates released)."""

    flows: list[FlowBatch] = field(default_factory=list)
    options: list[OptionsRecord] = field(default_factory=list)

    @property
    def record_count(self) -> int:
        """Flow records in all batches."""
        return sum(b.count for b in self.flows)


@dataclass(slots=True)
class _Held:
    data: bytes
    exporter_ip: str
    exporter_port: int
    header: MessageHeader
    span: SetSpan
    arrived: float


class Decoder:
    """Decode NetFlow v5, v9 and IPFIX datagrams.

    ``fast_path`` decodes fixed-length data sets with numpy; off, every set takes the
    plain-Python reference path (tests run both and compare).
    """

    def __init__(
        self,
        sessions: SessionStore | None = None,
        *,
        fast_path: bool = True,
        max_held_sets: int = 1024,
        held_set_timeout: float = 60.0,
        stats: DecodeStats | None = None,
    ) -> None:
        self.sessions = sessions if sessions is not None else SessionStore()
        self.fast_path = fast_path
        self.max_held_sets = max_held_sets
        self.held_set_timeout = held_set_timeout
        self.stats = stats if stats is not None else DecodeStats()
        self._held: dict[tuple[SessionKey, int], deque[_Held]] = {}
        self._held_per_exporter: dict[str, int] = {}
        self._next_sequence: dict[SessionKey, int] = {}
        self._last_sequence: dict[SessionKey, int] = {}
        self._last_sweep = 0.0

    @property
    def held_sets(self) -> int:
        """Data sets currently waiting for their template."""
        return sum(self._held_per_exporter.values())

    def decode(self, dg: Datagram) -> Decoded:
        """Decode one datagram; never raises for bad input."""
        out = Decoded()
        ip = dg.exporter_ip
        self.stats.datagrams[ip] += 1
        if dg.received - self._last_sweep >= 1.0:
            self.expire_held(dg.received)
        try:
            version = version_of(dg.data)
            if version == 5:
                self._decode_v5(dg, out)
            elif version == 9:
                self._decode_v9(dg, out)
            elif version == 10:
                self._decode_ipfix(dg, out)
            else:
                raise DecodeError("bad_version", str(version))
        except DecodeError as exc:
            self.stats.errors[(ip, exc.reason)] += 1
        except Exception:
            self.stats.errors[(ip, "internal_error")] += 1
        for batch in out.flows:
            self.stats.records[ip] += batch.count
        self.stats.options_records[ip] += len(out.options)
        return out

    # ------------------------------------------------------------------ versions

    def _decode_v5(self, dg: Datagram, out: Decoded) -> None:
        data = dg.data
        for header, start, count in v5_packets(data):
            key = self.sessions.key(dg.exporter_ip, dg.exporter_port, 5, header.domain)
            self._check_sequence(key, dg.exporter_ip, header.sequence, header.sequence + header.count)
            body = memoryview(data)[start : start + count * V5_RECORD_LENGTH]
            n, raw, columns = self._records(_V5_LAYOUT, _V5_TEMPLATE, body)
            interval = header.sampling & 0x3FFF
            opts = self.sessions.options(key)
            if interval > 1 and opts.sampling_default != float(interval):
                opts.sampling_default = float(interval)
            out.flows.append(
                self._batch(
                    dg.exporter_ip, dg.exporter_port, header, 0, start, n, raw, columns, _V5_LAYOUT, opts
                )
            )

    def _decode_v9(self, dg: Datagram, out: Decoded) -> None:
        header, sets, problem = v9_message(dg.data)
        key = self.sessions.key(dg.exporter_ip, dg.exporter_port, 9, header.domain)
        # v9 sequence numbers count export packets per source id.
        self._check_sequence(key, dg.exporter_ip, header.sequence, header.sequence + 1)
        self._walk(dg.data, dg.exporter_ip, dg.exporter_port, dg.received, key, header, sets, out)
        if problem:
            raise DecodeError(problem, "v9 flowset walk")

    def _decode_ipfix(self, dg: Datagram, out: Decoded) -> None:
        problems = []
        for header, sets, problem in ipfix_messages(dg.data):
            key = self.sessions.key(dg.exporter_ip, dg.exporter_port, 10, header.domain)
            flows_before, options_before = out.record_count, len(out.options)
            complete = self._walk(
                dg.data, dg.exporter_ip, dg.exporter_port, dg.received, key, header, sets, out
            )
            flows = out.record_count - flows_before
            records = flows + len(out.options) - options_before
            # IPFIX sequence numbers count data records sent before this message, options data
            # records included (RFC 7011 §3.1); only a fully decoded message says how many it held.
            self._check_sequence(
                key,
                dg.exporter_ip,
                header.sequence,
                header.sequence + records if complete else None,
                also_fine=(records, flows),
            )
            if problem:
                problems.append(problem)
        if problems:
            raise DecodeError(problems[0], "IPFIX message")

    # ------------------------------------------------------------------ sets

    def _walk(
        self,
        data: bytes,
        ip: str,
        port: int,
        arrived: float,
        key: SessionKey,
        header: MessageHeader,
        sets: list[SetSpan],
        out: Decoded,
    ) -> bool:
        """Handle every set of a message; False when some data set could not be decoded now."""
        complete = True
        template_ids = (0, 1) if header.version == 9 else (2, 3)
        for span in sets:
            try:
                if span.set_id in template_ids:
                    self._template_set(data, ip, key, header.version, span, out)
                    # Counted even when nothing changed: a resent template or a withdrawal is
                    # what the datagram was for, not a silent drop.
                    self.stats.template_sets[ip] += 1
                elif span.set_id >= 256:
                    if not self._data_set(data, ip, port, arrived, key, header, span, out):
                        complete = False
                else:
                    self.stats.errors[(ip, "reserved_set_id")] += 1
            except DecodeError as exc:
                # One bad set must not cost the others in the message.
                self.stats.errors[(ip, exc.reason)] += 1
                complete = False
        return complete

    def _template_set(
        self, data: bytes, ip: str, key: SessionKey, version: int, span: SetSpan, out: Decoded
    ) -> None:
        body = memoryview(data)[span.start : span.end]
        options = span.set_id in (1, 3)
        withdrawn: list[int] = []
        if version == 9:
            templates = parse_v9_templates(body, options)
        else:
            templates, withdrawn = parse_ipfix_templates(body, options)
        if not templates and not withdrawn:
            raise DecodeError("empty_set", f"template set {span.set_id} at {span.offset} holds no template")
        for tid in withdrawn:
            # RFC 7011 §8.1: withdrawing the template id of the set kind itself means "all".
            self.sessions.withdraw(key, None if tid in (2, 3) else tid)
        for template in templates:
            try:
                self.sessions.put_template(key, template)
            except TemplateLimitExceeded:
                self.stats.errors[(ip, "template_limit")] += 1
                continue
            self._release_held(key, template.template_id, out)

    def _data_set(
        self,
        data: bytes,
        ip: str,
        port: int,
        arrived: float,
        key: SessionKey,
        header: MessageHeader,
        span: SetSpan,
        out: Decoded,
    ) -> bool:
        template = self.sessions.template(key, span.set_id)
        if template is None:
            self.stats.template_misses[ip] += 1
            self._hold(_Held(data, ip, port, header, span, arrived), key)
            return False
        layout = compile_template(template)
        body = memoryview(data)[span.start : span.end]
        count, raw, columns = self._records(layout, template, body)
        if not count:
            # A set holds at least one record (RFC 7011 §3.3.1): bytes too few for one are a
            # truncated record; none, or only zeros, an empty set.
            reason = "truncated_record" if any(body) else "empty_set"
            raise DecodeError(reason, f"data set {span.set_id} at {span.offset}: no whole record")
        if template.is_options:
            if columns is None:
                columns = layout.finish(raw) if raw is not None else {}
            for record in _options_records(ip, port, header, template, layout, count, columns):
                self.sessions.absorb_options(key, record)
                out.options.append(record)
        elif count:
            out.flows.append(
                self._batch(
                    ip,
                    port,
                    header,
                    span.set_id,
                    span.offset,
                    count,
                    raw,
                    columns,
                    layout,
                    self.sessions.options(key),
                )
            )
        return True

    def _records(
        self, layout: Layout, template: Template, body: memoryview
    ) -> tuple[int, np.ndarray | None, dict[str, np.ndarray] | None]:
        """(count, structured records, None) on the fast path; (count, None, columns) otherwise."""
        if self.fast_path and layout.dtype is not None:
            raw = fixed_records(layout, body)
            return len(raw), raw, None
        count, columns, truncated = decode_records(layout, template, body)
        if truncated:
            raise DecodeError("truncated_record", f"template {template.template_id}")
        return count, None, columns

    @staticmethod
    def _batch(
        ip: str,
        port: int,
        header: MessageHeader,
        template_id: int,
        set_offset: int,
        count: int,
        raw: np.ndarray | None,
        columns: dict[str, np.ndarray] | None,
        layout: Layout,
        options: SessionOptions,
    ) -> FlowBatch:
        return FlowBatch(
            exporter_ip=ip,
            exporter_port=port,
            version=header.version,
            domain=header.domain,
            template_id=template_id,
            export_time=header.export_time,
            export_nanos=header.export_nanos,
            sys_uptime_ms=header.sys_uptime_ms,
            sequence=header.sequence,
            set_offset=set_offset,
            count=count,
            column_cache=columns,
            raw=raw,
            finish=layout.finish,
            types=layout.types,
            options=options,
        )

    # ------------------------------------------------------------------ held sets

    def _hold(self, held: _Held, key: SessionKey) -> None:
        if self.max_held_sets <= 0:
            self.stats.held_dropped[held.exporter_ip] += 1
            return
        ip = held.exporter_ip
        if self._held_per_exporter.get(ip, 0) >= self.max_held_sets:
            self._drop_oldest(ip)
        self._held.setdefault((key, held.span.set_id), deque()).append(held)
        self._held_per_exporter[ip] = self._held_per_exporter.get(ip, 0) + 1

    def _drop_oldest(self, ip: str) -> None:
        oldest_key, oldest_time = None, float("inf")
        for k, queue in self._held.items():
            if k[0][0] == ip and queue and queue[0].arrived < oldest_time:
                oldest_key, oldest_time = k, queue[0].arrived
        if oldest_key is not None:
            self._held[oldest_key].popleft()
            if not self._held[oldest_key]:
                del self._held[oldest_key]
            self._held_per_exporter[ip] -= 1
            self.stats.held_dropped[ip] += 1

    def _release_held(self, key: SessionKey, template_id: int, out: Decoded) -> None:
        queue = self._held.pop((key, template_id), None)
        if not queue:
            return
        for held in queue:
            self._held_per_exporter[held.exporter_ip] -= 1
            self.stats.held_released[held.exporter_ip] += 1
            try:
                self._data_set(
                    held.data,
                    held.exporter_ip,
                    held.exporter_port,
                    held.arrived,
                    key,
                    held.header,
                    held.span,
                    out,
                )
            except DecodeError as exc:
                self.stats.errors[(held.exporter_ip, exc.reason)] += 1

    def expire_held(self, now: float) -> int:
        """Drop held sets older than ``held_set_timeout``; returns how many."""
        self._last_sweep = now
        dropped = 0
        for k in list(self._held):
            queue = self._held[k]
            while queue and now - queue[0].arrived > self.held_set_timeout:
                held = queue.popleft()
                self._held_per_exporter[held.exporter_ip] -= 1
                self.stats.held_dropped[held.exporter_ip] += 1
                dropped += 1
            if not queue:
                del self._held[k]
        return dropped

    # ------------------------------------------------------------------ sequence numbers

    def _check_sequence(
        self,
        key: SessionKey,
        ip: str,
        sequence: int,
        next_expected: int | None,
        also_fine: tuple[int, ...] = (),
    ) -> None:
        """Count records/packets missing between this message and the last one of the session.

        ``also_fine`` lists other sequence values that mean "nothing lost" for exporters that
        read the RFC differently (softflowd's IPFIX counts the current message's records).
        """
        expected = self._next_sequence.get(key)
        previous = self._last_sequence.get(key)
        # In order is the common case: decided by one comparison, before any alternative.
        if (
            expected is not None
            and previous is not None
            and sequence != expected
            and all(sequence != (previous + n) & _U32 for n in also_fine)
        ):
            gap = (sequence - expected) & _U32
            # Forward jumps are loss; a backward jump is a reorder or an exporter restart.
            if 0 < gap < 0x80000000:
                self.stats.sequence_lost[ip] += gap
        self._last_sequence[key] = sequence
        if next_expected is None:
            self._next_sequence.pop(key, None)
        else:
            self._next_sequence[key] = next_expected & _U32


def _options_records(
    ip: str,
    port: int,
    header: MessageHeader,
    template: Template,
    layout: Layout,
    count: int,
    columns: dict[str, np.ndarray],
) -> list[OptionsRecord]:
    scope_names = [c.name for c in layout.columns if c.index < template.scope_count]
    value_names = [c.name for c in layout.columns if c.index >= template.scope_count]
    lists: dict[str, list[Any]] = {name: columns[name].tolist() for name in columns}
    return [
        OptionsRecord(
            exporter_ip=ip,
            exporter_port=port,
            version=header.version,
            domain=header.domain,
            template_id=template.template_id,
            scope={n: lists[n][i] for n in scope_names},
            values={n: lists[n][i] for n in value_names},
        )
        for i in range(count)
    ]
