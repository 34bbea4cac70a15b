"""The per-host threat index: each alert adds its level's weight to its source host's index,
which decays exponentially on flow time.

Exponential decay with a half-life (default 6 h, so an alert's weight is 1/16 after 24 h):
one number per host, updated in O(1) and unaffected by how alerts are batched.  The number
of hosts is bounded; the least recently raised are evicted (counted).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

__all__ = ["ThreatIndex"]

_NS = 1_000_000_000


class ThreatIndex:
    """Host → decaying score.  ``weights`` maps a Sigma level to what one alert adds."""

    def __init__(self, weights: dict[str, float], half_life_s: float, max_hosts: int) -> None:
        self.weights = weights
        self.rate = math.log(2) / (half_life_s * _NS)
        self.max_hosts = max_hosts
        self.hosts: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self.evicted = 0

    def value(self, host: str, t: int) -> float:
        """The host's index at flow time ``t`` ns (0 for a host never raised)."""
        value, since = self.hosts.get(host, (0.0, t))
        return value * math.exp(-self.rate * max(t - since, 0))

    def raise_(self, host: str, level: str, t: int) -> float:
        """Add one alert of ``level`` at ``t``; returns the new index."""
        value = self.value(host, t) + self.weights.get(level, 0.0)
        last = self.hosts.get(host, (0.0, t))[1]
        self.hosts[host] = (value, max(t, last))
        self.hosts.move_to_end(host)
        while len(self.hosts) > self.max_hosts:
            self.hosts.popitem(last=False)
            self.evicted += 1
        return value

    def dump(self) -> list[list[Any]]:
        """JSON-ready rows: host, value, time of the value."""
        return [[host, value, t] for host, (value, t) in self.hosts.items()]

    def restore(self, rows: list[list[Any]]) -> None:
        """Hosts from :meth:`dump` rows."""
        for host, value, t in rows:
            self.hosts[host] = (float(value), int(t))
