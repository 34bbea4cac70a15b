"""FlowBatch → normalized flows (DESIGN §4), computed a column at a time.

The result is a :class:`~tunnelhound.normalize.frame.FlowFrame`; the ECS document layout
lives in ``frame.py``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from tunnelhound.model import FlowBatch
from tunnelhound.normalize.addresses import FlowTuples, mac_text, packed4, packed6
from tunnelhound.normalize.applications import application_names
from tunnelhound.normalize.columns import Columns, Text
from tunnelhound.normalize.frame import ABSENT, COLUMNS, FlowFrame
from tunnelhound.normalize.group import RecordHeaders, headers_of, merge_batches
from tunnelhound.normalize.keys import flow_key_texts, hashable_tuples
from tunnelhound.normalize.locality import DEFAULT_INTERNAL_NETWORKS, Networks
from tunnelhound.normalize.rows import Rows
from tunnelhound.normalize.rows import object_column as _objects
from tunnelhound.normalize.times import flow_times

# Counter elements in order of preference: delta counts, totals, then NSEL/initiator forms.
_BYTES = ("octet_delta_count", "octet_total_count", "initiator_octets", "post_octet_delta_count")
_PACKETS = ("packet_delta_count", "packet_total_count", "initiator_packets", "post_packet_delta_count")
_REV_BYTES = ("reverse_octet_delta_count", "reverse_octet_total_count", "responder_octets")
_REV_PACKETS = ("reverse_packet_delta_count", "reverse_packet_total_count", "responder_packets")
_SRC_PORT = ("source_transport_port", "tcp_source_port", "udp_source_port")
_DST_PORT = ("destination_transport_port", "tcp_destination_port", "udp_destination_port")
_ICMP_TYPE_CODE = ("icmp_type_code_ipv4", "icmp_type_code_ipv6")
_SAMPLER = ("sampler_id", "selector_id", "flow_sampler_id")
_DATE_TYPES = {"dateTimeSeconds": 1_000_000_000, "dateTimeMilliseconds": 1_000_000}
_NTP_TYPES = ("dateTimeMicroseconds", "dateTimeNanoseconds")
_ICMP = (1, 58)


@dataclass(frozen=True, slots=True)
class NormalizeOptions:
    """Knobs of the normalizer (from the ``normalize`` config section)."""

    internal_networks: Sequence[str] = DEFAULT_INTERNAL_NETWORKS
    community_id_seed: int = 0
    namespace: str = "default"
    application_tables: Sequence[str] = ()
    """User files naming application ids (see :mod:`~tunnelhound.normalize.applications`)."""


class Normalizer:
    """Turn decoded batches into normalized flows (:class:`FlowFrame`) or ECS documents."""

    def __init__(self, options: NormalizeOptions | None = None) -> None:
        self.options = options or NormalizeOptions()
        self.networks = Networks(self.options.internal_networks)

    def normalize(self, batch: FlowBatch) -> list[dict[str, Any]]:
        """One ECS document per record of ``batch`` (uniflows; see :mod:`biflow` for pairing)."""
        return self.frame(batch, headers_of(batch)).documents()

    def normalize_many(self, batches: list[FlowBatch]) -> list[dict[str, Any]]:
        """Documents for many batches at once (see :meth:`frames`)."""
        return self.frames(batches).documents()

    def frames(self, batches: list[FlowBatch]) -> FlowFrame:
        """Normalized flows of many batches: sets of one template are merged first.

        Rows come grouped by exporter session and template, in order of arrival within a group.
        """
        parts = [self.frame(batch, headers) for batch, headers in merge_batches(batches)]
        return FlowFrame.concat(parts, self.options.namespace)

    def frame(self, batch: FlowBatch, headers: RecordHeaders) -> FlowFrame:
        """Normalized flows of one batch (or one merged group of batches)."""
        n = batch.count
        if n == 0:
            return FlowFrame.empty(self.options.namespace)
        cols = batch.columns
        src, dst = self._addresses(batch, "source"), self._addresses(batch, "destination")
        proto = _first(cols, ("protocol_identifier",), n).astype(np.int64)
        sport, dport = self._ports(cols, proto, n)
        rate = _sampling_rate(batch)
        rev_bytes = _first_or_none(cols, _REV_BYTES)
        rev_packets = _first_or_none(cols, _REV_PACKETS)
        start_ns, end_ns = flow_times(batch, headers)
        raw_bytes = _first(cols, _BYTES, n)
        icmp = np.isin(proto, _ICMP)
        ok = hashable_tuples(proto, sport, dport)
        tuples = FlowTuples(proto, sport, dport, ok, src.packed, src.v6, dst.packed, dst.v6)
        community, flows = flow_key_texts(tuples, self.options.community_id_seed)
        zeros = np.zeros(n, dtype=np.int64)
        absent = np.full(n, ABSENT, dtype=np.int64)
        none = np.full(n, None, dtype=object)
        applications = application_names(
            cols, batch.options.application_names if batch.options else None, self.options.application_tables
        )
        created = Rows(1).iso(np.array([time.time_ns()], dtype=np.int64)).strings()[0]
        flags = _first_or_none(cols, ("tcp_control_bits",))
        rev_flags = _first_or_none(cols, ("reverse_tcp_control_bits",))
        initial = _first_or_none(cols, ("initial_tcp_flags",))
        declared = _first_or_none(cols, ("biflow_direction",))
        src_mac, dst_mac = _mac_column(batch, "source"), _mac_column(batch, "destination")
        out = {
            "start_ns": start_ns,
            "end_ns": end_ns,
            "src_port": np.where(icmp, ABSENT, sport),
            "dst_port": np.where(icmp, ABSENT, dport),
            "src_bytes": _scaled(raw_bytes, rate),
            "src_packets": _scaled(_first(cols, _PACKETS, n), rate),
            "dst_bytes": _scaled(rev_bytes, rate) if rev_bytes is not None else zeros,
            "dst_packets": _scaled(rev_packets, rate) if rev_packets is not None else zeros,
            "proto": proto,
            "icmp_type": np.where(icmp, sport, ABSENT),
            "icmp_code": np.where(icmp, dport, ABSENT),
            "flags": flags.astype(np.int64) if flags is not None else absent,
            "rev_flags": rev_flags.astype(np.int64) if rev_flags is not None else absent,
            "initial_flags": initial.astype(np.int64) if initial is not None else absent,
            "biflow_direction": declared.astype(np.int64) if declared is not None else absent,
            "src_internal": np.asarray(src.internal, dtype=bool),
            "dst_internal": np.asarray(dst.internal, dtype=bool),
            "is_v6": src.v6,
            "biflow": np.full(n, 1 if rev_bytes is not None or rev_packets is not None else 0, dtype=np.int8),
            "sampling_rate": np.broadcast_to(np.asarray(rate, dtype=np.float64), (n,)).copy(),
            "application": _objects(applications) if applications is not None else none,
            "src_mac": src_mac if src_mac is not None else none,
            "dst_mac": dst_mac if dst_mac is not None else none,
            "reverse_event_id": none.copy(),
            "observer_type": np.full(n, None, dtype=object),
            "extra": np.full(n, None, dtype=object),
        }
        # Text columns as recipes (see columns.py): rendered from these numbers when written.
        event_ids = self._event_ids(
            batch, headers, (src.text, dst.text, sport, dport, proto, raw_bytes, end_ns)
        )
        recipes: dict[str, Rows | Text] = {
            "community_id": community,
            "flow_id": flows,
            "start_iso": Rows(n).iso(start_ns),
            "end_iso": Rows(n).iso(end_ns),
            "event_id": Rows(n).hex(event_ids),
            "src_ip": src.text,
            "dst_ip": dst.text,
            "observer": Rows(n).constant(batch.exporter_ip),
            "netflow": _netflow_fragments(batch, headers),
            "created": Rows(n).constant(created),
        }
        columns = Columns({name: recipes[name] if name in recipes else out[name] for name in COLUMNS})
        return FlowFrame(n, columns, self.options.namespace)

    # ------------------------------------------------------------------ pieces

    def _addresses(self, batch: FlowBatch, side: str) -> _Side:
        cols, n = batch.columns, batch.count
        v4 = cols.get(f"{side}_ipv4_address")
        v6 = cols.get(f"{side}_ipv6_address")
        # An address sent with a length its type cannot have arrives as raw bytes (it stays
        # under netflow.*): no address to print, hash or place.
        if v4 is not None and v4.dtype.kind != "u":
            v4 = None
        if v6 is not None and v6.dtype != _V16:
            v6 = None
        if v4 is not None and v6 is None:
            return _Side(
                packed4(v4),
                np.zeros(n, dtype=bool),
                Rows(n).ipv4(v4),
                self.networks.contains_v4(v4),
            )
        if v6 is not None and v4 is None:
            internal = self.networks.contains_v6(v6.view("S16"))
            return _Side(packed6(v6), np.ones(n, dtype=bool), Rows(n).ipv6(v6), internal)
        if v4 is not None and v6 is not None:
            # Mixed templates (some firewalls): a zero IPv4 address means the record is IPv6.
            use6 = v4 == 0
            return _Side(
                np.where(use6[:, None], packed6(v6), packed4(v4)),
                use6,
                Rows(n).ipv6(v6, mask=use6).ipv4(v4, mask=~use6),
                np.where(use6, self.networks.contains_v6(v6.view("S16")), self.networks.contains_v4(v4)),
            )
        return _Side(
            np.zeros((n, 16), dtype=np.uint8),
            np.zeros(n, dtype=bool),
            Rows(n).lit("0.0.0.0"),
            np.zeros(n, dtype=bool),
        )

    @staticmethod
    def _ports(cols: dict[str, np.ndarray], proto: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        sport = _first(cols, _SRC_PORT, n).astype(np.int64)
        dport = _first(cols, _DST_PORT, n).astype(np.int64)
        icmp = np.isin(proto, _ICMP)
        if icmp.any():
            # Community ID and Filebeat put ICMP type in the source port and code in the
            # destination port; exporters send type*256+code (softflowd: in the destination port).
            tc = _first_or_none(cols, _ICMP_TYPE_CODE)
            if tc is None:
                tc = np.where(dport != 0, dport, sport)
            tc = tc.astype(np.int64)
            sport = np.where(icmp, tc >> 8, sport)
            dport = np.where(icmp, tc & 0xFF, dport)
        return sport, dport

    @staticmethod
    def _event_ids(
        batch: FlowBatch,
        headers: RecordHeaders,
        content: tuple[Rows, Rows, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ) -> np.ndarray:
        """Deterministic ids: a replay or a retried bulk request yields the same ``_id`` (DESIGN §7).

        Where the record came from (exporter, domain, template, export second, sequence, set
        offset, index) plus what it says (``content``: source and destination address, ports,
        protocol, raw byte counter, end time): two different flows that happen to share every
        header value (one capture exported twice with other settings) must not collapse into
        one document. The id is the xxh3-128 hex digest of those values joined by ``|``;
        returned as the (n, 16) raw digests (the frame renders their hex).
        """
        src_text, dst_text, sport, dport, proto, raw_bytes, end_ns = content
        rows = Rows(batch.count).lit(
            f"{batch.exporter_ip}|{batch.exporter_port}|{batch.version}|{batch.domain}|{batch.template_id}|"
        )
        rows.integer(headers.export_ns // 1_000_000_000).lit("|").integer(headers.sequence).lit("|")
        rows.integer(headers.set_offset).lit("|").integer(headers.index).lit("|")
        rows.splice(src_text).lit("|").splice(dst_text).lit("|").integer(sport).lit("|").integer(dport).lit(
            "|"
        )
        rows.integer(proto).lit("|")
        if raw_bytes.dtype.kind == "b":
            rows.pick(raw_bytes.astype(np.int64), ("False", "True"))  # as Python writes a bool
        else:
            rows.integer(raw_bytes)
        return rows.lit("|").integer(end_ns).xxh3_128_digests()


@dataclass(frozen=True, slots=True)
class _Side:
    """One side's addresses: packed for the flow hashes, text (a recipe), and locality."""

    packed: np.ndarray
    """(n, 16) uint8: IPv6 addresses, or IPv4 in the first 4 bytes."""
    v6: np.ndarray
    text: Rows
    internal: np.ndarray


