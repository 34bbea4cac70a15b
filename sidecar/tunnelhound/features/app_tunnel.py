"""Application tunneling features: ``app_tunnel.reason`` names why a flow does not fit its port.

With DPI (``network.application`` from the exporter): an application on a port that is not one
of its own (``application_ports``). Without DPI, per service port, what the service never does:

* ``dns_tcp_long``: TCP/53 held open longer than ``dns_tcp_max_duration`` (DNS servers close idle
  TCP connections after seconds; RFC 7766 suggests that order);
* ``dns_tcp_volume``: more than ``dns_tcp_max_bytes`` on TCP/53 (zone transfers between your own
  DNS servers do this: exclude those hosts);
* ``interactive``: a keyboard session (SSH-like) on a port whose service is request/response
  (``interactive_ports``): at least ``interactive_min_packets`` packets in each direction, small on
  both sides (at most ``interactive_max_bytes_per_packet`` on average) for at least
  ``interactive_min_duration`` seconds. A DNS answer or web page is sent in few, large packets
  one way; typing is many small packets both ways.
"""

from __future__ import annotations

import numpy as np

from tunnelhound.config import AppTunnelDetectionConfig
from tunnelhound.features.overrides import RowSettings
from tunnelhound.features.values import TCP, duration_s, ratio, replies
from tunnelhound.normalize.biflow import among
from tunnelhound.normalize.frame import ABSENT, FlowFrame

REASONS = ("application_port", "dns_tcp_long", "dns_tcp_volume", "interactive")


class AppTunnelFeatures:
    """Fills ``app_tunnel.reason`` (keyword; absent on flows that fit their port)."""

    def __init__(self, config: AppTunnelDetectionConfig) -> None:
        self.config = config
        self.allowed = {a.application.lower(): a.ports for a in config.application_ports}

    def apply(self, frame: FlowFrame, rows: RowSettings) -> None:
        """Compute the reason for every flow of ``frame`` (the most specific that applies)."""
        c, cfg = frame.cols, self.config
        # Stitched flows are oriented (the destination is the responder); a reply seen alone
        # comes from the service port.
        service = np.where(replies(c), c["src_port"], c["dst_port"])
        tcp = c["proto"] == TCP
        total_bytes = c["src_bytes"] + c["dst_bytes"]
        dns_tcp = tcp & among(service, cfg.dns_tcp_ports)
        small = (ratio(c["src_bytes"], c["src_packets"]) <= cfg.interactive_max_bytes_per_packet) & (
            ratio(c["dst_bytes"], c["dst_packets"]) <= cfg.interactive_max_bytes_per_packet
        )
        interactive = (
            tcp
            & among(service, cfg.interactive_ports)
            & (np.minimum(c["src_packets"], c["dst_packets"]) >= cfg.interactive_min_packets)
            & small
            & (duration_s(c) >= cfg.interactive_min_duration)
        )
        reason = np.full(frame.n, None, dtype=object)
        # later entries win: a DPI verdict beats a guess from sizes
        for name, mask in (
            ("interactive", interactive),
            ("dns_tcp_volume", dns_tcp & (total_bytes > cfg.dns_tcp_max_bytes)),
            ("dns_tcp_long", dns_tcp & (duration_s(c) > cfg.dns_tcp_max_duration)),
            ("application_port", self._off_port(frame, service)),
        ):
            reason[mask] = name
        reason[~rows.enabled("app_tunnel")] = None
        frame.features["app_tunnel.reason"] = reason

    def _off_port(self, frame: FlowFrame, service: np.ndarray) -> np.ndarray:
        """Flows whose DPI application is known to us and runs on none of its ports."""
        apps = frame.cols["application"]
        off = np.zeros(frame.n, dtype=bool)
        present = apps != None  # noqa: E711 - elementwise on an object array
        if not present.any():
            return off
        for app in set(apps[present].tolist()):
            ports = self.allowed.get(str(app).lower())
            if ports is not None:
                off |= (apps == app) & ~among(service, ports) & (service != ABSENT)
        return off
