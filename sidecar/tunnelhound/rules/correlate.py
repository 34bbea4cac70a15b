"""Correlation state: sliding windows on flow time, per rule and group key, with bounded
lateness, suppression and a cap on the number of groups.

Events (a matching flow, or a firing of a correlated correlation) are kept per group in time
order.  A window is judged once the flows it should hold have arrived: the window ending at
event time ``t`` covers ``[t - timespan, t]`` and is evaluated when the watermark (latest flow
time seen minus the allowed lateness) has passed ``t``.  A flow arriving later still counts in
the windows judged after it arrives; one older than any such window is dropped and counted.  Windows are evaluated by sliding over the group's events (a running
count, distinct-value counter or sum), so a batch costs the events it adds plus one pass over
the windows they touch.  A firing suppresses the same rule and key until ``t + suppression``:
one alert per rule and key per suppression window.
"""

from __future__ import annotations

import math
import operator
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from tunnelhound.normalize.rows import object_column

from .keytable import KeyTable, grown, resized

__all__ = [
    "CorrelationSpec",
    "Counters",
    "Event",
    "EventBatch",
    "Firing",
    "Suppressor",
    "Windows",
    "dump_event",
    "event_query",
    "flow_count",
    "flow_ids",
    "packed_ids",
    "restore_event",
]

CorrelationKind = Literal["event_count", "value_count", "value_sum"]
Pins = tuple[str | None, str | None, int | None, int | None, str | None]
"""source.ip, destination.ip, source.port, destination.port, network.community_id."""

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "eq": operator.eq,
    "neq": operator.ne,
}


@dataclass(slots=True)
class Counters:
    """What the engine dropped or cut, for metrics (never silently)."""

    late_events: int = 0
    suppressed: int = 0
    evicted_groups: int = 0
    evicted_events: int = 0
    evicted_suppressions: int = 0
    state_errors: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CorrelationSpec:
    """A loaded correlation rule: what it counts, over which rules, keyed and bounded how."""

    name: str
    kind: CorrelationKind
    sources: tuple[str, ...]
    group_by: tuple[str, ...]
    timespan_ns: int
    op: str
    threshold: float
    field: str | None = None


Event = tuple[Any, ...]
"""One thing a correlation counts: a flow, or a firing of a correlation it chains on, as a
plain tuple ``(t, start, value, id, *pins)`` (fields :data:`T` … :data:`IDS`, then the five
:data:`Pins` from :data:`PINS` on, inline: one object a flow); a firing's event adds
``flows, query`` (:data:`FLOWS`, :data:`QUERY`), which for a flow are 1 and None and not
stored (:func:`flow_count`, :func:`event_query`): a million hosts hold millions of events.

``t`` is ``event.end`` in ns truncated to milliseconds (the precision Elasticsearch keeps, so
evidence queries by time range select exactly the window's events); ``id`` the flow's
``event.id`` (its 16 bytes when it is a 128-bit hex digest: :func:`packed_ids`) or a firing's
evidence ids (a list); ``flows`` how many flows it stands for; ``query`` a firing's evidence
query.  Plain tuples because flows become events by the thousand: they are cheap to make, and
the garbage collector stops tracking a tuple of plain values (a tuple subclass it tracks for
ever, and a full collection then visits every event).
"""
T, START, VALUE, IDS, PINS = range(5)
PIN_FIELDS = ("source.ip", "destination.ip", "source.port", "destination.port", "network.community_id")
"""The fields of the five :data:`Pins`, in their order."""
FLOWS, QUERY = PINS + 5, PINS + 6
_STATE_V1 = 1
"""The state version whose events were ``(t, start, value, ids, flows, query, *pins)``."""


