"""Hand-built flow frames for rule and alert tests (test helper)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from tunnelhound.normalize.frame import ABSENT, COLUMNS, FlowFrame

NS = 1_000_000_000
T0 = 1_795_000_000 * NS
"""A flow-time origin (2026-11-19): tests give times as seconds after it."""


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def flow(
    src: str = "10.0.0.1",
    dst: str = "198.51.100.1",
    dport: int = 443,
    *,
    sport: int = 40000,
    t: float = 0.0,
    duration: float = 1.0,
    proto: int = 6,
    src_bytes: int = 100,
    dst_bytes: int = 0,
    src_packets: int = 1,
    dst_packets: int = 0,
    app: str | None = None,
    eid: str | None = None,
) -> dict[str, Any]:
    """One row; ``t`` is the flow's end in seconds after :data:`T0`."""
    end = T0 + int(t * NS)
    start = end - int(duration * NS)
    return {
        "event_id": eid or f"{src}-{dst}-{dport}-{sport}-{t}",
        "start_ns": start,
        "end_ns": end,
        "start_iso": iso(start),
        "end_iso": iso(end),
        "src_ip": src,
        "dst_ip": dst,
        "src_port": sport if proto in (6, 17) else ABSENT,
        "dst_port": dport if proto in (6, 17) else ABSENT,
        "src_bytes": src_bytes,
        "dst_bytes": dst_bytes,
        "src_packets": src_packets,
        "dst_packets": dst_packets,
        "src_internal": src.startswith("10."),
        "dst_internal": dst.startswith("10."),
        "proto": proto,
        "is_v6": ":" in src,
        "application": app,
        "community_id": f"1:{src}-{dst}-{dport}",
        "observer": "192.0.2.1",
        "created": iso(end),
        "biflow": 2,
    }


def frame(rows: list[dict[str, Any]], features: dict[str, np.ndarray] | None = None) -> FlowFrame:
    """A frame from rows (columns not given take neutral values, as in test_biflow)."""
    n = len(rows)
    neutral: dict[str, Any] = {"i8": ABSENT, "?": False, "i1": 0, "f8": 1.0, "O": None}
    cols = {}
    for name, dtype in COLUMNS.items():
        col = np.empty(n, dtype=dtype)
        col[:] = [row.get(name, neutral[dtype]) for row in rows]
        cols[name] = col
    return FlowFrame(n, cols, "default", dict(features or {}))
