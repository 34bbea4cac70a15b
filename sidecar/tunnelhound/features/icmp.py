"""ICMP tunnel features: echo packets larger than ping's defaults.

``ping`` sends 84-byte IP packets on Linux, macOS and the BSDs (56 data bytes) and 60-byte ones
on Windows (32 data bytes); echo replies mirror the request. Tunnels (ptunnel, icmpsh, pingtunnel)
fill echo payloads up to the MTU. Only echo request/reply counts: ICMP errors quote the offending
packet and are legitimately up to 576 bytes. The normal size is an IPv4 packet's; IPv6 headers
are 20 bytes longer (``ping -6`` sends 104-byte packets), so IPv6 flows get 20 bytes more.
"""

from __future__ import annotations

import numpy as np

from tunnelhound.config import IcmpDetectionConfig
from tunnelhound.features.baseline import Baseline
from tunnelhound.features.overrides import RowSettings
from tunnelhound.features.values import ICMP, ICMPV6, ratio
from tunnelhound.normalize.biflow import among
from tunnelhound.normalize.frame import FlowFrame

BYTES_PER_PACKET = "icmp.bytes_per_packet"
IPV6_EXTRA = 20
"""IPv6 header (40 bytes) minus IPv4 header (20 bytes)."""
_ECHO = {ICMP: (8, 0), ICMPV6: (128, 129)}


def echo_flows(frame: FlowFrame) -> np.ndarray:
    """Bool per flow: ICMP or ICMPv6 echo request/reply."""
    c = frame.cols
    return np.logical_or.reduce(
        [(c["proto"] == proto) & among(c["icmp_type"], types) for proto, types in _ECHO.items()]
    )


def largest_packet_size(frame: FlowFrame) -> np.ndarray:
    """The larger of the two directions' average IP packet size (NaN where nothing was sent)."""
    c = frame.cols
    return np.fmax(ratio(c["src_bytes"], c["src_packets"]), ratio(c["dst_bytes"], c["dst_packets"]))


def samples(frame: FlowFrame) -> dict[str, np.ndarray]:
    """Baseline metric of the frame's echo flows."""
    return {BYTES_PER_PACKET: largest_packet_size(frame)[echo_flows(frame)]}


def apply(frame: FlowFrame, config: IcmpDetectionConfig, baseline: Baseline, rows: RowSettings) -> None:
    """Fill ``icmp_tunnel.bytes_per_packet`` on echo flows and ``icmp_tunnel.oversize`` where it exceeds normal."""
    echo = echo_flows(frame) & rows.enabled("icmp_tunnel")
    if not echo.any():
        return
    c = frame.cols
    size = largest_packet_size(frame)
    threshold = baseline.threshold(BYTES_PER_PACKET, config.max_difference, rows.icmp_normal_bytes_per_packet)
    above = echo & (size > threshold + np.where(c["is_v6"], IPV6_EXTRA, 0))
    enough = (c["src_packets"] + c["dst_packets"]) >= config.min_packets
    frame.features["icmp_tunnel.bytes_per_packet"] = np.where(echo, size, np.nan)
    frame.features["icmp_tunnel.oversize"] = above & enough
    baseline.learn(BYTES_PER_PACKET, size[echo & ~above])