def packed_ids(ids: list[Any]) -> list[Any]:
    """Flows' ``event.id`` s as events keep them: a 32-digit lowercase hex digest (every id
    the normalizer makes) as its 16 bytes, 49 bytes of memory instead of 81; any other id as
    it is (:func:`flow_ids` gives the text back)."""
    # Every id such a digest (the normalizer's): all of them decoded at once.
    try:
        joined = "".join(ids)
    except TypeError:  # not all text
        joined = ""
    if ids and len(joined) == 32 * len(ids):
        try:
            raw = bytes.fromhex(joined)
        except ValueError:
            raw = b""
        # Lower-case hex digits only (what hex() writes back), 32 of them each.
        if len(raw) == 16 * len(ids) and raw.hex() == joined and set(map(len, ids)) == {32}:
            return list(np.frombuffer(raw, dtype="V16").tolist())
    out = []
    for text in ids:
        # Lower case (or digits only): bytes.hex() writes exactly this text back.
        if text.__class__ is str and len(text) == 32 and (text.islower() or text.isdigit()):
            try:
                raw = bytes.fromhex(text)
            except ValueError:
                raw = b""
            if len(raw) == 16:  # fewer: the text had spaces, which fromhex skips
                out.append(raw)
                continue
        out.append(text)
    return out


def flow_ids(event: Event) -> list[str]:
    """The evidence flows' ids of an event."""
    ids = event[IDS]
    if ids.__class__ is bytes:
        return [ids.hex()]
    return [ids] if isinstance(ids, str) else ids


def flow_count(event: Event) -> int:
    """How many flows an event stands for."""
    return event[FLOWS] if len(event) > FLOWS else 1


def event_query(event: Event) -> str | None:
    """A firing's evidence query (None for a flow)."""
    return event[QUERY] if len(event) > QUERY else None


def dump_event(event: Event) -> list[Any]:
    """An event in its JSON form (a list; ids as text)."""
    row = list(event)
    if row[IDS].__class__ is bytes:
        row[IDS] = row[IDS].hex()
    return row


def restore_event(row: list[Any], version: int) -> Event:
    """An event from its JSON form, written by state ``version``."""
    if version == _STATE_V1:
        flows, query = row[4:6]
        row = row[:4] + row[6:] + ([] if (flows, query) == (1, None) else [flows, query])
    if isinstance(row[IDS], str):
        row[IDS] = packed_ids([row[IDS]])[0]
    return tuple(row)


@dataclass(slots=True)
class Firing:
    """A window that met its rule's condition: the group key, its events and the value."""

    key: tuple[Any, ...]
    events: list[Event]
    value: float


class Suppressor:
    """Per key: flow time until which a rule stays quiet after firing (bounded, oldest evicted)."""

    def __init__(self, suppression_ns: int, max_keys: int, counters: Counters) -> None:
        self.suppression_ns = suppression_ns
        self.max_keys = max_keys
        self.counters = counters
        self.until: OrderedDict[Hashable, int] = OrderedDict()

    def allow(self, key: Hashable, t: int) -> bool:
        """True (and quiet from now on) if ``key`` may fire at ``t``; counts a suppression otherwise."""
        if self.until.get(key, -(2**63)) > t:
            self.counters.suppressed += 1
            return False
        self.until[key] = t + self.suppression_ns
        self.until.move_to_end(key)
        while len(self.until) > self.max_keys:
            self.until.popitem(last=False)
            self.counters.evicted_suppressions += 1
        return True

    def prune(self, now: int) -> None:
        """Forget keys whose quiet time ended before ``now``: from the oldest on, as keys are
        kept in the order they fired (a key fired out of order stays until those before it go)."""
        until = self.until
        while until and next(iter(until.values())) <= now:
            until.popitem(last=False)

    def dump(self) -> list[list[Any]]:
        """JSON-ready rows: key, quiet until."""
        return [[list(key) if isinstance(key, tuple) else key, until] for key, until in self.until.items()]

    def restore(self, rows: list[list[Any]]) -> None:
        """Keys from :meth:`dump` rows."""
        for key, until in rows:
            self.until[tuple(key) if isinstance(key, list) else key] = until


