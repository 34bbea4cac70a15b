"""Normalized flows from flow records something else already decoded (DESIGN §4).

Exporter datagrams go through :mod:`~tunnelhound.normalize.ecs`, a column at a time.  Other
sources hand over finished records instead: nfdump archives (``sources/nfdump.py``), Zeek's
conn records.  Such a source maps each record to a :class:`FlowRecord`, and
:func:`frame_from_records` turns a list of them into the same :class:`FlowFrame` the exporter
path makes, with the same Community ID, ``flow.id``, locality, ISO times and event-id hash, so
the features, rules and sinks downstream cannot tell where a flow came from.

A record that carries both directions (``biflow=True``: Zeek conn records, NSEL/biflow
exports kept by nfdump) becomes a row of biflow kind ``exporter``: the stitcher only checks
its orientation and never waits for a partner.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tunnelhound.normalize.addresses import packed_bytes
from tunnelhound.normalize.frame import ABSENT, FlowFrame
from tunnelhound.normalize.keys import flow_keys
from tunnelhound.normalize.locality import DEFAULT_INTERNAL_NETWORKS, Networks
from tunnelhound.normalize.rows import Rows, object_column

_ICMP = (1, 58)
_BIFLOW_EXPORTER = 1
"""Index of ``"exporter"`` in :data:`~tunnelhound.normalize.frame.BIFLOW_KINDS`."""


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """One decoded flow, as a source hands it to :func:`frame_from_records`.

    Addresses are text (IPv4 dotted quad or any IPv6 form; they are rendered canonically).
    ``src_*`` counters are what the source (initiator) sent; ``dst_*`` what the destination
    sent back, 0 for a uniflow.  Ports are None where the protocol has none (ICMP: its type
    and code go in ``icmp_type``/``icmp_code``).

    ``identity`` must be stable for the record and unique within the source: its hash is
    ``event.id`` (the Elasticsearch ``_id``), so replaying the same archive twice writes the
    same documents once (DESIGN §7).  Sources prefix it with their own name and include where
    the record sits (file, offset) as well as what it says.

    ``netflow`` and ``extra`` are JSON object members without the braces: the body of the
    ``netflow`` object (exporter header, raw elements) and members added at the top level of
    the document (e.g. ``'"zeek":{"session_id":"C1"}'``); None renders nothing.
    """

    start_ns: int
    end_ns: int
    src_ip: str
    dst_ip: str
    src_port: int | None
    dst_port: int | None
    proto: int
    src_bytes: int
    src_packets: int
    observer_ip: str
    identity: str
    dst_bytes: int = 0
    dst_packets: int = 0
    icmp_type: int | None = None
    icmp_code: int | None = None
    flags: int | None = None
    """TCP flags the source sent (OR of all its packets)."""
    rev_flags: int | None = None
    """TCP flags the destination sent (biflows only)."""
    application: str | None = None
    """Lower-case DPI application name the observer gave (``network.application``)."""
    observer_type: str | None = None
    biflow: bool = False
    """The record carries both directions (``dst_*`` counters are the reply, even if 0)."""
    initiator_known: bool = False
    """The source is the initiator as the observer determined it (Zeek's originator): biflow
    orientation keeps it, as for an exporter's biflowDirection 1 (RFC 5103), instead of
    guessing from flags and ports."""
    netflow: str | None = None
    extra: str | None = None


def frame_from_records(
    records: Sequence[FlowRecord],
    *,
    internal_networks: Sequence[str] | Networks = DEFAULT_INTERNAL_NETWORKS,
    community_id_seed: int = 0,
    namespace: str = "default",
) -> FlowFrame:
    """One :class:`FlowFrame` row per record, in order.

    Raises ``ValueError`` naming the record's identity when an address is not an IP address:
    sources validate what they read, so this is a programming error, not bad input.
    """
    n = len(records)
    if n == 0:
        return FlowFrame.empty(namespace)
    networks = internal_networks if isinstance(internal_networks, Networks) else Networks(internal_networks)
    src_packed, src_text = _addresses(records, "src_ip")
    dst_packed, dst_text = _addresses(records, "dst_ip")
    proto = np.array([r.proto for r in records], dtype=np.int64)
    icmp_type = _ints([r.icmp_type for r in records])
    icmp_code = _ints([r.icmp_code for r in records])
    src_port = _ints([r.src_port for r in records])
    dst_port = _ints([r.dst_port for r in records])
    icmp = np.isin(proto, _ICMP)
    # What the keys hash, as the exporter path does: ICMP type/code in the ports; a protocol
    # without ports hashes 0 (what exporters send there).
    sport = np.where(icmp, icmp_type, np.maximum(src_port, 0))
    dport = np.where(icmp, icmp_code, np.maximum(dst_port, 0))
    src, src_v6 = packed_bytes(src_packed)
    dst, dst_v6 = packed_bytes(dst_packed)
    community, flows = flow_keys(proto, sport, dport, src, src_v6, dst, dst_v6, community_id_seed)
    start_ns = np.array([r.start_ns for r in records], dtype=np.int64)
    end_ns = np.array([r.end_ns for r in records], dtype=np.int64)
    absent = np.full(n, ABSENT, dtype=np.int64)
    none = np.full(n, None, dtype=object)
    created = Rows(1).iso(np.array([time.time_ns()], dtype=np.int64)).strings()[0]
    cols = {
        "start_ns": start_ns,
        "end_ns": end_ns,
        "src_port": np.where(icmp, ABSENT, src_port),
        "dst_port": np.where(icmp, ABSENT, dst_port),
        "src_bytes": np.array([r.src_bytes for r in records], dtype=np.int64),
        "src_packets": np.array([r.src_packets for r in records], dtype=np.int64),
        "dst_bytes": np.array([r.dst_bytes for r in records], dtype=np.int64),
        "dst_packets": np.array([r.dst_packets for r in records], dtype=np.int64),
        "proto": proto,
        "icmp_type": np.where(icmp, icmp_type, ABSENT),
        "icmp_code": np.where(icmp, icmp_code, ABSENT),
        "flags": _ints([r.flags for r in records]),
        "rev_flags": _ints([r.rev_flags for r in records]),
        "initial_flags": absent,
        "biflow_direction": np.array([1 if r.initiator_known else ABSENT for r in records], dtype=np.int64),
        "src_internal": np.array([networks.contains(p) for p in src_packed], dtype=bool),
        "dst_internal": np.array([networks.contains(p) for p in dst_packed], dtype=bool),
        "is_v6": src_v6,
        "biflow": np.array([_BIFLOW_EXPORTER if r.biflow else 0 for r in records], dtype=np.int8),
        "sampling_rate": np.ones(n, dtype=np.float64),
        "start_iso": object_column(Rows(n).iso(start_ns).strings()),
        "end_iso": object_column(Rows(n).iso(end_ns).strings()),
        # The hash of the exporter path's event ids, of the identity's UTF-8 text.
        "event_id": object_column(Rows(n).text([r.identity for r in records]).xxh3_128()),
        "src_ip": object_column(src_text),
        "dst_ip": object_column(dst_text),
        "community_id": object_column(community),
        "flow_id": object_column(flows),
        "application": object_column([r.application for r in records]),
        "src_mac": none,
        "dst_mac": none.copy(),
        "reverse_event_id": none.copy(),
        "observer": object_column([r.observer_ip for r in records]),
        "observer_type": object_column([r.observer_type for r in records]),
        "netflow": object_column([r.netflow for r in records]),
        "extra": object_column([r.extra for r in records]),
        "created": np.full(n, created, dtype=object),
    }
    return FlowFrame(n, cols, namespace)


def _ints(values: list[int | None]) -> np.ndarray:
    """An int64 column, :data:`ABSENT` where None."""
    return np.array([ABSENT if v is None else v for v in values], dtype=np.int64)


def _addresses(records: Sequence[FlowRecord], attr: str) -> tuple[list[bytes], list[str]]:
    """Packed addresses and their canonical text (what the exporter path prints)."""
    packed: list[bytes] = []
    text: list[str] = []
    cache: dict[str, tuple[bytes, str]] = {}  # flows repeat addresses: parse each once
    for record in records:
        ip: str = getattr(record, attr)
        hit = cache.get(ip)
        if hit is None:
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            try:
                raw = socket.inet_pton(family, ip)
            except OSError:
                raise ValueError(
                    f"flow record {record.identity!r}: {attr} {ip!r} is not an IP address"
                ) from None
            hit = cache[ip] = (raw, socket.inet_ntop(family, raw))
        packed.append(hit[0])
        text.append(hit[1])
    return packed, text
