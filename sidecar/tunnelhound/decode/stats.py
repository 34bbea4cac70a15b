"""Decoder counters: per exporter and reason, never one log line per packet."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class DecodeStats:
    """What the decoder saw and rejected; the metrics module exports these."""

    datagrams: Counter[str] = field(default_factory=Counter)
    """Datagrams per exporter IP."""
    records: Counter[str] = field(default_factory=Counter)
    """Flow records decoded per exporter IP."""
    options_records: Counter[str] = field(default_factory=Counter)
    template_sets: Counter[str] = field(default_factory=Counter)
    """Template and options-template sets accepted: new, changed, resent or withdrawn templates."""
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(exporter IP, reason) → count of rejected datagrams or sets."""
    template_misses: Counter[str] = field(default_factory=Counter)
    """Data sets that arrived before their template (held, or dropped when holding is off)."""
    held_released: Counter[str] = field(default_factory=Counter)
    held_dropped: Counter[str] = field(default_factory=Counter)
    """Held sets whose template never came in time, or pushed out by the per-exporter cap."""
    sequence_lost: Counter[str] = field(default_factory=Counter)
    """Packets (v9), flows (v5) or records (IPFIX) missing according to sequence numbers."""

    def error_count(self, reason: str | None = None) -> int:
        """Total errors, or for one reason."""
        return sum(n for (_ip, r), n in self.errors.items() if reason is None or r == reason)

    def errors_by_reason(self) -> Counter[str]:
        """Errors summed over exporters."""
        out: Counter[str] = Counter()
        for (_ip, reason), n in self.errors.items():
            out[reason] += n
        return out