@dataclass(slots=True)
class EventBatch:
    """Events as columns, one row an event (see :data:`Event` for the fields): what
    :meth:`Windows.add` takes, so a batch of flows never becomes per-event objects."""

    t: np.ndarray
    """``event.end`` in ns (int64)."""
    start: np.ndarray
    """``event.start`` in ns (int64)."""
    value: np.ndarray
    """The counted value (object; float64 for sums)."""
    ids: np.ndarray
    """The ids of :data:`Event` (object)."""
    pins: tuple[np.ndarray, ...]
    """The five :data:`Pins` (object arrays)."""
    extra: np.ndarray | None = None
    """Per event None (a flow) or ``(flows, query)`` (a firing), object; None: all flows."""

    @classmethod
    def of(cls, events: list[Event], value_at: int = VALUE) -> EventBatch:
        """Event tuples as a batch (the counted value read at ``value_at``)."""
        columns = [object_column([e[i] for e in events]) for i in range(PINS + 5)]
        extra = object_column([(e[FLOWS], e[QUERY]) if len(e) > FLOWS else None for e in events])
        return cls(
            t=np.array([e[T] for e in events], dtype=np.int64),
            start=np.array([e[START] for e in events], dtype=np.int64),
            value=object_column([e[value_at] for e in events]),
            ids=columns[IDS],
            pins=tuple(columns[PINS:]),
            extra=extra if any(x is not None for x in extra.tolist()) else None,
        )

    def __len__(self) -> int:
        return len(self.t)


