"""Synthetic flow frames for feature tests (test helper)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tunnelhound.normalize.frame import ABSENT, COLUMNS, FlowFrame

T0 = 1_795_440_000 * 10**9
"""A flow time (ns) in the lab corpus' day."""

_DEFAULTS: dict[str, Any] = {
    "start_ns": T0,
    "end_ns": T0,
    "src_ip": "10.0.0.5",
    "dst_ip": "198.51.100.7",
    "src_port": 40000,
    "dst_port": 443,
    "proto": 6,
    "src_bytes": 100,
    "src_packets": 1,
    "dst_bytes": 100,
    "dst_packets": 1,
    "flags": 0x1B,
    "src_internal": True,
    "dst_internal": False,
    "sampling_rate": 1.0,
}


def flow(**values: Any) -> dict[str, Any]:
    """One flow's column values; ``duration`` (s) and ``start`` (s after :data:`T0`) are shortcuts."""
    row = dict(_DEFAULTS)
    start = T0 + int(values.pop("start", 0) * 1e9)
    duration = values.pop("duration", 0.0)
    row["start_ns"], row["end_ns"] = start, start + int(duration * 1e9)
    row.update(values)
    return row


def frame(*rows: dict[str, Any]) -> FlowFrame:
    """A frame of the given flows; columns not given are absent (-1, None, False, 1.0)."""
    n = len(rows)
    cols: dict[str, np.ndarray] = {}
    for name, dtype in COLUMNS.items():
        absent = {"i8": ABSENT, "O": None, "?": False, "i1": 0, "f8": 1.0}[dtype]
        cols[name] = np.array([r.get(name, absent) for r in rows], dtype=dtype)
    return FlowFrame(n, cols)
