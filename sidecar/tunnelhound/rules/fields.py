"""The field resolver: ECS field name → :class:`Column` for a :class:`FlowFrame` (or for the
threat-index events), the one place rules meet the frame's column names.

Rules name fields as they appear on the flow document (``destination.port``,
``network.transport``, ``tunnelhound.dns.packets_z`` …); :class:`FlowFields` answers each with
the array a predicate tests, plus a mask of the rows where the field is present (a port is
absent on ICMP flows, a feature may be NaN).  Columns drawn from a small table
(``network.transport`` from the protocol number, ``network.direction`` from the two locality
bits) are handed out as integer codes with their names, so a string test runs once per
distinct code instead of once per row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from tunnelhound.normalize.frame import ABSENT, BIFLOW_KINDS, FlowFrame
from tunnelhound.normalize.protocols import TRANSPORT_NAMES

__all__ = [
    "FEATURE_PREFIX",
    "FLOW_FIELDS",
    "THREAT_FIELDS",
    "Column",
    "EventFields",
    "Fields",
    "FlowFields",
    "feature_column",
    "is_flow_field",
]

Kind = Literal["num", "str", "bool"]
FEATURE_PREFIX = "tunnelhound."


@dataclass(frozen=True, slots=True)
class Column:
    """One field over ``n`` rows.

    ``values``: int64/float64 (``num``), bool (``bool``) or object strings (``str``, None where
    absent); ``present``: rows where the field exists (None: every row).  A ``str`` column with
    ``codes`` is given as small integers and ``names`` (code → text); ``values`` is then unused.
    """

    kind: Kind
    values: np.ndarray
    present: np.ndarray | None = None
    codes: np.ndarray | None = None
    names: Mapping[int, str] | None = None


class Fields(Protocol):
    """What compiled predicates read: ``n`` rows and a column per field name."""

    n: int

    def column(self, name: str) -> Column:
        """The column of ``name`` (a known field; unknown names were refused at load time)."""
        ...


def _num(values: np.ndarray, absent_marker: bool = False) -> Column:
    return Column("num", values, values != ABSENT if absent_marker else None)


def _str(values: np.ndarray) -> Column:
    return Column("str", values)


def _coded(codes: np.ndarray, names: Mapping[int, str]) -> Column:
    return Column("str", codes, None, codes, names)


_LOCALITY = {0: "external", 1: "internal"}
_DIRECTION = {0: "external", 1: "inbound", 2: "outbound", 3: "internal"}
_TRANSPORT = {**TRANSPORT_NAMES, **{p: str(p) for p in range(256) if p not in TRANSPORT_NAMES}}
_IANA = {p: str(p) for p in range(256)}
_IP_TYPE = {0: "ipv4", 1: "ipv6"}


def _icmp(frame: FlowFrame, name: str, proto: int) -> Column:
    values = frame.cols[name]
    return Column("num", values, (values != ABSENT) & (frame.cols["proto"] == proto))


def _bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.astype(np.int64) * 2 + b.astype(np.int64)


FLOW_FIELDS: dict[str, Callable[[FlowFrame], Column]] = {
    "event.id": lambda f: _str(f.cols["event_id"]),
    "event.start": lambda f: _num(f.cols["start_ns"]),
    "event.end": lambda f: _num(f.cols["end_ns"]),
    "event.duration": lambda f: _num(np.maximum(f.cols["end_ns"] - f.cols["start_ns"], 0)),
    "source.ip": lambda f: _str(f.cols["src_ip"]),
    "destination.ip": lambda f: _str(f.cols["dst_ip"]),
    "source.port": lambda f: _num(f.cols["src_port"], True),
    "destination.port": lambda f: _num(f.cols["dst_port"], True),
    "source.bytes": lambda f: _num(f.cols["src_bytes"]),
    "destination.bytes": lambda f: _num(f.cols["dst_bytes"]),
    "source.packets": lambda f: _num(f.cols["src_packets"]),
    "destination.packets": lambda f: _num(f.cols["dst_packets"]),
    "source.mac": lambda f: _str(f.cols["src_mac"]),
    "destination.mac": lambda f: _str(f.cols["dst_mac"]),
    "source.locality": lambda f: _coded(f.cols["src_internal"].astype(np.int64), _LOCALITY),
    "destination.locality": lambda f: _coded(f.cols["dst_internal"].astype(np.int64), _LOCALITY),
    "network.bytes": lambda f: _num(f.cols["src_bytes"] + f.cols["dst_bytes"]),
    "network.packets": lambda f: _num(f.cols["src_packets"] + f.cols["dst_packets"]),
    "network.transport": lambda f: _coded(f.cols["proto"], _TRANSPORT),
    "network.iana_number": lambda f: _coded(f.cols["proto"], _IANA),
    "network.type": lambda f: _coded(f.cols["is_v6"].astype(np.int64), _IP_TYPE),
    "network.community_id": lambda f: _str(f.cols["community_id"]),
    "network.direction": lambda f: _coded(_bits(f.cols["src_internal"], f.cols["dst_internal"]), _DIRECTION),
    "network.application": lambda f: _str(f.cols["application"]),
    "flow.id": lambda f: _str(f.cols["flow_id"]),
    "flow.locality": lambda f: _coded(
        (f.cols["src_internal"] & f.cols["dst_internal"]).astype(np.int64), _LOCALITY
    ),
    "observer.ip": lambda f: _str(f.cols["observer"]),
    "observer.type": lambda f: _str(f.cols["observer_type"]),
    "tunnelhound.biflow": lambda f: _coded(f.cols["biflow"].astype(np.int64), dict(enumerate(BIFLOW_KINDS))),
    "tunnelhound.reverse_event_id": lambda f: _str(f.cols["reverse_event_id"]),
    "tunnelhound.sampling_rate": lambda f: _num(f.cols["sampling_rate"]),
    "tunnelhound.icmp.type": lambda f: _icmp(f, "icmp_type", 1),
    "tunnelhound.icmp.code": lambda f: _icmp(f, "icmp_code", 1),
    "tunnelhound.icmpv6.type": lambda f: _icmp(f, "icmp_type", 58),
    "tunnelhound.icmpv6.code": lambda f: _icmp(f, "icmp_code", 58),
}
"""Flow document fields the engine can evaluate, besides the ``tunnelhound.*`` features."""

THREAT_FIELDS: dict[str, Kind] = {
    "source.ip": "str",
    "event.end": "num",
    "tunnelhound.threat_index.value": "num",
    "tunnelhound.threat_index.previous": "num",
}
"""Fields of the one-per-host events the ``threat_index`` rules see."""


def is_flow_field(name: str) -> bool:
    """Whether a flow rule may name ``name``: a known document field or a feature."""
    return name in FLOW_FIELDS or name.startswith(FEATURE_PREFIX)


def feature_column(values: np.ndarray) -> Column:
    """A feature array as a column (absent: NaN, :data:`ABSENT`, None; bool always present)."""
    kind = values.dtype.kind
    if kind == "f":
        return Column("num", values, ~np.isnan(values))
    if kind in "iu":
        return Column("num", values, values != ABSENT)
    if kind == "b":
        return Column("bool", values)
    return Column("str", values)


class FlowFields:
    """Columns of one frame, each resolved once (several rules test the same field)."""

    def __init__(self, frame: FlowFrame) -> None:
        self.frame = frame
        self.n = frame.n
        self._cache: dict[str, Column] = {}

    def column(self, name: str) -> Column:
        """The column for ``name``; a feature the frame lacks is absent on every row."""
        col = self._cache.get(name)
        if col is None:
            resolve = FLOW_FIELDS.get(name)
            if resolve is not None:
                col = resolve(self.frame)
            else:
                values = self.frame.features.get(name[len(FEATURE_PREFIX) :])
                if values is None:
                    col = Column("str", np.full(self.n, None, dtype=object))
                else:
                    col = feature_column(values)
            self._cache[name] = col
        return col


class EventFields:
    """Columns given directly (the threat-index events)."""

    def __init__(self, n: int, columns: dict[str, Column]) -> None:
        self.n = n
        self._columns = columns

    def column(self, name: str) -> Column:
        """The column given for ``name``."""
        return self._columns[name]