class Windows:
    """The sliding windows of one correlation rule, per group key, held as columns.

    Groups are slots: a numpy hash table (linear probing on the group key's hash, keys
    compared on a hit) maps a key to its slot, and per-slot arrays hold the key's fields, the
    end of the last judged window (``done``), when its next window is due, its recency and its
    event count.  Events are rows of per-rule columns (time, start, value, id, pins, slot) in
    arrival order: nothing is a Python object per event or per group but the values the
    events share with the frame (addresses, ids).  A batch is added, judged and trimmed with
    array operations over its rows and the groups it touches; removed rows and slots are
    compacted away once they are a quarter of the arrays.
    """

    def __init__(
        self,
        spec: CorrelationSpec,
        suppressor: Suppressor,
        max_groups: int,
        max_events: int,
        counters: Counters,
        *,
        max_rule_events: int = 1_000_000,
        value_at: int = VALUE,
    ) -> None:
        self.spec = spec
        # Where an event tuple holds the counted value: VALUE, or the pin that is the counted
        # field (then the materialized events keep VALUE None, as the flows' shared events).
        self.value_at = value_at
        self.suppressor = suppressor
        self.max_groups = max_groups
        self.max_events = max_events
        self.max_rule_events = max_rule_events
        self.counters = counters
        self._test = OPS[spec.op]
        self._min_events = _min_events(spec)
        self._sum = spec.kind == "value_sum"
        # Per group slot of the key table: the last judged window's end, when the next window
        # is due (and its place among those due at once), recency, the latest event, events.
        self._groups = KeyTable(len(spec.group_by))
        self._done = np.empty(0, dtype=np.int64)
        self._due = np.empty(0, dtype=np.int64)
        self._seq = np.empty(0, dtype=np.int64)
        self._recent = np.empty(0, dtype=np.int64)
        self._last = np.empty(0, dtype=np.int64)
        self._count = np.empty(0, dtype=np.int32)
        self._clock = 0  # recency and scheduling order: one tick an event or schedule
        # Event rows.
        self._n = 0
        self._dead_events = 0
        self._ev: dict[str, np.ndarray] = {
            name: np.empty(0, dtype=dtype) for name, dtype in self._event_columns().items()
        }

    def _event_columns(self) -> dict[str, Any]:
        """Event columns and their types: ``ids`` holds a firing's ``(ids, flows, query)``;
        ``value`` only what is counted and not a pin (a distinct count of a pin reads it)."""
        columns: dict[str, Any] = {"slot": np.int32, "t": np.int64, "start": np.int64, "ids": object}
        columns.update({f"pin{k}": object for k in range(5)})
        if self._sum:
            columns["value"] = np.float64
        elif self.spec.kind == "value_count" and self.value_at == VALUE:
            columns["value"] = object
        return columns

    def _values(self, rows: np.ndarray) -> np.ndarray:
        """The counted values of event ``rows``."""
        if "value" in self._ev:
            return self._ev["value"][rows]
        return self._ev[f"pin{self.value_at - PINS}"][rows]

    # ------------------------------------------------------------------ groups

    def __len__(self) -> int:
        """The number of groups held."""
        return self._groups.live

    def keys(self) -> list[tuple[Any, ...]]:
        """The group keys, least recently updated first."""
        slots = self._groups.live_slots()
        slots = slots[np.argsort(self._recent[slots], kind="stable")]
        return [self._groups.key(s) for s in slots.tolist()]

    def events_of(self, key: tuple[Any, ...]) -> list[Event]:
        """The events of group ``key`` in time order (empty if there is no such group)."""
        (slot,) = self._groups.find([object_column([v]) for v in key]).tolist()
        if slot < 0:
            return []
        rows = self._rows_of(np.array([slot]))
        return self._materialize(rows)

    def _new_groups(self, slots: np.ndarray) -> None:
        """Per-slot arrays for groups just added to the key table."""
        if len(self._done) < self._groups.capacity:
            for name in _SLOT_ARRAYS:
                setattr(self, name, resized(getattr(self, name), self._groups.capacity))
        self._done[slots] = _NEVER
        self._due[slots] = _ALWAYS
        self._seq[slots] = 0
        self._recent[slots] = 0
        self._last[slots] = _NEVER
        self._count[slots] = 0

    def _drop_groups(self, slots: np.ndarray) -> None:
        """Remove groups (their events too) and their table entries."""
        if not slots.size:
            return
        self._groups.remove(slots)
        self._count[slots] = 0
        self._due[slots] = _ALWAYS
        dead = np.zeros(self._groups.size + 1, dtype=bool)
        dead[slots] = True
        rows = np.flatnonzero(dead[self._ev["slot"][: self._n]])  # slot -1 reads the last: False
        self._ev["slot"][rows] = -1
        self._dead_events += rows.size

    # ------------------------------------------------------------------ events

    def _append(self, slots: np.ndarray, batch: EventBatch, rows: np.ndarray) -> None:
        m = rows.size
        if self._n + m > len(self._ev["t"]):
            size = max(1024, self._n + m, grown(len(self._ev["t"])))
            self._ev = {name: resized(column, size) for name, column in self._ev.items()}
        at = slice(self._n, self._n + m)
        ev = self._ev
        ev["slot"][at] = slots
        ev["t"][at] = batch.t[rows]
        ev["start"][at] = batch.start[rows]
        if batch.extra is None:
            ev["ids"][at] = batch.ids[rows]
        else:
            ev["ids"][at] = [
                ids if extra is None else (ids, *extra)
                for ids, extra in zip(batch.ids[rows].tolist(), batch.extra[rows].tolist(), strict=True)
            ]
        for k in range(5):
            ev[f"pin{k}"][at] = batch.pins[k][rows]
        if "value" in ev:
            ev["value"][at] = batch.value[rows]
        self._n += m

    def _kill(self, rows: np.ndarray) -> None:
        """Remove event rows (their groups' counts follow; emptied groups go)."""
        if not rows.size:
            return
        slots = self._ev["slot"][rows]
        self._ev["slot"][rows] = -1
        self._dead_events += rows.size
        np.subtract.at(self._count, slots, 1)
        emptied = np.unique(slots[self._count[slots] == 0])
        self._drop_groups(emptied)

    def _rows_of(self, slots: np.ndarray, rank: np.ndarray | None = None) -> np.ndarray:
        """Event rows of ``slots``, grouped in the order of ``slots``, each group in time order
        (ties in arrival order)."""
        member = np.full(self._groups.size + 1, -1, dtype=np.int64)
        member[slots] = np.arange(slots.size)
        slot_of = self._ev["slot"][: self._n]
        which = member[slot_of]  # slot -1 (dead) reads member[-1] = -1
        rows = np.flatnonzero(which >= 0)
        order = np.lexsort((self._ev["t"][rows], which[rows]))
        return rows[order]

    def _materialize(self, rows: np.ndarray) -> list[Event]:
        ev = self._ev
        pins = [ev[f"pin{k}"][rows].tolist() for k in range(5)]
        values: list[Any] = ev["value"][rows].tolist() if "value" in ev else [None] * rows.size
        out: list[Event] = []
        for i, (t, start, value, ids) in enumerate(
            zip(
                ev["t"][rows].tolist(),
                ev["start"][rows].tolist(),
                values,
                ev["ids"][rows].tolist(),
                strict=True,
            )
        ):
            if ids.__class__ is tuple:  # a firing: (ids, flows, query)
                ids, *extra = ids
                out.append((t, start, value, ids, *(pin[i] for pin in pins), *extra))
            else:
                out.append((t, start, value, ids, pins[0][i], pins[1][i], pins[2][i], pins[3][i], pins[4][i]))
        return out

    # ------------------------------------------------------------------ adding

    def add(self, keys: list[list[Any]], batch: EventBatch, watermark: int) -> None:
        """Add events: ``keys[f][i]`` is field ``f`` of the group key of event ``i``.  An
        event is late, dropped and counted only when no window still to be judged can hold it
        (it is older than the group's last judged window end minus the timespan); a flow that
        arrives after the watermark still counts in the windows ending after it.  New groups
        past ``max_groups`` evict the least recently updated ones at the end of the batch."""
        m = len(batch)
        if not m:
            return
        span = self.spec.timespan_ns
        slots, created = self._groups.slots([object_column(list(c)) for c in keys], m)
        self._new_groups(slots[created])
        old = ~created
        done = self._done[slots]
        late = old & (done != _NEVER) & (batch.t < np.where(done == _NEVER, 0, done) - span)
        if late.any():
            self.counters.late_events += int(late.sum())
        keep = np.flatnonzero(~late)
        slots_kept = slots[keep]
        self._append(slots_kept, batch, keep)
        np.add.at(self._count, slots_kept, 1)
        np.maximum.at(self._last, slots_kept, batch.t[keep])
        # Recency: a group's first event of the batch (then eviction drops the least recent).
        seen, first_row = np.unique(slots_kept, return_index=True)
        self._recent[seen] = self._clock + first_row
        self._clock += m
        # The earliest time the group's windows must be judged from: its events of the batch;
        # a new group that needs more than one event to fire only from its second one.
        earliest = np.full(self._groups.size, _ALWAYS, dtype=np.int64)
        counted = keep
        if self._min_events > 1:
            counted = keep[~created[keep]]
        np.minimum.at(earliest, slots[counted], batch.t[counted])
        evict = self._groups.live - self.max_groups
        if evict > 0:
            live = self._groups.live_slots()
            oldest = live[np.argpartition(self._recent[live], evict - 1)[:evict]]
            self.counters.evicted_groups += evict
            self._drop_groups(oldest)
        # The groups to judge or trim, in the order of their first counted event.
        touched, first = np.unique(slots[counted], return_index=True)
        touched = touched[np.argsort(first)]
        touched = touched[self._groups.alive[touched]]
        over = touched[self._count[touched] > self.max_events]
        if over.size:
            self._evict_events(over)
        self._evict_oldest_events()
        ready = self._count[touched] >= self._min_events
        self._schedule(touched[ready], earliest[touched[ready]])
        # Too few events to fire yet and not scheduled: keep only what a window ending after
        # the watermark can reach (bounds a key seen now and then for ever).
        trim = touched[~ready & (self._due[touched] == _ALWAYS)]
        if trim.size:
            rows = self._rows_of(trim)
            self._kill(rows[self._ev["t"][rows] < watermark - span])
        self._compact()

    def _evict_events(self, slots: np.ndarray) -> None:
        """Drop the oldest events of groups over ``max_events``."""
        rows = self._rows_of(slots)
        group = self._ev["slot"][rows]
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        rank = np.arange(rows.size) - np.repeat(starts, np.diff(np.r_[starts, rows.size]))
        excess = self._count[group] - self.max_events
        gone = rows[rank < excess]
        self.counters.evicted_events += gone.size
        self._kill(gone)

    def _evict_oldest_events(self) -> None:
        """Drop the rule's earliest-arrived events beyond ``max_rule_events`` (rows are in
        arrival order; the groups they empty go too)."""
        excess = self._n - self._dead_events - self.max_rule_events
        if excess <= 0:
            return
        alive = np.flatnonzero(self._ev["slot"][: self._n] >= 0)[:excess]
        self.counters.evicted_events += alive.size
        self._kill(alive)

    def _schedule(self, slots: np.ndarray, times: np.ndarray) -> None:
        """Judge ``slots`` once the watermark passes ``times`` (if earlier than planned)."""
        sooner = times < self._due[slots]
        slots, times = slots[sooner], times[sooner]
        self._due[slots] = times
        self._seq[slots] = self._clock + np.arange(slots.size)
        self._clock += slots.size

    # ------------------------------------------------------------------ judging

    def evaluate(self, watermark: int) -> list[Firing]:
        """Judge every window that ends at or before ``watermark`` and was not judged yet."""
        due = np.flatnonzero(self._due[: self._groups.size] <= watermark)
        if not due.size:
            return []
        due = due[np.lexsort((self._seq[due], self._due[due]))]
        self._due[due] = _ALWAYS
        rows = self._rows_of(due)
        span = self.spec.timespan_ns
        ev = self._ev
        slot = ev["slot"][rows]
        t = ev["t"][rows]
        n = rows.size
        seg_start = np.flatnonzero(np.r_[True, slot[1:] != slot[:-1]])
        seg_len = np.diff(np.r_[seg_start, n])
        seg = np.repeat(np.arange(seg_start.size), seg_len)
        done = self._done[slot]
        judged = (t > done) & (t <= watermark)
        # Window start of each event: the first of its group at or after t - span.
        starts = _lex_searchsorted(seg, t, t - span)
        last_of_tie = np.ones(n, dtype=bool)
        last_of_tie[:-1] = (seg[1:] != seg[:-1]) | (t[1:] != t[:-1])
        stop = np.arange(1, n + 1)
        firings: list[Firing] = []
        kind = self.spec.kind
        if kind == "event_count":
            values = (stop - starts).astype(np.float64)
        elif kind == "value_sum":
            raw = self._values(rows)
            exact = bool(np.all(raw == np.round(raw))) and float(np.abs(raw).sum()) < _EXACT
            if exact:
                prefix = np.concatenate(([0.0], np.cumsum(raw)))
                values = prefix[stop] - prefix[starts]
            else:
                values = _running_sums(raw, seg_start, starts, judged)
        else:
            values = _distinct_counts(self._values(rows).tolist(), seg_start, starts, judged)
        met = np.flatnonzero(judged & last_of_tie & self._test(values, self.spec.threshold))
        if met.size:
            allow = self.suppressor.allow
            for j, begin, end, value in zip(
                met.tolist(), starts[met].tolist(), t[met].tolist(), values[met].tolist(), strict=True
            ):
                key = self._groups.key(int(slot[j]))
                if allow(key, end):
                    firings.append(Firing(key, self._materialize(rows[begin : j + 1]), value))
        # Per group: the last judged window's end; events no window still to be judged reaches go.
        any_judged = np.logical_or.reduceat(judged, seg_start)
        last_judged = np.maximum.reduceat(np.where(judged, t, _NEVER), seg_start)
        groups = slot[seg_start]
        self._done[groups[any_judged]] = last_judged[any_judged]
        new_done = self._done[groups]
        cutoff = np.where(any_judged, new_done - span, _NEVER)  # judged groups only: done is set
        self._kill(rows[t < cutoff[seg]])
        # Judge again from the first event after the last judged window.
        alive = self._count[groups] >= max(self._min_events, 1)
        after = np.minimum.reduceat(np.where(t > new_done[seg], t, _ALWAYS), seg_start)
        again = alive & (after != _ALWAYS)
        self._schedule(groups[again], after[again])
        self._compact()
        return firings

    def expire(self, watermark: int) -> None:
        """Drop groups whose every event is too old to be in any window still to be judged."""
        live = self._groups.live_slots()
        old = live[(self._due[live] == _ALWAYS) & (self._last[live] < watermark - self.spec.timespan_ns)]
        self._drop_groups(old)
        self._compact()

    def _compact(self) -> None:
        """Squeeze out removed events and groups once they are a quarter of their arrays."""
        if self._dead_events > max(1024, self._n // 4):
            keep = np.flatnonzero(self._ev["slot"][: self._n] >= 0)
            self._ev = {name: resized(column[keep], grown(keep.size)) for name, column in self._ev.items()}
            self._n = keep.size
            self._dead_events = 0
        live = self._groups.compact()
        if live is not None:
            renumber = np.full(len(self._done) + 1, -1, dtype=np.int64)
            renumber[live] = np.arange(live.size)
            self._ev["slot"][: self._n] = renumber[self._ev["slot"][: self._n]]
            room = self._groups.capacity
            for name in _SLOT_ARRAYS:
                setattr(self, name, resized(getattr(self, name)[live], room))

    # ------------------------------------------------------------------ state

    def dump(self) -> list[list[Any]]:
        """The groups as JSON-ready rows."""
        slots = self._groups.live_slots()
        slots = slots[np.argsort(self._recent[slots], kind="stable")]
        rows = self._rows_of(slots)
        events = self._materialize(rows)
        counts = self._count[slots].tolist()
        out = []
        at = 0
        for s, count in zip(slots.tolist(), counts, strict=True):
            group = events[at : at + count]
            at += count
            out.append([list(self._groups.key(s)), int(self._done[s]), [dump_event(e) for e in group]])
        return out

    def restore(self, rows: list[list[Any]], version: int) -> None:
        """Groups from :meth:`dump` rows written by state ``version`` (their pending windows
        are judged on the next batch)."""
        rows = [row for row in rows if row[2]]  # an older version saved emptied groups
        if not rows:
            return
        events = [restore_event(e, version) for _, _, group in rows for e in group]
        sizes = [len(group) for _, _, group in rows]
        keys = [[key[f] for key, _, group in rows for _ in group] for f in range(len(self.spec.group_by))]
        batch = EventBatch.of(events, self.value_at)
        self.add(keys, batch, -(2**62))
        heads = np.cumsum([0, *sizes[:-1]])
        slots = self._groups.find([object_column(c)[heads] for c in keys])
        held = slots >= 0  # not evicted (more groups saved than max_groups now allows)
        self._done[slots[held]] = np.array([done for _, done, _ in rows], dtype=np.int64)[held]
        self._due[slots[held]] = _ALWAYS
        # As after judging: from the first event after the last judged window, if enough.
        after = np.full(self._groups.size, _ALWAYS, dtype=np.int64)
        group_of = np.repeat(slots, sizes)
        later = (group_of >= 0) & (batch.t > self._done[group_of])
        np.minimum.at(after, group_of[later], batch.t[later])
        slots = slots[held]
        again = slots[(after[slots] != _ALWAYS) & (self._count[slots] >= self._min_events)]
        self._schedule(again, after[again])


_NEVER = -(2**63)
_ALWAYS = 2**63 - 1
_EXACT = 2**52
"""Below this every partial sum of integers is exact in a float: array sums equal the loop's."""
_SLOT_ARRAYS = ("_done", "_due", "_seq", "_recent", "_last", "_count")
"""The per-slot arrays of :class:`Windows`, beside its key table's."""


def _lex_searchsorted(seg: np.ndarray, t: np.ndarray, query: np.ndarray) -> np.ndarray:
    """For rows sorted by (``seg``, ``t``): per row ``i`` the index of the first row of segment
    ``seg[i]`` whose ``t`` is at least ``query[i]`` (``searchsorted(side="left")`` per segment,
    all at once: keys and queries sorted together, queries first on ties)."""
    n = len(t)
    order = np.lexsort(
        (np.r_[np.ones(n, dtype=np.int8), np.zeros(n, dtype=np.int8)], np.r_[t, query], np.r_[seg, seg])
    )
    is_key = order < n
    before: np.ndarray = np.cumsum(is_key) - is_key
    out = np.empty(n, dtype=np.int64)
    out[order[~is_key] - n] = before[~is_key]
    return out


def _running_sums(
    raw: np.ndarray, seg_start: np.ndarray, starts: np.ndarray, judged: np.ndarray
) -> np.ndarray:
    """Window sums as the running float sum gives them (added in time order, the oldest taken
    off as the window slides): values that are not all integers, or too large for exact
    prefix sums."""
    values = np.zeros(len(raw))
    raw_l, starts_l = raw.tolist(), starts.tolist()
    for first, end in _first_judged(seg_start, judged):
        lo, total = starts_l[first], 0.0
        for k in range(lo, first):
            total += raw_l[k]
        j = first
        while j < end and judged[j]:
            total += raw_l[j]
            while lo < starts_l[j]:
                total -= raw_l[lo]
                lo += 1
            values[j] = total
            j += 1
    return values


def _distinct_counts(
    raw: list[Any], seg_start: np.ndarray, starts: np.ndarray, judged: np.ndarray
) -> np.ndarray:
    """Distinct values in each judged window (a counter slid over the group's events)."""
    values = np.zeros(len(raw))
    starts_l = starts.tolist()
    for first, end in _first_judged(seg_start, judged):
        lo = starts_l[first]
        distinct: Counter[Any] = Counter(raw[lo:first])
        j = first
        while j < end and judged[j]:
            distinct[raw[j]] += 1
            while lo < starts_l[j]:
                gone = raw[lo]
                distinct[gone] -= 1
                if not distinct[gone]:
                    del distinct[gone]
                lo += 1
            values[j] = len(distinct)
            j += 1
    return values


def _first_judged(seg_start: np.ndarray, judged: np.ndarray) -> list[tuple[int, int]]:
    """Per segment with judged rows (contiguous: the times after ``done`` up to the watermark)
    the first of them and the segment's end."""
    rows = np.flatnonzero(judged)
    if not rows.size:
        return []
    segment = np.searchsorted(seg_start, rows, side="right") - 1
    head = np.r_[True, segment[1:] != segment[:-1]]
    ends = np.r_[seg_start[1:], len(judged)]
    return list(zip(rows[head].tolist(), ends[segment[head]].tolist(), strict=True))


def _min_events(spec: CorrelationSpec) -> int:
    """Fewest events a window needs to meet the condition: a count or distinct count of ``n``
    needs ``n`` events (``gt``: one more); sums and other operators: one."""
    if spec.kind == "value_sum" or spec.op not in ("gte", "gt", "eq"):
        return 1
    need = math.ceil(spec.threshold)
    if spec.op == "gt" and need == spec.threshold:
        need += 1
    return max(1, int(need))
