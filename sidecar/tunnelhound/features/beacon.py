"""Beacon features: how regular the connections of one pair are (RITA-style).

A pair is (source ip, destination ip, destination port, protocol): a beacon that opens a fresh
source port per check-in is still one pair. Per pair the stage remembers the start time and the
bytes the source sent of the last ``history`` connections, in fixed-size numpy rings (one row
per pair, at most ``max_pairs`` rows; the least recently seen pair gives its row up first): at
most ``max_pairs * history * 12`` bytes (38 MB at the defaults), allocated once and resident
only as pairs take rows. Pairs are found by a 64-bit hash of each flow's pair (arrays, no
Python object per flow). Every pair a batch touches is scored at once, with array operations
over the rows.

The score follows RITA: for the intervals between connections and for the sizes,
``(1 - |Bowley skew|)`` and ``1 - MADM / median`` (dispersion relative to the median, so a 1 s
lab beacon and a 10 min real one score alike); unlike RITA the lower of the two, and the lower
of the two series, count (see :func:`regularity`).

Exporters merge a fixed-port UDP beacon into few long flows (one record per idle/active
timeout). Such a record is expanded into its packets when it shows the signs of one: UDP or
ICMP, at least three packets spaced ``min_interval`` or more apart on average, and every
direction's bytes an exact multiple of its packets (all packets the same size). Its packets then
count as connections, evenly spaced, each of the average size. One record's even spacing is only
its average, so a pair is called regular only once it has two records or more: then the score
says whether they agree (``ping -c 4`` is one record and stays quiet; a beacon merged into
records of 14 and 10 packets 5 s apart scores 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tunnelhound.config import BeaconDetectionConfig
from tunnelhound.features.overrides import RowSettings
from tunnelhound.features.values import ICMP, ICMPV6, NS, UDP, duration_s
from tunnelhound.normalize.biflow import among, combine_hashes
from tunnelhound.normalize.columns import Columns
from tunnelhound.normalize.frame import ABSENT, FlowFrame

_NEVER = np.iinfo(np.int64).max
_Pairs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Pairs as arrays: source and destination addresses, destination port, protocol."""

SKEW_TOLERANCE = 0.1
"""Quartiles closer than this fraction of the median are "all the same": Bowley skew of
near-identical values (sizes 90 and 91 bytes) swings between -1 and 1 and means nothing."""


def regularity(values: np.ndarray) -> np.ndarray:
    """Per row of ``values`` (sorted ascending, NaN padding at the end), a score in [0, 1]: the
    lower of symmetry (1 - |Bowley skew|) and tightness (1 - MADM / median). RITA averages the
    two; the lower is used here because uniformly random gaps are perfectly symmetric and would
    score 0.75 on symmetry alone. NaN for rows with fewer than two values."""
    count = np.sum(~np.isnan(values), axis=1)
    q1, q2, q3 = (_quantile(values, count, q) for q in (0.25, 0.5, 0.75))
    spread = q3 - q1
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where(spread > SKEW_TOLERANCE * np.abs(q2), (q3 + q1 - 2 * q2) / spread, 0.0)
        madm = _quantile(np.sort(np.abs(values - q2[:, None]), axis=1), count, 0.5)
        dispersion = np.where(q2 > 0, np.minimum(1.0, madm / q2), (madm > 0).astype(float))
    score = np.minimum(1 - np.abs(skew), 1 - dispersion)
    return np.where(count >= 2, score, np.nan)


