"""Per-network thresholds: ``detections.overrides`` resolved to one value per flow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import numpy as np

from tunnelhound.config import DetectionOverrideConfig, DetectionsConfig, Detector
from tunnelhound.features.hosts import AddressSet, internal_host
from tunnelhound.normalize.frame import FlowFrame


@dataclass(slots=True)
class RowSettings:
    """Thresholds per flow of one frame (defaults where no override matched)."""

    dns_max_difference: np.ndarray
    icmp_normal_bytes_per_packet: np.ndarray
    beacon_min_score: np.ndarray
    disabled: dict[str, np.ndarray]
    """Detector slug -> bool per flow: the detector's features stay absent there."""

    def enabled(self, detector: Detector) -> np.ndarray:
        """Bool per flow: the detector runs for this flow's host."""
        return ~self.disabled[detector]


class Overrides:
    """The ``overrides`` list in order; a later entry that matches a host wins."""

    def __init__(self, config: DetectionsConfig) -> None:
        self.config = config
        self.entries: list[tuple[DetectionOverrideConfig, AddressSet]] = [
            (o, AddressSet(o.networks)) for o in config.overrides
        ]

    def resolve(self, frame: FlowFrame) -> RowSettings:
        """Each threshold as an array over ``frame``'s rows."""
        n, c = frame.n, self.config
        settings = RowSettings(
            dns_max_difference=np.full(n, c.dns.max_difference),
            icmp_normal_bytes_per_packet=np.full(n, float(c.icmp.normal_bytes_per_packet)),
            beacon_min_score=np.full(n, c.beacon.min_score),
            disabled={d: np.zeros(n, dtype=bool) for d in _DETECTORS},
        )
        if not self.entries:
            return settings
        hosts = internal_host(frame.cols)
        for entry, addresses in self.entries:
            hit = addresses.mask(hosts)
            if not hit.any():
                continue
            for name in ("dns_max_difference", "icmp_normal_bytes_per_packet", "beacon_min_score"):
                value = getattr(entry, name)
                if value is not None:
                    getattr(settings, name)[hit] = value
            for detector in entry.disable:
                settings.disabled[detector] |= hit
        return settings


_DETECTORS: tuple[Detector, ...] = get_args(Detector)
