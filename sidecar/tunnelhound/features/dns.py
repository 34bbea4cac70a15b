"""DNS tunnel features: UDP DNS flows whose packets AND duration exceed the baseline.

A DNS lookup is one query and one answer: two packets, milliseconds. A tunnel keeps one
client port busy for seconds to minutes with thousands of packets. Both metrics must be above
``max(floor, mean + k * std)``: a long flow with few packets is merged lookups (a resolver or a
stub that reuses its source port until the exporter's idle timeout), a short burst of several
packets is retries. The packet-rate check removes the known false positive of the research this
detection comes from: two lookups minutes apart merged into one flow ("4 packets over 4001 s")
are above both thresholds but far too slow to carry data. ``dns.bytes`` lets a correlation
sum each client's DNS volume (a tunnel moves megabytes; a busy workstation kilobytes).
"""

from __future__ import annotations

import numpy as np

from tunnelhound.config import DnsDetectionConfig
from tunnelhound.features.baseline import Baseline
from tunnelhound.features.overrides import RowSettings
from tunnelhound.features.values import UDP, duration_s, ports_of, ratio
from tunnelhound.normalize.frame import ABSENT, FlowFrame

PACKETS, DURATION = "dns.packets", "dns.duration"


def dns_flows(frame: FlowFrame, config: DnsDetectionConfig) -> np.ndarray:
    """Bool per flow: UDP to or from a DNS port."""
    return (frame.cols["proto"] == UDP) & ports_of(frame.cols, config.ports)


def samples(frame: FlowFrame, config: DnsDetectionConfig) -> dict[str, np.ndarray]:
    """Baseline metrics of the frame's DNS flows."""
    dns = dns_flows(frame, config)
    c = frame.cols
    return {
        PACKETS: (c["src_packets"] + c["dst_packets"])[dns].astype(np.float64),
        DURATION: duration_s(c)[dns],
    }


def apply(frame: FlowFrame, config: DnsDetectionConfig, baseline: Baseline, rows: RowSettings) -> None:
    """Fill ``dns.{bytes,packets_z,duration_z,packet_rate,anomaly}`` on DNS flows; learn from the
    normal ones. ``dns.bytes`` (both directions) feeds the per-client volume rule."""
    c = frame.cols
    dns = dns_flows(frame, config) & rows.enabled("dns_tunnel")
    if not dns.any():
        return
    packets = (c["src_packets"] + c["dst_packets"]).astype(np.float64)
    duration = duration_s(c)
    rate = ratio(packets, duration)
    k = rows.dns_max_difference
    above_packets = packets > baseline.threshold(PACKETS, k, config.min_packets)
    above_duration = duration > baseline.threshold(DURATION, k, config.min_duration)
    # rate is NaN for a zero duration, which is never above the duration threshold anyway
    anomaly = dns & above_packets & above_duration & (rate >= config.min_packet_rate)
    absent = np.full(frame.n, np.nan)
    frame.features["dns.bytes"] = np.where(dns, c["src_bytes"] + c["dst_bytes"], ABSENT)
    frame.features["dns.packets_z"] = np.where(dns, baseline.zscore(PACKETS, packets), absent)
    frame.features["dns.duration_z"] = np.where(dns, baseline.zscore(DURATION, duration), absent)
    frame.features["dns.packet_rate"] = np.where(dns, rate, absent)
    frame.features["dns.anomaly"] = anomaly
    normal = dns & ~(above_packets & above_duration)
    baseline.learn(PACKETS, packets[normal])
    baseline.learn(DURATION, duration[normal])
