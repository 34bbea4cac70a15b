"""Known-good statistics per metric (mean, std, percentiles) and the thresholds drawn from them.

A :class:`Baseline` holds one :class:`MetricStats` per metric name (``dns.packets``,
``dns.duration``, ``icmp.bytes_per_packet``). It is either *fixed* (read from a file that
``tunnelhound baseline build`` wrote from known-good traffic) or *online*: it learns from the
flows it sees, and a metric's statistics are used only after ``warmup`` samples; before that
the configured floors alone decide. Online learning only takes samples that were not
anomalous, so a tunnel running during the warm-up does not teach the baseline that tunnels
are normal.

File format (JSON)::

    {"format": "tunnelhound-baseline", "version": 1, "created": "2026-11-23T13:00:00Z",
     "sources": ["known-good.pcap"],
     "metrics": {"dns.packets": {"count": 812, "mean": 2.0, "std": 0.07, "min": 2.0, "max": 4.0,
                                 "percentiles": {"50": 2.0, "90": 2.0, "95": 2.0, "99": 2.0}}, ...}}

``count``/``mean``/``std`` are required; ``min``/``max``/``percentiles`` are informational.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from tunnelhound.errors import TunnelhoundError

FORMAT = "tunnelhound-baseline"
VERSION = 1
PERCENTILES = (50, 90, 95, 99)


class BaselineError(TunnelhoundError):
    """A baseline file that cannot be read or is not one."""


@dataclass(slots=True)
class MetricStats:
    """Running count, mean and sum of squared deviations (Chan et al.'s parallel update)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    percentiles: dict[str, float] = field(default_factory=dict)

    @property
    def std(self) -> float:
        """Population standard deviation (0 with fewer than two samples)."""
        return math.sqrt(self.m2 / self.count) if self.count > 1 else 0.0

    def add(self, values: np.ndarray) -> None:
        """Fold a batch of samples in."""
        values = values[np.isfinite(values)]
        n = len(values)
        if not n:
            return
        mean = float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        total = self.count + n
        delta = mean - self.mean
        self.m2 += m2 + delta * delta * self.count * n / total
        self.mean += delta * n / total
        self.count = total
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))

    def to_json(self) -> dict[str, Any]:
        """The file form."""
        out: dict[str, Any] = {"count": self.count, "mean": self.mean, "std": self.std}
        if math.isfinite(self.minimum) and math.isfinite(self.maximum):
            out |= {"min": self.minimum, "max": self.maximum}
        if self.percentiles:
            out["percentiles"] = self.percentiles
        return out

    @staticmethod
    def from_json(name: str, data: Any) -> MetricStats:
        """Parse the file form; raise :class:`BaselineError` naming the metric when malformed."""
        try:
            count, mean, std = int(data["count"]), float(data["mean"]), float(data["std"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BaselineError(f"metric {name!r}: needs numeric count, mean and std ({exc})") from None
        if count < 0 or not math.isfinite(mean) or not math.isfinite(std) or std < 0:
            raise BaselineError(f"metric {name!r}: count, mean and std must be finite and >= 0")
        return MetricStats(
            count,
            mean,
            std * std * count,
            float(data.get("min") if data.get("min") is not None else math.inf),
            float(data.get("max") if data.get("max") is not None else -math.inf),
            {str(k): float(v) for k, v in dict(data.get("percentiles", {})).items()},
        )


class Baseline:
    """Per-metric statistics; ``fixed`` baselines never learn."""

    def __init__(
        self, metrics: dict[str, MetricStats] | None = None, *, fixed: bool = False, warmup: int = 1000
    ) -> None:
        self.metrics = metrics or {}
        self.fixed = fixed
        self.warmup = warmup
        self.sources: list[str] = []

    def stats(self, name: str) -> MetricStats | None:
        """The metric's statistics once usable (a fixed baseline's always; online after warm-up)."""
        stats = self.metrics.get(name)
        if stats is None or not stats.count or (not self.fixed and stats.count < self.warmup):
            return None
        return stats

    def threshold(self, name: str, k: np.ndarray | float, floor: np.ndarray | float) -> np.ndarray | float:
        """``max(floor, mean + k * std)``; only ``floor`` while the metric is not known yet."""
        stats = self.stats(name)
        if stats is None:
            return floor
        return np.maximum(floor, stats.mean + k * stats.std)

    def zscore(self, name: str, values: np.ndarray) -> np.ndarray:
        """(value - mean) / std, NaN while unknown or when std is 0."""
        stats = self.stats(name)
        if stats is None or stats.std == 0:
            return np.full(len(values), np.nan)
        return (values - stats.mean) / stats.std

    def learn(self, name: str, values: np.ndarray) -> None:
        """Add known-normal samples (ignored by a fixed baseline)."""
        if not self.fixed and len(values):
            self.metrics.setdefault(name, MetricStats()).add(values.astype(np.float64))

    # ------------------------------------------------------------------ files

    def to_json(self) -> dict[str, Any]:
        """The file form (see the module docstring)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "sources": self.sources,
            "metrics": {name: s.to_json() for name, s in sorted(self.metrics.items())},
        }

    def save(self, path: Path) -> None:
        """Write atomically (temporary file, then rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(orjson.dumps(self.to_json(), option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)

    @staticmethod
    def from_json(data: Any, *, fixed: bool, warmup: int = 1000) -> Baseline:
        """Parse the file form; raise :class:`BaselineError` when it is not a baseline."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BaselineError(f"not a {FORMAT} file")
        if data.get("version") != VERSION:
            raise BaselineError(f"version {data.get('version')!r} is not supported (expected {VERSION})")
        metrics = data.get("metrics")
        if not isinstance(metrics, dict):
            raise BaselineError("'metrics' must be a mapping")
        baseline = Baseline(
            {name: MetricStats.from_json(name, m) for name, m in metrics.items()}, fixed=fixed, warmup=warmup
        )
        baseline.sources = [str(s) for s in data.get("sources", [])]
        return baseline

    @staticmethod
    def load(path: Path, *, fixed: bool = True, warmup: int = 1000) -> Baseline:
        """Read a baseline file; errors name the file."""
        try:
            data = orjson.loads(path.read_bytes())
        except OSError as exc:
            raise BaselineError(f"{path}: {exc.strerror or exc}") from None
        except orjson.JSONDecodeError as exc:
            raise BaselineError(f"{path}: not JSON ({exc})") from None
        try:
            return Baseline.from_json(data, fixed=fixed, warmup=warmup)
        except BaselineError as exc:
            raise BaselineError(f"{path}: {exc}") from None


def summarize(samples: dict[str, np.ndarray]) -> Baseline:
    """A fixed baseline from complete samples per metric, with percentiles."""
    metrics: dict[str, MetricStats] = {}
    for name, values in samples.items():
        values = values[np.isfinite(values)].astype(np.float64)
        stats = MetricStats()
        stats.add(values)
        if len(values):
            stats.percentiles = {
                str(p): float(v) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True)
            }
        metrics[name] = stats
    return Baseline(metrics, fixed=True)
