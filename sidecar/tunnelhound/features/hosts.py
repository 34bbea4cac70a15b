"""Which addresses of a frame column fall in a set of CIDRs (per distinct address, cached)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

import numpy as np

from tunnelhound.normalize.locality import Networks

_CACHE_LIMIT = 65536
"""Addresses remembered per set; a flood of spoofed sources must not grow it without bound."""


class AddressSet:
    """A set of networks (CIDRs or bare addresses) tested against columns of IP strings."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self.networks = Networks(cidrs)
        self.empty = not self.networks.cidrs
        self._cache: dict[str, bool] = {}

    def mask(self, ips: np.ndarray) -> np.ndarray:
        """Bool array: which addresses (object array of strings or None) are in the set."""
        if self.empty or not len(ips):
            return np.zeros(len(ips), dtype=bool)
        # One test per distinct address: a batch holds far fewer hosts than flows.
        unique, inverse = np.unique(ips.astype(str), return_inverse=True)
        hits = np.array([self._contains(ip) for ip in unique.tolist()], dtype=bool)
        return hits[inverse]

    def _contains(self, ip: str) -> bool:
        hit = self._cache.get(ip)
        if hit is None:
            try:
                hit = self.networks.contains(ipaddress.ip_address(ip).packed)
            except ValueError:  # "None" or garbage: never in a set
                hit = False
            if len(self._cache) < _CACHE_LIMIT:
                self._cache[ip] = hit
        return hit


def internal_host(cols: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per flow the host thresholds are looked up for: the internal side, else the source."""
    return np.where(~cols["src_internal"] & cols["dst_internal"], cols["dst_ip"], cols["src_ip"])
