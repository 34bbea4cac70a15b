"""Absolute flow start/end times from whichever time elements an exporter sends."""

from __future__ import annotations

import numpy as np

from tunnelhound.model import FlowBatch
from tunnelhound.normalize.group import RecordHeaders

_NS_PER_MS = 1_000_000

# (start, end, nanoseconds per unit) for the epoch-based elements, most precise first.
_ABSOLUTE: tuple[tuple[str, str, int], ...] = (
    ("flow_start_nanoseconds", "flow_end_nanoseconds", 1),
    ("flow_start_microseconds", "flow_end_microseconds", 1),
    ("flow_start_milliseconds", "flow_end_milliseconds", _NS_PER_MS),
    ("flow_start_seconds", "flow_end_seconds", 1_000_000_000),
)


def flow_times(batch: FlowBatch, headers: RecordHeaders) -> tuple[np.ndarray, np.ndarray]:
    """Return (start, end) as int64 nanoseconds since the Unix epoch, one pair per record.

    Preference: absolute elements (µs/ns elements are already converted by the decoder),
    then sysUpTime-relative ones (v5/v9 first/last switched, IPFIX with
    systemInitTimeMilliseconds), then delta-microseconds, then the export time.
    """
    cols = batch.columns
    export_ns = headers.export_ns
    start = _pick(headers, cols, export_ns, 0)
    end = _pick(headers, cols, export_ns, 1)
    if start is None:
        start = end if end is not None else export_ns
    if end is None:
        end = start if start is not export_ns else export_ns
    return start, end


def _pick(
    headers: RecordHeaders, cols: dict[str, np.ndarray], export_ns: np.ndarray, index: int
) -> np.ndarray | None:
    for start_name, end_name, unit in _ABSOLUTE:
        values = _integer(cols, end_name if index else start_name)
        if values is not None:
            return values.astype(np.int64) * unit
    switched = _integer(cols, ("flow_start_sys_up_time", "flow_end_sys_up_time")[index])
    if switched is not None:
        if headers.uptime_ms is not None:
            return _from_uptime(switched, headers.uptime_ms, export_ns)
        init = _integer(cols, "system_init_time_milliseconds")
        if init is not None:
            return (init.astype(np.int64) + switched.astype(np.int64)) * _NS_PER_MS
    delta = _integer(cols, ("flow_start_delta_microseconds", "flow_end_delta_microseconds")[index])
    if delta is not None:
        return export_ns - delta.astype(np.int64) * 1000
    return None


def _integer(cols: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    """The column if it holds integers: a time element sent with a length its type cannot
    have arrives as raw bytes and counts as missing, so the next source of time applies."""
    values = cols.get(name)
    return values if values is not None and values.dtype.kind in "iu" else None


def _from_uptime(switched: np.ndarray, uptime_ms: np.ndarray, export_ns: np.ndarray) -> np.ndarray:
    """Age from uptime difference taken as signed 32-bit: guards the 49.7-day uptime wrap.

    When the exporter's uptime wrapped after a flow started, ``uptime - switched`` is
    negative as plain integers but small modulo 2**32; a switched value a little after the
    header's uptime (exporter clock skew) comes out as a small negative age, not 49 days.
    """
    age = (uptime_ms.astype(np.uint32) - switched.astype(np.uint32)).astype(np.int32).astype(np.int64)
    return export_ns - age * _NS_PER_MS
