"""Group keys to slots, a batch at a time: a numpy hash table for the correlation windows.

A key is a tuple of field values (addresses, ports …).  Keys come as columns (one object
array a field) and are hashed as arrays; the table (open addressing, linear probing, load at
most one half) maps a hash to a slot, and a hit is confirmed by comparing the stored fields,
so keys that only share a hash stay apart.  Slots are numbered from 0 in creation order;
removed ones are left dead until they are a quarter of all, then :meth:`KeyTable.compact`
renumbers the live ones (the caller reorders its per-slot arrays the same way).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["KeyTable", "grown", "resized"]

_EMPTY, _TOMB = -1, -2
_MIN_TABLE = 1024


def grown(size: int) -> int:
    """Rows to give arrays of ``size`` rows that must grow: a quarter more (object arrays are
    filled with None, so room is resident memory), at least 1024."""
    return max(1024, size + size // 4)


def resized(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` copied into a new one of ``size`` rows (the rest uninitialized, or None)."""
    out = np.empty(size, dtype=array.dtype)
    n = min(size, len(array))
    out[:n] = array[:n]
    return out


class KeyTable:
    """Keys of ``fields`` values each, to slots; see the module docstring."""

    def __init__(self, fields: int) -> None:
        self.size = 0
        """Slots handed out (live and dead): per-slot arrays need this many rows."""
        self.live = 0
        """Live keys."""
        self.alive = np.empty(0, dtype=bool)
        self._keys = [np.empty(0, dtype=object) for _ in range(fields)]
        self._hash = np.empty(0, dtype=np.uint64)
        self._table = np.full(_MIN_TABLE, _EMPTY, dtype=np.int32)
        self._table_used = 0  # live entries and tombstones

    @property
    def capacity(self) -> int:
        """Slots the arrays have room for (per-slot arrays of the caller grow with it)."""
        return len(self._hash)

    def key(self, slot: int) -> tuple[Any, ...]:
        """The key in ``slot``."""
        return tuple(column[slot] for column in self._keys)

    def live_slots(self) -> np.ndarray:
        """The live slots, in slot order."""
        return np.flatnonzero(self.alive[: self.size])

    def find(self, columns: list[np.ndarray]) -> np.ndarray:
        """The slot of each key (-1: none); ``columns[f][i]`` is field ``f`` of key ``i``."""
        return self._lookup(_hash(columns, _rows(columns)), columns)

    def slots(self, columns: list[np.ndarray], rows: int) -> tuple[np.ndarray, np.ndarray]:
        """The slot of each of ``rows`` keys, new keys added: (slots, created) where
        ``created[i]`` says row ``i`` made its key's slot (the first row of a new key)."""
        hashes = _hash(columns, rows)
        slots = self._lookup(hashes, columns)
        created = np.zeros(rows, dtype=bool)
        missing = np.flatnonzero(slots < 0)
        while missing.size:
            # One new key per distinct hash (its first row); rows whose key only shares the
            # hash look up again after.
            _, first = np.unique(hashes[missing], return_index=True)
            first = missing[np.sort(first)]
            slots[first] = self._add(hashes[first], [c[first] for c in columns])
            created[first] = True
            rest = missing[slots[missing] < 0]
            if rest.size:
                slots[rest] = self._lookup(hashes[rest], [c[rest] for c in columns])
            missing = rest[slots[rest] < 0]
        return slots, created

    def remove(self, slots: np.ndarray) -> None:
        """Remove the keys in ``slots`` (live, distinct)."""
        if not slots.size:
            return
        self._table[self._positions(slots)] = _TOMB
        for column in self._keys:
            column[slots] = None
        self.live -= slots.size
        self.alive[slots] = False

    def compact(self) -> np.ndarray | None:
        """When dead slots are a quarter of all: renumber the live ones from 0 and return their
        old numbers in order (the caller keeps ``array[old]`` of each per-slot array); else None."""
        if self.size - self.live <= max(1024, self.size // 4):
            return None
        live = self.live_slots()
        room = grown(live.size)
        self._keys = [resized(column[live], room) for column in self._keys]
        self._hash = resized(self._hash[live], room)
        self.alive = resized(self.alive[live], room)
        self.size = live.size
        self._rebuild(live.size)
        return live

    # ------------------------------------------------------------------ the table

    def _add(self, hashes: np.ndarray, columns: list[np.ndarray]) -> np.ndarray:
        """Slots for new keys (distinct, absent), in order."""
        m = len(hashes)
        if self.size + m > len(self._hash):
            room = max(self.size + m, grown(len(self._hash)))
            self._keys = [resized(column, room) for column in self._keys]
            self._hash = resized(self._hash, room)
            self.alive = resized(self.alive, room)
        slots = np.arange(self.size, self.size + m)
        self.size += m
        self.live += m
        for stored, given in zip(self._keys, columns, strict=True):
            stored[slots] = given
        self._hash[slots] = hashes
        self.alive[slots] = True
        if 2 * (self._table_used + m) > len(self._table):
            self._rebuild(self.live)  # the new slots are live already: inserted with the rest
        else:
            self._insert(hashes, slots)
        return slots

    def _lookup(self, hashes: np.ndarray, columns: list[np.ndarray]) -> np.ndarray:
        mask = len(self._table) - 1
        pos = (hashes & np.uint64(mask)).astype(np.int64)
        out = np.full(len(hashes), -1, dtype=np.int64)
        pending = np.arange(len(hashes))
        while pending.size:
            slot = self._table[pos[pending]].astype(np.int64)
            hit = slot >= 0
            hit[hit] = self._hash[slot[hit]] == hashes[pending[hit]]
            for stored, given in zip(self._keys, columns, strict=True):
                if hit.any():
                    hit[hit] = _equal(stored[slot[hit]], given[pending[hit]])
            out[pending[hit]] = slot[hit]
            pending = pending[~hit & (slot != _EMPTY)]
            pos[pending] = (pos[pending] + 1) & mask
        return out

    def _insert(self, hashes: np.ndarray, slots: np.ndarray) -> None:
        """Put ``slots`` (keys known absent) into the table."""
        mask = len(self._table) - 1
        pos = (hashes & np.uint64(mask)).astype(np.int64)
        pending = np.arange(len(hashes))
        while pending.size:
            # Of the keys probing one free position, the first takes it; the others go on.
            candidates = pending[self._table[pos[pending]] < 0]
            taken, first = np.unique(pos[candidates], return_index=True)
            winners = candidates[first]
            self._table[taken] = slots[winners]
            placed = np.zeros(len(hashes), dtype=bool)
            placed[winners] = True
            pending = pending[~placed[pending]]
            pos[pending] = (pos[pending] + 1) & mask
        self._table_used += len(hashes)

    def _rebuild(self, keys: int) -> None:
        capacity = _MIN_TABLE
        while capacity < 2 * max(keys, 1):
            capacity *= 2
        self._table = np.full(capacity, _EMPTY, dtype=np.int32)
        self._table_used = 0
        live = self.live_slots()
        self._insert(self._hash[live], live)

    def _positions(self, slots: np.ndarray) -> np.ndarray:
        """The table positions of live ``slots``."""
        mask = len(self._table) - 1
        pos = (self._hash[slots] & np.uint64(mask)).astype(np.int64)
        out = np.empty(len(slots), dtype=np.int64)
        pending = np.arange(len(slots))
        while pending.size:
            hit = self._table[pos[pending]] == slots[pending]
            out[pending[hit]] = pos[pending[hit]]
            pending = pending[~hit]
            pos[pending] = (pos[pending] + 1) & mask
        return out


def _rows(columns: list[np.ndarray]) -> int:
    return len(columns[0]) if columns else 1


def _hash(columns: list[np.ndarray], rows: int) -> np.ndarray:
    """64-bit hashes of the keys whose fields are ``columns`` (equal keys, equal hashes)."""
    h = np.full(rows, 0x9E3779B97F4A7C15, dtype=np.uint64)
    for column in columns:
        field = np.fromiter(map(hash, column), dtype=np.int64, count=rows).view(np.uint64)
        h = (h ^ field) * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(31)
    return h


def _equal(stored: np.ndarray, given: np.ndarray) -> np.ndarray:
    """Elementwise key-field equality as dict keys compare: ``==``, or the same object (a NaN
    is its own key)."""
    equal = np.asarray(stored == given, dtype=bool)
    for i in np.flatnonzero(~equal).tolist():
        equal[i] = stored[i] is given[i]
    return equal