def _quantile(sorted_rows: np.ndarray, count: np.ndarray, q: float) -> np.ndarray:
    """Linear-interpolated quantile per row over its first ``count`` values (numpy's default)."""
    pos = q * np.maximum(count - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
    a = np.take_along_axis(sorted_rows, lo[:, None], axis=1)[:, 0]
    b = np.take_along_axis(sorted_rows, hi[:, None], axis=1)[:, 0]
    return a + (b - a) * (pos - lo)


def score(times: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score, median interval in seconds) per row of connection times and sizes (NaN padded);
    NaN for rows with fewer than three connections.

    The score is the lower of the interval and the size regularity: a beacon repeats both."""
    ordered = np.sort(times, axis=1)
    # The differences of sorted times are not sorted themselves; quantiles need them sorted
    # (NaN padding stays at the end).
    intervals = np.sort(np.diff(ordered, axis=1), axis=1)
    count = np.sum(~np.isnan(times), axis=1)
    value = np.minimum(regularity(intervals), regularity(np.sort(sizes, axis=1)))
    median = _quantile(intervals, np.maximum(count - 1, 0), 0.5)
    enough = count >= 3
    return np.where(enough, value, np.nan), np.where(enough, median, np.nan)


class BeaconFeatures:
    """Per-pair connection history and the ``beacon.*`` columns."""

    def __init__(self, config: BeaconDetectionConfig) -> None:
        self.config = config
        self.excluded = np.array(config.exclude_ports, dtype=np.int64)
        self.evicted = 0
        self._clear()

    def _clear(self) -> None:
        """Forget every pair."""
        rows, width = self.config.max_pairs, self.config.history
        self.src, self.dst = np.full(rows, None, dtype=object), np.full(rows, None, dtype=object)
        self.port, self.proto = np.zeros(rows, dtype=np.int64), np.zeros(rows, dtype=np.int64)
        """Row -> its pair (key text made only to save it)."""
        self.hashes = np.zeros(rows, dtype=np.uint64)
        """Row -> the 64-bit hash of its pair (see :func:`pair_hashes`)."""
        self._index, self._index_rows = np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
        """The used rows' hashes, sorted, and their rows: pairs are found by binary search."""
        # Rings for every row at once: rows are written (and their pages touched) only when a
        # pair takes them, so memory grows as pairs appear without ever copying the rings.
        self.times = np.empty((rows, width))
        self.sizes = np.empty((rows, width), dtype=np.float32)  # sizes need no more precision
        self.filled = np.zeros(rows, dtype=np.int64)
        """Connections ever added per row (the next write goes to ``filled % history``)."""
        self.records = np.zeros(rows, dtype=np.int64)
        """Flow records ever added per row (a merged record adds many connections)."""
        self.last_seen = np.zeros(rows, dtype=np.int64)
        self.used = np.zeros(rows, dtype=bool)
        self.born = np.zeros(rows, dtype=np.int64)
        """When each row's pair was taken in (pairs are saved in that order)."""
        self.births = 0
        self.clock = 0

    @property
    def pairs(self) -> dict[str, int]:
        """The pairs remembered: key text -> row."""
        rows = np.flatnonzero(self.used)
        return dict(zip(self._keys(rows), rows.tolist(), strict=True))

    def _keys(self, rows: np.ndarray) -> list[str]:
        """The key text of the pairs in ``rows``: "source destination port protocol"."""
        parts = (self.src[rows], self.dst[rows], self.port[rows], self.proto[rows])
        return [f"{s} {d} {p} {t}" for s, d, p, t in zip(*(x.tolist() for x in parts), strict=True)]

    def apply(self, frame: FlowFrame, rows: RowSettings) -> None:
        """Add the frame's connections to their pairs' history and score every flow's pair."""
        n, c, cfg = frame.n, frame.cols, self.config
        out_score, out_interval = np.full(n, np.nan), np.full(n, np.nan)
        out_count = np.full(n, ABSENT, dtype=np.int64)
        out_records = np.zeros(n, dtype=np.int64)
        active = np.flatnonzero(rows.enabled("beacon") & ~among(c["dst_port"], self.excluded))
        if len(active):
            slot = self._slots(frame, active)
            active, slot = active[slot >= 0], slot[slot >= 0]
            self._append(frame, active, slot)
            touched, inverse = np.unique(slot, return_inverse=True)
            # Fewer than three connections score NaN: only pairs with more are scored.
            value, interval = np.full(len(touched), np.nan), np.full(len(touched), np.nan)
            scored = np.flatnonzero(self.filled[touched] >= 3)
            value[scored], interval[scored] = score(self.times[touched[scored]], self.sizes[touched[scored]])
            out_score[active], out_interval[active] = value[inverse], interval[inverse]
            out_count[active] = np.minimum(self.filled[touched], cfg.history)[inverse]
            out_records[active] = self.records[touched][inverse]
        regular = (
            (out_score >= rows.beacon_min_score)
            & (out_count >= cfg.min_connections)
            & (out_interval >= cfg.min_interval)
            # one record's spacing is its average: regularity needs two records that agree
            & (out_records >= 2)
        )
        frame.features["beacon.score"] = out_score
        frame.features["beacon.interval"] = out_interval
        frame.features["beacon.connections"] = out_count
        frame.features["beacon.regular"] = regular

    def _slots(self, frame: FlowFrame, active: np.ndarray) -> np.ndarray:
        """The ring row of each active flow's pair (new pairs get free or evicted rows)."""
        cols = frame.columns
        port, proto = cols["dst_port"][active], cols["proto"][active]
        # Distinct pairs by their hashes, with arrays: the addresses hash from their digests
        # (no str is built for them). New pairs take rows in the order of their hashes, which
        # are the same in every process.
        hashes = pair_hashes(cols.hashes("src_ip")[active], cols.hashes("dst_ip")[active], port, proto)
        distinct, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        slots = self._find(distinct)
        new = np.flatnonzero(slots < 0)
        if len(new):
            at = first[new]
            texts = cols.gather(("src_ip", "dst_ip"), active[at])  # the new pairs' text only
            pairs = (texts["src_ip"], texts["dst_ip"], port[at], proto[at])
            slots[new] = self._allocate(pairs, distinct[new], keep=slots[slots >= 0])
        self.clock += 1
        self.last_seen[slots[slots >= 0]] = self.clock
        return slots[inverse]

    def _find(self, hashes: np.ndarray) -> np.ndarray:
        """The row of each pair hash (-1: not remembered)."""
        index = self._index
        if not len(index):
            return np.full(len(hashes), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(index, hashes), len(index) - 1)
        return np.where(index[at] == hashes, self._index_rows[at], -1)

    def _allocate(self, pairs: _Pairs, hashes: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Rows for new ``pairs`` (source, destination, port, protocol arrays): unused rows first,
        then those least recently seen (never one a pair of this batch holds). -1 for pairs
        beyond ``max_pairs`` in one batch."""
        need = len(hashes)
        free = np.flatnonzero(~self.used)[:need]
        if len(free) < need:
            age = np.where(self.used, self.last_seen, _NEVER)
            age[keep] = _NEVER
            victims = _oldest(age, need - len(free))
            victims = victims[age[victims] < _NEVER]
            gone = np.searchsorted(self._index, self.hashes[victims])
            self._index, self._index_rows = np.delete(self._index, gone), np.delete(self._index_rows, gone)
            self.evicted += len(victims)
            free = np.concatenate([free, victims])
        taken = len(free)
        for column, values in zip((self.src, self.dst, self.port, self.proto), pairs, strict=True):
            column[free] = values[:taken]
        self.hashes[free] = hashes[:taken]
        self.born[free] = self.births + np.arange(taken)
        self.births += taken
        self.used[free] = True
        self.times[free], self.sizes[free], self.filled[free], self.records[free] = np.nan, np.nan, 0, 0
        self._remember(hashes[:taken], free)
        out = np.full(need, -1, dtype=np.int64)
        out[:taken] = free
        return out

    def _remember(self, hashes: np.ndarray, rows: np.ndarray) -> None:
        """Add pairs (hash, row) to the sorted index."""
        order = np.argsort(hashes)
        at = np.searchsorted(self._index, hashes[order])
        self._index = np.insert(self._index, at, hashes[order])
        self._index_rows = np.insert(self._index_rows, at, rows[order])

    def _append(self, frame: FlowFrame, active: np.ndarray, slot: np.ndarray) -> None:
        """Write each active flow's connections into its pair's ring."""
        c, cfg = frame.cols, self.config
        sp, dp = c["src_packets"][active], c["dst_packets"][active]
        sb, db = c["src_bytes"][active], c["dst_bytes"][active]
        gap = duration_s(c)[active] / np.maximum(sp - 1, 1)
        same_size = (sp > 0) & (sb % np.maximum(sp, 1) == 0) & ((dp == 0) | (db % np.maximum(dp, 1) == 0))
        merged = (
            among(c["proto"][active], (UDP, ICMP, ICMPV6)) & (sp >= 3) & (gap >= cfg.min_interval) & same_size
        )
        count = np.where(merged, np.minimum(sp, cfg.history), 1)
        # Each merged record becomes `count` evenly spaced connections of its average size.
        first = np.repeat(np.cumsum(count) - count, count)
        offset = np.arange(int(count.sum())) - first
        times = np.repeat(c["start_ns"][active] / NS, count) + offset * np.repeat(
            np.where(merged, gap, 0.0), count
        )
        sizes = np.repeat(np.where(merged, sb // np.maximum(sp, 1), sb).astype(np.float64), count)
        rows = np.repeat(slot, count)
        # Position of each connection among its pair's new ones, in time order.
        order = np.lexsort((times, rows))
        rows, times, sizes = rows[order], times[order], sizes[order]
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        rank = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
        position = (self.filled[rows] + rank) % cfg.history
        self.times[rows, position] = times
        self.sizes[rows, position] = sizes
        np.add.at(self.filled, rows, 1)
        np.add.at(self.records, slot, 1)

    # ------------------------------------------------------------------ state

    def save(self, path: Path) -> None:
        """Write the history (npz: pair keys and their ring rows, in the order pairs came)."""
        used = np.flatnonzero(self.used)
        rows = used[np.argsort(self.born[used])]
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            keys=np.array(self._keys(rows), dtype=str),
            times=self.times[rows],
            sizes=self.sizes[rows],
            filled=self.filled[rows],
            records=self.records[rows],
            last_seen=self.last_seen[rows],
        )
        tmp.replace(path)

    def load(self, path: Path) -> int:
        """Restore the history :meth:`save` wrote (the most recently seen pairs when there are
        more than ``max_pairs``; rings cut or padded to ``history``); returns the pairs restored."""
        cfg = self.config
        with np.load(path, allow_pickle=False) as data:
            keys = data["keys"].tolist()
            keep = np.argsort(data["last_seen"], kind="stable")[-cfg.max_pairs :]
            times, sizes = data["times"][keep], data["sizes"][keep]
            filled, last_seen = data["filled"][keep], data["last_seen"][keep]
            records = data["records"][keep]
        if times.shape[1] != cfg.history:
            # another ring width: keep what fits, in time order, and restart the write position
            order = np.argsort(times, axis=1)[:, -cfg.history :]
            times, sizes = (
                _width(np.take_along_axis(times, order, 1), cfg.history),
                _width(np.take_along_axis(sizes, order, 1), cfg.history),
            )
            filled = np.sum(~np.isnan(times), axis=1)
        self._clear()
        rows = np.arange(len(keep))
        self.times[rows], self.sizes[rows], self.filled[rows] = times, sizes, filled
        self.records[rows], self.last_seen[rows] = records, last_seen
        self.used[rows] = True
        self.born[rows] = rows
        self.births = len(keep)
        self.clock = int(last_seen.max()) if len(last_seen) else 0
        pairs = _parse([keys[i] for i in keep.tolist()])
        for column, values in zip((self.src, self.dst, self.port, self.proto), pairs, strict=True):
            column[rows] = values
        src, dst, port, proto = pairs
        self.hashes[rows] = pair_hashes(_address_hashes(src), _address_hashes(dst), port, proto)
        self._remember(self.hashes[rows], rows)
        return len(keep)


def pair_hashes(src: np.ndarray, dst: np.ndarray, port: np.ndarray, proto: np.ndarray) -> np.ndarray:
    """A 64-bit hash per flow of its pair (the hashes of the source and destination address
    texts, destination port, protocol): equal pairs hash equally. Two pairs sharing a hash
    would share a history; among a million pairs that happens with odds of about 3e-8."""
    return combine_hashes(src, dst, port.astype(np.uint64), proto.astype(np.uint64))


def _address_hashes(values: np.ndarray) -> np.ndarray:
    """:meth:`Columns.hashes` of an object column of addresses (str or None)."""
    return Columns({"address": values}).hashes("address")


def _parse(keys: list[str]) -> _Pairs:
    """Pairs (source, destination, port, protocol arrays) from their key text."""
    parts = [key.split(" ") for key in keys]
    src, dst = (np.array([None if p[i] == "None" else p[i] for p in parts], dtype=object) for i in (0, 1))
    port, proto = (np.array([int(p[i]) for p in parts], dtype=np.int64) for i in (2, 3))
    return src, dst, port, proto


def _oldest(age: np.ndarray, k: int) -> np.ndarray:
    """The rows of the ``k`` smallest ages, smallest first, ties in row order: what
    ``np.argsort(age, kind="stable")[:k]`` gives, without sorting every row (once the history
    is full this runs on every batch, over ``max_pairs`` rows, for a few thousand victims)."""
    if k >= len(age):
        return np.argsort(age, kind="stable")
    bound = np.partition(age, k - 1)[k - 1]
    candidates = np.flatnonzero(age <= bound)  # row order
    return candidates[np.argsort(age[candidates], kind="stable")[:k]]


def _width(rows: np.ndarray, width: int) -> np.ndarray:
    """Rings cut or NaN-padded to ``width`` columns."""
    if rows.shape[1] >= width:
        return rows[:, :width].copy()
    return np.hstack([rows, np.full((len(rows), width - rows.shape[1]), np.nan)])
