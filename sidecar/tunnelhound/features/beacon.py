"""Beacon features: how regular the connections of one pair are (RITA-style).

A pair is (source ip, destination ip, destination port, protocol): a beacon that opens a fresh
source port per check-in is still one pair. Per pair the stage remembers the start time and the
bytes the source sent of the last ``history`` connections (bounded; least recently seen pairs are
evicted first). The score follows RITA: for the intervals between connections and for the sizes,
``(1 - |Bowley skew|)`` and ``1 - MADM / median`` (dispersion relative to the median, so a 1 s
lab beacon and a 10 min real one score alike); unlike RITA the lower of the two, and the lower
of the two series, count (see :func:`regularity`).

Exporters merge a fixed-port UDP beacon into few long flows (one record per idle/active
timeout). Such a record is expanded into its packets when it shows the signs of one: UDP or
ICMP, at least three packets spaced ``min_interval`` or more apart on average, and every
direction's bytes an exact multiple of its packets (all packets the same size). Its packets then
count as connections, evenly spaced, each of the average size; the score comes from how these
agree with the pair's other records.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from tunnelhound.config import BeaconDetectionConfig
from tunnelhound.features.overrides import RowSettings
from tunnelhound.features.values import ICMP, ICMPV6, NS, UDP, duration_s, flag
from tunnelhound.normalize.frame import ABSENT, FlowFrame

_Series = tuple[np.ndarray, np.ndarray]
"""(connection start times in seconds, bytes sent by the source), oldest first."""


SKEW_TOLERANCE = 0.1
"""Quartiles closer than this fraction of the median are "all the same": Bowley skew of
near-identical values (sizes 90 and 91 bytes) swings between -1 and 1 and means nothing."""


def regularity(values: np.ndarray) -> float:
    """Per-series score in [0, 1]: the lower of symmetry (1 - |Bowley skew|) and tightness
    (1 - MADM / median). RITA averages the two; the lower is used here because uniformly random
    gaps are perfectly symmetric and would score 0.75 on symmetry alone."""
    q1, q2, q3 = np.percentile(values, (25, 50, 75))
    spread = q3 - q1
    skew = (q3 + q1 - 2 * q2) / spread if spread > SKEW_TOLERANCE * abs(q2) else 0.0
    madm = float(np.median(np.abs(values - q2)))
    dispersion = min(1.0, madm / q2) if q2 > 0 else float(madm > 0)
    return float(min(1 - abs(skew), 1 - dispersion))


def score(times: np.ndarray, sizes: np.ndarray) -> tuple[float, float]:
    """(score, median interval in seconds) of one pair's connections; NaN below three.

    The score is the lower of the interval and the size regularity: a beacon repeats both."""
    if len(times) < 3:
        return float("nan"), float("nan")
    intervals = np.diff(np.sort(times))
    return min(regularity(intervals), regularity(sizes)), float(np.median(intervals))


class BeaconFeatures:
    """Per-pair connection history and the ``beacon.*`` columns."""

    def __init__(self, config: BeaconDetectionConfig) -> None:
        self.config = config
        self.pairs: OrderedDict[str, _Series] = OrderedDict()
        self.evicted = 0

    def apply(self, frame: FlowFrame, rows: RowSettings) -> None:
        """Add the frame's connections to their pairs' history and score every flow's pair."""
        n, c, cfg = frame.n, frame.cols, self.config
        out_score, out_interval = np.full(n, np.nan), np.full(n, np.nan)
        out_count = np.full(n, ABSENT, dtype=np.int64)
        active = rows.enabled("beacon") & ~np.isin(c["dst_port"], cfg.exclude_ports)
        if active.any():
            keys = _pair_keys(frame)
            obs = self._observations(frame)
            for key_rows in _group(keys, active):
                series = self._extend(keys[key_rows[0]], *(o[key_rows] for o in obs))
                value, interval = score(*series)
                out_score[key_rows], out_interval[key_rows] = value, interval
                out_count[key_rows] = len(series[0])
        regular = (
            (out_score >= rows.beacon_min_score)
            & (out_count >= cfg.min_connections)
            & (out_interval >= cfg.min_interval)
        )
        frame.features["beacon.score"] = out_score
        frame.features["beacon.interval"] = out_interval
        frame.features["beacon.connections"] = out_count
        frame.features["beacon.regular"] = flag(regular)

    def _observations(self, frame: FlowFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per flow: start (s), bytes per connection, the connections it stands for (1, or its
        packets when it is a merged fixed-port beacon) and their spacing (s)."""
        c = frame.cols
        start = c["start_ns"] / NS
        sp, dp, sb, db = c["src_packets"], c["dst_packets"], c["src_bytes"], c["dst_bytes"]
        gap = duration_s(c) / np.maximum(sp - 1, 1)
        same_size = (sp > 0) & (sb % np.maximum(sp, 1) == 0) & ((dp == 0) | (db % np.maximum(dp, 1) == 0))
        merged = (
            np.isin(c["proto"], (UDP, ICMP, ICMPV6))
            & (sp >= 3)
            & (gap >= self.config.min_interval)
            & same_size
        )
        sizes = np.where(merged, sb // np.maximum(sp, 1), sb).astype(np.float64)
        count = np.where(merged, np.minimum(sp, self.config.history), 1)
        return start, sizes, count, np.where(merged, gap, 0.0)

    def _extend(
        self, key: str, times: np.ndarray, sizes: np.ndarray, count: np.ndarray, gap: np.ndarray
    ) -> _Series:
        """Append one pair's new connections to its history (bounded) and return the history."""
        # Each merged record becomes `count` evenly spaced connections of its average size.
        offsets = np.concatenate([np.arange(k) for k in count.tolist()]) if (count > 1).any() else 0
        new_times = np.repeat(times, count) + offsets * np.repeat(gap, count)
        new_sizes = np.repeat(sizes, count)
        old = self.pairs.pop(key, None)
        if old is not None:
            new_times, new_sizes = np.concatenate([old[0], new_times]), np.concatenate([old[1], new_sizes])
        order = np.argsort(new_times, kind="stable")[-self.config.history :]
        series = (new_times[order], new_sizes[order])
        self.pairs[key] = series
        while len(self.pairs) > self.config.max_pairs:
            self.pairs.popitem(last=False)
            self.evicted += 1
        return series

    # ------------------------------------------------------------------ state

    def save(self, path: Path) -> None:
        """Write the history (npz: keys, per-pair lengths, concatenated times and sizes)."""
        keys = list(self.pairs)
        lengths = np.array([len(self.pairs[k][0]) for k in keys], dtype=np.int64)
        times = np.concatenate([self.pairs[k][0] for k in keys]) if keys else np.empty(0)
        sizes = np.concatenate([self.pairs[k][1] for k in keys]) if keys else np.empty(0)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, keys=np.array(keys, dtype=str), lengths=lengths, times=times, sizes=sizes)
        tmp.replace(path)

    def load(self, path: Path) -> int:
        """Restore the history saved by :meth:`save`; returns the pairs restored."""
        with np.load(path, allow_pickle=False) as data:
            keys, lengths = data["keys"].tolist(), data["lengths"]
            bounds = np.concatenate([[0], np.cumsum(lengths)])
            times, sizes = data["times"], data["sizes"]
        self.pairs = OrderedDict(
            (k, (times[bounds[i] : bounds[i + 1]], sizes[bounds[i] : bounds[i + 1]]))
            for i, k in enumerate(
                keys[-self.config.max_pairs :], start=max(0, len(keys) - self.config.max_pairs)
            )
        )
        return len(self.pairs)


def _pair_keys(frame: FlowFrame) -> np.ndarray:
    c = frame.cols
    return np.array(
        [
            f"{s} {d} {p} {t}"
            for s, d, p, t in zip(
                c["src_ip"].tolist(),
                c["dst_ip"].tolist(),
                c["dst_port"].tolist(),
                c["proto"].tolist(),
                strict=True,
            )
        ],
        dtype=object,
    )


def _group(keys: np.ndarray, active: np.ndarray) -> list[np.ndarray]:
    """Row indices per distinct key among the active rows."""
    rows = np.flatnonzero(active)
    _, inverse = np.unique(keys[rows].astype(str), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    splits = np.flatnonzero(np.diff(inverse[order])) + 1
    return np.split(rows[order], splits)