_V16 = np.dtype("V16")


def _first(cols: dict[str, np.ndarray], names: Sequence[str], n: int) -> np.ndarray:
    for name in names:
        col = cols.get(name)
        if col is not None and col.dtype.kind in "uib":
            return col
    return np.zeros(n, dtype=np.int64)


def _first_or_none(cols: dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray | None:
    for name in names:
        col = cols.get(name)
        if col is not None and col.dtype.kind in "uib":
            return col
    return None


def _sampling_rate(batch: FlowBatch) -> np.ndarray | float:
    opts = batch.options
    default = opts.sampling_default if opts and opts.sampling_default else 1.0
    if opts and opts.sampling_by_id:
        sampler = _first_or_none(batch.columns, _SAMPLER)
        if sampler is not None:
            by_id = opts.sampling_by_id
            return np.array([by_id.get(s, default) for s in sampler.tolist()], dtype=np.float64)
    return default


_INT64_BOUND = float(2**63 - 1024)
"""Largest float64 below 2**63: the widest a scaled counter may be and still cast to int64."""


_INT64_MAX = 2**63 - 1


def _scaled(raw: np.ndarray, rate: np.ndarray | float) -> np.ndarray:
    if isinstance(rate, float) and rate == 1.0:
        if raw.dtype == np.uint64:
            # A 64-bit counter past 2**63 (garbage, or a wrapped total) must not turn negative.
            raw = np.minimum(raw, np.uint64(_INT64_MAX))
        return raw.astype(np.int64)
    # A garbage counter times a sampling rate can pass int64: saturate instead of letting
    # the cast produce INT64_MIN (with a RuntimeWarning).
    scaled = np.clip(np.rint(raw.astype(np.float64) * rate), -_INT64_BOUND, _INT64_BOUND)
    return scaled.astype(np.int64)


# Elements whose value the document already carries verbatim in ECS fields (DESIGN §4:
# "every other decoded IE under netflow.*"). Counters and times stay: the ECS counters are
# renormalized, and the raw times show what the exporter sent.
_IN_ECS = frozenset(
    {
        "source_ipv4_address",
        "destination_ipv4_address",
        "source_ipv6_address",
        "destination_ipv6_address",
        *_SRC_PORT,
        *_DST_PORT,
        "protocol_identifier",
        "source_mac_address",
        "destination_mac_address",
    }
)


_ECS_VOID = {
    "source_ipv6_address": np.dtype("V16"),
    "destination_ipv6_address": np.dtype("V16"),
    "source_mac_address": np.dtype("V6"),
    "destination_mac_address": np.dtype("V6"),
}


def _netflow_fragments(batch: FlowBatch, headers: RecordHeaders) -> Rows:
    """Per record, the body of the ``netflow`` object: the exporter header, then every other
    decoded element (the recipe of its JSON text, built column by column)."""
    rows = _exporter_fragments(Rows(batch.count), batch, headers)
    for name, col in batch.columns.items():
        if (name in _IN_ECS and col.dtype.kind == "u") or col.dtype == _ECS_VOID.get(name):
            continue
        _json_member(rows, name, col, batch.types.get(name, ""))
    return rows


def _exporter_fragments(rows: Rows, batch: FlowBatch, headers: RecordHeaders) -> Rows:
    """``"exporter":{...}`` per record; the records of one message share one text."""
    seconds = headers.export_ns // 1_000_000_000
    uptime = headers.uptime_ms if headers.uptime_ms is not None else np.full(batch.count, -1, dtype=np.int64)
    # Records come a message at a time: one text per run of equal header values.
    starts = np.flatnonzero(np.r_[True, (seconds[1:] != seconds[:-1]) | (uptime[1:] != uptime[:-1])])
    stamps = Rows(len(starts)).iso(seconds[starts] * 1_000_000_000).strings()
    head = (
        f'"exporter":{{"address":"{batch.exporter_ip}:{batch.exporter_port}",'
        f'"source_id":{batch.domain},"version":{batch.version},"timestamp":"'
    )
    shared = [
        head + stamp + ('"}' if up < 0 else f'","uptime_millis":{up}}}')
        for up, stamp in zip(uptime[starts].tolist(), stamps, strict=True)
    ]
    run = np.zeros(batch.count, dtype=np.int64)
    run[starts] = 1
    return rows.pick(np.cumsum(run) - 1, shared)


_HEX_TYPES = ("octetArray", "")


def _json_member(rows: Rows, name: str, col: np.ndarray, etype: str) -> None:
    """Append ``,"name":value`` (JSON) for each row of one element's column."""
    kind = col.dtype.kind
    key = f',"{name}":'
    if etype == "ipv4Address" and kind == "u":
        rows.lit(key).ipv4(col, before='"', after='"')
    elif etype == "ipv6Address" and kind == "V" and col.dtype.itemsize == 16:
        rows.lit(key).ipv6(col, before='"', after='"')
    elif etype == "macAddress" and kind == "V" and col.dtype.itemsize == 6:
        rows.lit(key).text(mac_text(col, ecs=False), before='"', after='"')
    elif etype in _DATE_TYPES and kind == "u":
        rows.lit(key).iso(col.astype(np.int64) * _DATE_TYPES[etype], before='"', after='"')
    elif etype in _NTP_TYPES and kind == "i":
        rows.lit(key).iso(col, before='"', after='"')
    elif kind == "V" or (kind == "O" and col.size and isinstance(col[0], bytes)):
        # Raw bytes; encoded with a length its type does not allow (H3C sends 2-byte
        # "addresses"), they go under a name whose mapping is keyword.
        rows.lit(key if etype in _HEX_TYPES else f',"{name}_hex":')
        rows.text([bytes(v).hex() for v in col.tolist()], before='"', after='"')
    elif kind in "iub":
        rows.lit(key).integer(col)
    else:
        # Strings from the exporter, floats (NaN becomes null): orjson does the escaping.
        dumps = orjson.dumps
        rows.lit(key).text([dumps(v).decode() for v in col.tolist()])


def _mac_column(batch: FlowBatch, side: str) -> np.ndarray | None:
    """ECS ``source.mac``/``destination.mac`` (upper-case, dashes) from the first MAC element."""
    for name in (f"{side}_mac_address", f"post_{side}_mac_address"):
        col = batch.columns.get(name)
        if col is not None and col.dtype.kind == "V":
            return _objects(mac_text(col, ecs=True))
    return None
