"""Bytes per packet in each direction (``tunnelhound.bytes_per_packet.{source,destination}``)."""

from __future__ import annotations

from tunnelhound.features.values import ratio
from tunnelhound.normalize.frame import FlowFrame


def apply(frame: FlowFrame) -> None:
    """Average IP packet size sent by each side; absent for a side that sent nothing."""
    c = frame.cols
    frame.features["bytes_per_packet.source"] = ratio(c["src_bytes"], c["src_packets"])
    frame.features["bytes_per_packet.destination"] = ratio(c["dst_bytes"], c["dst_packets"])
