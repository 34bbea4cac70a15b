"""Plain data types passed between pipeline stages (the seams)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class Datagram:
    """One export packet as a source received it."""

    data: bytes
    exporter_ip: str
    exporter_port: int
    received: float
    """Arrival time, Unix seconds (capture time for replayed files)."""


@dataclass(slots=True)
class SessionOptions:
    """What options data told us about one exporter session; joined onto its flows."""

    sampling_default: float | None = None
    """Packets per sampled packet, from options (or the v5 header) without a sampler id."""
    sampling_by_id: dict[int, float] = field(default_factory=dict)
    application_names: dict[str, str] = field(default_factory=dict)
    """``engine:selector`` → application name (NBAR options template)."""
    interface_names: dict[int, str] = field(default_factory=dict)


@dataclass(slots=True)
class FlowBatch:
    """Columnar flow records decoded from one data set (or one v5 packet).

    ``columns`` maps IANA information-element names in snake_case (``octet_delta_count``,
    ``source_ipv4_address``; vendor elements by their registry name) to arrays of length
    ``count``.  Value representation per element type:

    * unsigned/signed integers, dateTimeSeconds/Milliseconds: integer arrays
    * dateTimeMicroseconds/Nanoseconds: int64 nanoseconds since the Unix epoch
    * ipv4Address: uint32 (host order value), ipv6Address: ``S16`` raw bytes
    * macAddress: ``S6`` raw bytes, float types: float64
    * string: object array of ``str``; octetArray: object array of ``bytes``
    * applicationId: object array of ``str`` in ``engine:selector`` form
    """

    exporter_ip: str
    exporter_port: int
    version: int
    domain: int
    """Observation domain (IPFIX), source id (v9), engine type << 8 | engine id (v5)."""
    template_id: int
    export_time: int
    """Export time from the message header, Unix seconds."""
    export_nanos: int
    """Sub-second part of the export time (v5 headers carry it; 0 otherwise)."""
    sys_uptime_ms: int | None
    """Exporter uptime at export (v5/v9), for sysUpTime-relative fields."""
    sequence: int
    set_offset: int
    """Byte offset of the data set in its datagram (with ``sequence``, makes record ids deterministic)."""
    count: int
    column_cache: dict[str, np.ndarray] | None = None
    """Decoded columns; see :attr:`columns`."""
    raw: np.ndarray | None = None
    """The data set as structured records (numpy fast path); columns are derived on demand so
    that sets of one template from many datagrams can be concatenated and finished at once."""
    finish: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None
    """Turns ``raw`` (or a concatenation of such arrays) into columns."""
    types: dict[str, str] = field(default_factory=dict)
    """Column name → IANA abstract data type of its element (``unsigned64``, ``ipv4Address`` ...)."""
    options: SessionOptions | None = None
    """What the session's options data said (sampling, application and interface names)."""

    @property
    def columns(self) -> dict[str, np.ndarray]:
        """Columns by element name, finished from ``raw`` on first use."""
        if self.column_cache is None:
            if self.raw is None or self.finish is None:
                self.column_cache = {}
            else:
                self.column_cache = self.finish(self.raw)
        return self.column_cache

    def records(self) -> list[dict[str, Any]]:
        """Return the records as Python dicts (slow; for tests and tools, not the hot path)."""
        names = list(self.columns)
        cols = [self.columns[n].tolist() for n in names]
        return [dict(zip(names, values, strict=True)) for values in zip(*cols, strict=True)]


@dataclass(slots=True)
class OptionsRecord:
    """One options-data record, decoded but not emitted as a flow."""

    exporter_ip: str
    exporter_port: int
    version: int
    domain: int
    template_id: int
    scope: dict[str, Any]
    values: dict[str, Any]
