"""Exfiltration features: per flow, the internal host and the bytes it sent to an external address.

Whatever the initiator: an internal server that external clients download from sends as
much out as a client uploading. Flows between two internal or two external hosts carry
nothing here.
"""

from __future__ import annotations

import numpy as np

from tunnelhound.config import ExfilDetectionConfig
from tunnelhound.features.hosts import AddressSet
from tunnelhound.features.overrides import RowSettings
from tunnelhound.normalize.biflow import among
from tunnelhound.normalize.frame import ABSENT, FlowFrame


class ExfilFeatures:
    """Fills ``exfil.host`` and ``exfil.bytes_out`` (absent where excluded or zero)."""

    def __init__(self, config: ExfilDetectionConfig) -> None:
        self.excluded = AddressSet(config.exclude_networks)
        self.exclude_ports = config.exclude_ports

    def apply(self, frame: FlowFrame, rows: RowSettings) -> None:
        """Compute the columns for every flow of ``frame``."""
        c = frame.cols
        out = c["src_internal"] & ~c["dst_internal"]
        inbound = c["dst_internal"] & ~c["src_internal"]
        host = np.where(inbound, c["dst_ip"], c["src_ip"])
        external = np.where(inbound, c["src_ip"], c["dst_ip"])
        external_port = np.where(inbound, c["src_port"], c["dst_port"])
        sent = np.where(inbound, c["dst_bytes"], c["src_bytes"])
        keep = (out | inbound) & (sent > 0) & rows.enabled("exfiltration")
        if self.exclude_ports:
            keep &= ~among(external_port, self.exclude_ports)
        if keep.any() and not self.excluded.empty:
            keep &= ~self.excluded.mask(host) & ~self.excluded.mask(external)
        hosts = np.full(frame.n, None, dtype=object)
        hosts[keep] = host[keep]
        frame.features["exfil.host"] = hosts
        frame.features["exfil.bytes_out"] = np.where(keep, sent, ABSENT)
