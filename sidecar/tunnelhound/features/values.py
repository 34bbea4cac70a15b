"""Helpers the feature modules share: protocol numbers, ratios, durations, service ports."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tunnelhound.normalize.biflow import WELL_KNOWN_SERVICES, among
from tunnelhound.normalize.frame import ABSENT

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
SYN, ACK = 0x02, 0x10
UNIFLOW = 0
"""``tunnelhound.biflow`` code of a flow that found no partner."""
NS = 1e9


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator as float64, NaN (absent) where the denominator is 0."""
    out = np.full(len(numerator), np.nan)
    ok = denominator > 0
    np.divide(numerator, denominator, out=out, where=ok)
    return out


def duration_s(cols: Mapping[str, np.ndarray]) -> np.ndarray:
    """Flow duration in seconds (0 for single-packet flows)."""
    return np.maximum(cols["end_ns"] - cols["start_ns"], 0) / NS


def ports_of(cols: Mapping[str, np.ndarray], ports: tuple[int, ...]) -> np.ndarray:
    """Flows whose destination port is in ``ports`` (or whose source port is, for a response
    uniflow that found no partner)."""
    return among(cols["dst_port"], ports) | (among(cols["src_port"], ports) & (cols["dst_port"] != ABSENT))


def replies(cols: Mapping[str, np.ndarray]) -> np.ndarray:
    """Uniflows that found no partner and are the answering half of a conversation (an exporter
    that sees one direction only: WAN ingress, asymmetric routing). The stitcher leaves them as
    the exporter sent them, so their source is the server; features that read the source as the
    initiator must not take a reply for a probe.

    A reply starts with SYN+ACK (IPFIX ``initialTCPFlags``), or comes from a service port to a
    port that is not one, unless it started with a bare SYN.
    """
    first = cols["initial_flags"]
    known = first != ABSENT
    syn_ack = known & ((first & (SYN | ACK)) == (SYN | ACK))
    syn_only = known & ((first & (SYN | ACK)) == SYN)
    from_service = among(cols["src_port"], WELL_KNOWN_SERVICES) & ~among(
        cols["dst_port"], WELL_KNOWN_SERVICES
    )
    return (cols["biflow"] == UNIFLOW) & (cols["dst_port"] != ABSENT) & (syn_ack | (from_service & ~syn_only))
