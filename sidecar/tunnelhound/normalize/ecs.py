"""FlowBatch → ECS flow documents (DESIGN §4).

Vectorized where numpy helps (times, counters, locality); the document dicts themselves
are assembled per record because every later stage (features, rules, sinks) works on
documents.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xxhash

from tunnelhound.model import FlowBatch
from tunnelhound.normalize.addresses import ipv4_packed, ipv4_text, ipv6_text, mac_text
from tunnelhound.normalize.community_id import community_id
from tunnelhound.normalize.flow_id import flow_id
from tunnelhound.normalize.group import RecordHeaders, headers_of, merge_batches
from tunnelhound.normalize.locality import DEFAULT_INTERNAL_NETWORKS, Networks, direction_array
from tunnelhound.normalize.protocols import TRANSPORT_NAMES
from tunnelhound.normalize.times import flow_times

ECS_VERSION = "8.17.0"
DATASET = "tunnelhound.flow"

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


class Normalizer:
    """Turn decoded batches into ECS flow documents."""

    def __init__(self, options: NormalizeOptions | None = None) -> None:
        self.options = options or NormalizeOptions()
        self.networks = Networks(self.options.internal_networks)
        self._data_stream = {"type": "logs", "dataset": DATASET, "namespace": self.options.namespace}

    def normalize(self, batch: FlowBatch) -> list[dict[str, Any]]:
        """One ECS document per record of ``batch`` (uniflows; see :mod:`biflow` for pairing)."""
        return self._normalize(batch, headers_of(batch))

    def normalize_many(self, batches: list[FlowBatch]) -> list[dict[str, Any]]:
        """Documents for many batches at once: sets of one template are merged first.

        Documents come grouped by exporter session and template, in order of arrival within
        a group.
        """
        docs: list[dict[str, Any]] = []
        for batch, headers in merge_batches(batches):
            docs.extend(self._normalize(batch, headers))
        return docs

    def _normalize(self, batch: FlowBatch, headers: RecordHeaders) -> list[dict[str, Any]]:
        n = batch.count
        if n == 0:
            return []
        cols = batch.columns
        src_packed, src_text, src_internal, ip_type = self._addresses(batch, "source")
        dst_packed, dst_text, dst_internal, _ = self._addresses(batch, "destination")
        proto = _first(cols, ("protocol_identifier",), n).astype(np.int64)
        sport, dport = self._ports(cols, proto, n)
        hashable = _hashable_tuples(proto, sport, dport).tolist()
        rate = _sampling_rate(batch)
        raw_bytes = _first(cols, _BYTES, n)
        raw_packets = _first(cols, _PACKETS, n)
        rev_bytes_col = _first_or_none(cols, _REV_BYTES)
        rev_packets_col = _first_or_none(cols, _REV_PACKETS)
        src_bytes = _scaled(raw_bytes, rate)
        src_packets = _scaled(raw_packets, rate)
        is_biflow = rev_bytes_col is not None or rev_packets_col is not None
        dst_bytes = _scaled(rev_bytes_col, rate) if rev_bytes_col is not None else [0] * n
        dst_packets = _scaled(rev_packets_col, rate) if rev_packets_col is not None else [0] * n
        start_ns, end_ns = flow_times(batch, headers)
        start_iso = _iso(start_ns)
        end_iso = _iso(end_ns)
        duration = np.maximum(end_ns - start_ns, 0).tolist()
        src_loc = np.where(src_internal, "internal", "external").tolist()
        dst_loc = np.where(dst_internal, "internal", "external").tolist()
        flow_loc = np.where(src_internal & dst_internal, "internal", "external").tolist()
        directions = direction_array(src_internal, dst_internal).tolist()
        event_ids = self._event_ids(batch, headers)
        applications = _applications(batch)
        raw = _raw_fields(batch)
        rate_list = rate.tolist() if isinstance(rate, np.ndarray) else [rate] * n
        proto_l = proto.tolist()
        sport_l, dport_l = sport.tolist(), dport.tolist()
        seed = self.options.community_id_seed
        exporters = self._exporters(batch, headers)
        created = _iso(np.array([time.time_ns()], dtype=np.int64))[0]
        docs = []
        for i in range(n):
            p = proto_l[i]
            sb, db = src_bytes[i], dst_bytes[i]
            sp, dp = src_packets[i], dst_packets[i]
            sip, dip = src_text[i], dst_text[i]
            transport = TRANSPORT_NAMES.get(p, str(p))
            spi, dpi = sport_l[i], dport_l[i]
            doc: dict[str, Any] = {
                "@timestamp": end_iso[i],
                "ecs": {"version": ECS_VERSION},
                "data_stream": self._data_stream,
                "event": {
                    "kind": "event",
                    "category": ["network"],
                    "type": ["connection"],
                    "action": "network_flow",
                    "dataset": DATASET,
                    "module": "tunnelhound",
                    "id": event_ids[i],
                    "start": start_iso[i],
                    "end": end_iso[i],
                    "duration": duration[i],
                    "created": created,
                },
                "source": {"ip": sip, "port": spi, "bytes": sb, "packets": sp, "locality": src_loc[i]},
                "destination": {"ip": dip, "port": dpi, "bytes": db, "packets": dp, "locality": dst_loc[i]},
                "network": {
                    "transport": transport,
                    "iana_number": str(p),
                    "type": ip_type[i],
                    "bytes": sb + db,
                    "packets": sp + dp,
                    "community_id": community_id(p, src_packed[i], dst_packed[i], spi, dpi, seed)
                    if hashable[i] and len(src_packed[i]) == len(dst_packed[i])
                    else None,
                    "direction": directions[i],
                },
                "flow": {
                    "id": flow_id(src_packed[i], dst_packed[i], spi, dpi, p) if hashable[i] else None,
                    "locality": flow_loc[i],
                },
                "observer": {"ip": batch.exporter_ip},
                "related": {"ip": [sip, dip] if sip != dip else [sip]},
                "netflow": {"exporter": exporters[i], **raw[i]},
                "tunnelhound": {"biflow": "exporter" if is_biflow else "uniflow"},
            }
            if applications is not None and applications[i]:
                doc["network"]["application"] = applications[i]
            if rate_list[i] != 1.0:
                doc["tunnelhound"]["sampling_rate"] = rate_list[i]
            if p in _ICMP:
                # ICMP has no ports: type and code go to their own fields (they were only
                # port-shaped for Community ID and flow.id above).
                del doc["source"]["port"], doc["destination"]["port"]
                _icmp_fields(doc, p, spi, dpi)
            docs.append(doc)
        _macs(batch, docs)
        return docs

    # ------------------------------------------------------------------ pieces

    def _addresses(self, batch: FlowBatch, side: str) -> tuple[list[bytes], list[str], np.ndarray, list[str]]:
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
            packed = ipv4_packed(v4)
            return packed, ipv4_text(packed), self.networks.contains_v4(v4), ["ipv4"] * n
        if v6 is not None and v4 is None:
            packed6: list[bytes] = v6.tolist()
            return packed6, ipv6_text(packed6), self.networks.contains_v6(v6.view("S16")), ["ipv6"] * n
        if v4 is not None and v6 is not None:
            # Mixed templates (some firewalls): a zero IPv4 address means the record is IPv6.
            p4 = ipv4_packed(v4)
            p6: list[bytes] = v6.tolist()
            use6 = (v4 == 0).tolist()
            packed = [b6 if u else b4 for b4, b6, u in zip(p4, p6, use6, strict=True)]
            text = [ipv6_text([p])[0] if u else ipv4_text([p])[0] for p, u in zip(packed, use6, strict=True)]
            internal = np.where(
                use6, self.networks.contains_v6(v6.view("S16")), self.networks.contains_v4(v4)
            )
            return packed, text, internal, ["ipv6" if u else "ipv4" for u in use6]
        zero = [b"\0\0\0\0"] * n
        return zero, ["0.0.0.0"] * n, np.zeros(n, dtype=bool), ["ipv4"] * n

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
    def _event_ids(batch: FlowBatch, headers: RecordHeaders) -> list[str]:
        # Deterministic: a replay or a retried bulk request yields the same _id (DESIGN §7).
        prefix = (
            f"{batch.exporter_ip}|{batch.exporter_port}|{batch.version}|{batch.domain}|{batch.template_id}|"
        )
        digest = xxhash.xxh3_128_hexdigest
        seconds = (headers.export_ns // 1_000_000_000).tolist()
        return [
            digest(f"{prefix}{t}|{q}|{o}|{i}".encode())
            for t, q, o, i in zip(
                seconds,
                headers.sequence.tolist(),
                headers.set_offset.tolist(),
                headers.index.tolist(),
                strict=True,
            )
        ]

    @staticmethod
    def _exporters(batch: FlowBatch, headers: RecordHeaders) -> list[dict[str, Any]]:
        """``netflow.exporter`` per record; records of one message share one dict."""
        seconds = headers.export_ns // 1_000_000_000
        uptime = (
            headers.uptime_ms if headers.uptime_ms is not None else np.full(batch.count, -1, dtype=np.int64)
        )
        pairs = np.stack([seconds, uptime], axis=1)
        unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
        stamps = _iso(unique[:, 0] * 1_000_000_000)
        shared = []
        for (_sec, up), stamp in zip(unique.tolist(), stamps, strict=True):
            exporter: dict[str, Any] = {
                "address": f"{batch.exporter_ip}:{batch.exporter_port}",
                "source_id": batch.domain,
                "version": batch.version,
                "timestamp": stamp,
            }
            if up >= 0:
                exporter["uptime_millis"] = up
            shared.append(exporter)
        return [shared[k] for k in inverse.reshape(-1).tolist()]


_V16 = np.dtype("V16")


def _hashable_tuples(proto: np.ndarray, sport: np.ndarray, dport: np.ndarray) -> np.ndarray:
    """Which records have a protocol and ports that Community ID and flow.id can pack.

    A port or protocol element sent wider than its type (or garbage) can exceed 16/8 bits;
    such a record gets no ids rather than failing the whole batch.
    """
    return (
        (proto >= 0) & (proto <= 0xFF) & (sport >= 0) & (sport <= 0xFFFF) & (dport >= 0) & (dport <= 0xFFFF)
    )


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


def _scaled(raw: np.ndarray, rate: np.ndarray | float) -> list[int]:
    if isinstance(rate, float) and rate == 1.0:
        if raw.dtype == np.uint64:
            # A 64-bit counter past 2**63 (garbage, or a wrapped total) must not turn negative.
            raw = np.minimum(raw, np.uint64(_INT64_MAX))
        return raw.astype(np.int64).tolist()
    # A garbage counter times a sampling rate can pass int64: saturate instead of letting
    # the cast produce INT64_MIN (with a RuntimeWarning).
    scaled = np.clip(np.rint(raw.astype(np.float64) * rate), -_INT64_BOUND, _INT64_BOUND)
    return scaled.astype(np.int64).tolist()


def _iso(ns: np.ndarray) -> list[str]:
    """ISO 8601 UTC with millisecond precision (what Elasticsearch ``date`` keeps)."""
    return np.datetime_as_string(
        ns.astype("datetime64[ns]").astype("datetime64[ms]"), timezone="UTC"
    ).tolist()


def _applications(batch: FlowBatch) -> list[str] | None:
    """``network.application``: only names the exporter gave (DPI), never guessed from ports."""
    cols = batch.columns
    name = cols.get("application_name")
    if name is not None and name.dtype == object:
        return [str(v).lower() for v in name.tolist()]
    pan = cols.get("app_id")
    if pan is not None and pan.dtype == object:
        return [str(v).lower() for v in pan.tolist()]
    app_id = cols.get("application_id")
    if app_id is not None and batch.options and batch.options.application_names:
        names = batch.options.application_names
        return [names.get(v, "").lower() for v in app_id.tolist()]
    return None


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


def _raw_fields(batch: FlowBatch) -> list[dict[str, Any]]:
    """Every other decoded element under ``netflow.*``, as JSON-ready values."""
    n = batch.count
    names: list[str] = []
    lists: list[list[Any]] = []
    for name, col in batch.columns.items():
        etype = batch.types.get(name, "")
        if (name in _IN_ECS and col.dtype.kind == "u") or col.dtype == _ECS_VOID.get(name):
            continue
        values, is_hex = _json_values(col, etype)
        if is_hex and etype not in _HEX_TYPES:
            # Encoded with a length its type does not allow (H3C sends 2-byte "addresses"):
            # keep the bytes, under a name whose mapping is keyword.
            name = f"{name}_hex"
        names.append(name)
        lists.append(values)
    return (
        [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=True)] if names else [{}] * n
    )


_HEX_TYPES = ("octetArray", "")


def _json_values(col: np.ndarray, etype: str) -> tuple[list[Any], bool]:
    """JSON values for a column, and whether they are hex renderings of raw bytes."""
    kind = col.dtype.kind
    if etype == "ipv4Address" and kind == "u":
        return ipv4_text(ipv4_packed(col)), False
    if etype == "ipv6Address" and kind == "V" and col.dtype.itemsize == 16:
        return ipv6_text(col.tolist()), False
    if etype == "macAddress" and kind == "V" and col.dtype.itemsize == 6:
        return mac_text(col, ecs=False), False
    if etype in _DATE_TYPES and kind == "u":
        return _iso(col.astype(np.int64) * _DATE_TYPES[etype]), False
    if etype in _NTP_TYPES and kind == "i":
        return _iso(col), False
    if kind == "V" or (kind == "O" and col.size and isinstance(col[0], bytes)):
        return [bytes(v).hex() for v in col.tolist()], True
    return col.tolist(), False


def _icmp_fields(doc: dict[str, Any], proto: int, icmp_type: int, icmp_code: int) -> None:
    key = "icmp" if proto == 1 else "icmpv6"
    doc["tunnelhound"][key] = {"type": icmp_type, "code": icmp_code}


def _macs(batch: FlowBatch, docs: list[dict[str, Any]]) -> None:
    for side, names in (
        ("source", ("source_mac_address", "post_source_mac_address")),
        ("destination", ("destination_mac_address", "post_destination_mac_address")),
    ):
        for name in names:
            col = batch.columns.get(name)
            if col is not None and col.dtype.kind == "V":
                for doc, mac in zip(docs, mac_text(col, ecs=True), strict=True):
                    doc[side]["mac"] = mac
                break
