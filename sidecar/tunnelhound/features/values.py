"""Helpers the feature modules share: protocol numbers, ratios, durations, service ports."""

from __future__ import annotations

import numpy as np

from tunnelhound.normalize.frame import ABSENT

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
ACK = 0x10
NS = 1e9


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator as float64, NaN (absent) where the denominator is 0."""
    out = np.full(len(numerator), np.nan)
    ok = denominator > 0
    np.divide(numerator, denominator, out=out, where=ok)
    return out


def duration_s(cols: dict[str, np.ndarray]) -> np.ndarray:
    """Flow duration in seconds (0 for single-packet flows)."""
    return np.maximum(cols["end_ns"] - cols["start_ns"], 0) / NS


def ports_of(cols: dict[str, np.ndarray], ports: tuple[int, ...]) -> np.ndarray:
    """Flows whose destination port is in ``ports`` (or whose source port is, for a response
    uniflow that found no partner)."""
    return np.isin(cols["dst_port"], ports) | (
        np.isin(cols["src_port"], ports) & (cols["dst_port"] != ABSENT)
    )
