"""Port scan feature: flows that were never answered.

A probe is unanswered when the destination sent nothing back, or (TCP) when the initiator never
sent an ACK: a SYN answered by RST (closed port), a SYN left hanging (filtered), or a half-open
SYN scan that resets after the SYN-ACK. Answers seen without their request (one-way exporters)
are not probes. The rules count distinct ports per host and hosts per
port over these flows (Zeek's scan.zeek defaults).
"""

from __future__ import annotations

from tunnelhound.config import ScanDetectionConfig
from tunnelhound.features.hosts import AddressSet
from tunnelhound.features.overrides import RowSettings
from tunnelhound.features.values import ACK, TCP, UDP, replies
from tunnelhound.normalize.frame import ABSENT, FlowFrame


class ScanFeatures:
    """Marks ``scan.unanswered``; excluded sources (scanners you run) are left out."""

    def __init__(self, config: ScanDetectionConfig) -> None:
        self.excluded = AddressSet(config.exclude_sources)

    def apply(self, frame: FlowFrame, rows: RowSettings) -> None:
        """Fill ``scan.unanswered`` on TCP and UDP flows."""
        c = frame.cols
        tcp, udp = c["proto"] == TCP, c["proto"] == UDP
        flags = c["flags"]
        no_ack = tcp & (flags != ABSENT) & ((flags & ACK) == 0)
        unanswered = (tcp | udp) & ((c["dst_packets"] == 0) | no_ack) & rows.enabled("port_scan")
        unanswered &= ~replies(c)  # a server's answer seen alone is not its probe
        if unanswered.any():
            unanswered &= ~self.excluded.mask(c["src_ip"])
        frame.features["scan.unanswered"] = unanswered
