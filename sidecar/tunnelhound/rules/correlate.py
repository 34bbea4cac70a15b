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

import heapq
import itertools
import math
import operator
from bisect import bisect_left, bisect_right
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "CorrelationSpec",
    "Counters",
    "Event",
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


class Windows:
    """The sliding windows of one correlation rule, per group key.

    A group is its list of events in time order (searched with ``bisect`` on ``t``), or, while
    it has one event, that bare event: most keys of busy rules (address pairs) are seen once
    or twice, and an event tuple of plain values is not tracked by the garbage collector while
    a list is, so the collector's full passes do not grow with them.
    ``done[key]``: windows ending at or before it were judged; ``due_at[key]``: the time of
    the group's entry in the due heap.
    """

    def __init__(
        self,
        spec: CorrelationSpec,
        suppressor: Suppressor,
        max_groups: int,
        max_events: int,
        counters: Counters,
        *,
        value_at: int = VALUE,
    ) -> None:
        self.spec = spec
        # Where an event holds the counted value: VALUE, or the pin that is the counted field
        # (the engine then gives every correlation counting a flow the flow's one event).
        self.value_at = value_at
        self.suppressor = suppressor
        self.max_groups = max_groups
        self.max_events = max_events
        self.counters = counters
        self.groups: OrderedDict[tuple[Any, ...], list[Event] | Event] = OrderedDict()
        self.done: dict[tuple[Any, ...], int] = {}
        self.due_at: dict[tuple[Any, ...], int] = {}
        # (earliest unjudged event time, arrival order, key): which groups have windows to judge
        # once the watermark passes that time, without visiting every group on every batch.
        self.due: list[tuple[int, int, tuple[Any, ...]]] = []
        self._order = itertools.count()
        self._test = OPS[spec.op]
        self._min_events = _min_events(spec)

    def add(self, keys: list[tuple[Any, ...]], events: list[Event], watermark: int) -> None:
        """Add events (``keys[i]`` is the group of ``events[i]``).  An event is late, dropped
        and counted only when no window still to be judged can hold it (it is older than the
        group's last judged window end minus the timespan); a flow that arrives after the
        watermark still counts in the windows ending after it.  One pass, no per-group calls:
        this is the loop every matching flow goes through."""
        groups, done, counters = self.groups, self.done, self.counters
        span = self.spec.timespan_ns
        schedule_singles = self._min_events <= 1
        touched: dict[tuple[Any, ...], int] = {}
        # Dictionary lookups are most of this loop's cost on large state: one per event on
        # `groups` and one on `touched`, `done` only for keys judged before.
        for key, event in zip(keys, events, strict=True):
            t = event[T]
            group = groups.get(key)
            if group is None:
                groups[key] = event  # a group of one is the bare event: see the class doc
                if len(groups) > self.max_groups:
                    self._forget(groups.popitem(last=False)[0])
                    counters.evicted_groups += 1
                if schedule_singles:  # else one event cannot fire: nothing to schedule or trim
                    touched[key] = t
                continue
            if done and t < done.get(key, _NEVER) - span:
                counters.late_events += 1
                continue
            first = touched.get(key)
            if first is None:
                groups.move_to_end(key)
                touched[key] = t
            elif t < first:
                touched[key] = t
            if not isinstance(group, list):
                group = groups[key] = [group]
            if t >= group[-1][T]:
                group.append(event)
            else:
                group.insert(bisect_right(group, t, key=_time), event)
        for key, earliest in touched.items():
            group = groups.get(key)
            if group is None:
                continue  # evicted by later keys of this batch
            if not isinstance(group, list):
                if self._min_events <= 1:
                    self._schedule(key, earliest)
                continue
            excess = len(group) - self.max_events
            if excess > 0:
                del group[:excess]
                counters.evicted_events += excess
            if len(group) >= self._min_events:
                self._schedule(key, earliest)
            elif key not in self.due_at:
                # Too few events to fire yet: not judged; keep those a window ending after the
                # watermark can reach (bounds a key seen now and then for ever).
                del group[: bisect_left(group, watermark - span, key=_time)]
                if not group:  # all of them too old: the group goes, as expire() drops one
                    del groups[key]
                    self._forget(key)

    def _events(self, key: tuple[Any, ...]) -> list[Event]:
        """The group's events as a list (a group of one is stored as the bare event)."""
        group = self.groups[key]
        if not isinstance(group, list):
            group = self.groups[key] = [group]
        return group

    def _forget(self, key: tuple[Any, ...]) -> None:
        """Drop what is kept beside a group that was just removed from ``groups``."""
        if self.done:
            self.done.pop(key, None)
        if self.due_at:
            self.due_at.pop(key, None)  # its heap entry is skipped when popped

    def _schedule(self, key: tuple[Any, ...], t: int) -> None:
        if t < self.due_at.get(key, _ALWAYS):
            self.due_at[key] = t
            heapq.heappush(self.due, (t, next(self._order), key))

    def evaluate(self, watermark: int) -> list[Firing]:
        """Judge every window that ends at or before ``watermark`` and was not judged yet."""
        firings: list[Firing] = []
        due = self.due
        while due and due[0][0] <= watermark:
            t, _, key = heapq.heappop(due)
            if self.due_at.get(key) != t:
                continue  # evicted, or rescheduled earlier and already judged
            del self.due_at[key]
            group = self._events(key)
            firings.extend(self._slide(key, group, watermark))
            done = self.done.get(key, _NEVER)
            if group and group[-1][T] > done and len(group) >= self._min_events:
                self._schedule(key, group[bisect_right(group, done, key=_time)][T])
        return firings

    def _slide(self, key: tuple[Any, ...], events: list[Event], watermark: int) -> list[Firing]:
        span, kind = self.spec.timespan_ns, self.spec.kind
        first = bisect_right(events, self.done.get(key, _NEVER), key=_time)
        last = bisect_right(events, watermark, key=_time)
        if first >= last:
            return []
        done = self.done[key] = events[last - 1][T]
        lo = bisect_left(events, events[first][T] - span, key=_time)
        if kind != "value_count" and last - lo >= VECTOR_MIN_EVENTS:
            firings = self._slide_arrays(key, events, lo, first, last)
            if firings is not None:
                del events[: bisect_left(events, done - span, key=_time)]
                return firings
        at = self.value_at
        distinct: Counter[Any] = Counter()
        total = 0.0
        for e in events[lo:first]:
            if kind == "value_count":
                distinct[e[at]] += 1
            elif kind == "value_sum":
                total += e[at]
        firings = []
        for j in range(first, last):
            new = events[j]
            t = new[T]
            if kind == "value_count":
                distinct[new[at]] += 1
            elif kind == "value_sum":
                total += new[at]
            while events[lo][T] < t - span:
                gone = events[lo]
                if kind == "value_count":
                    distinct[gone[at]] -= 1
                    if not distinct[gone[at]]:
                        del distinct[gone[at]]
                elif kind == "value_sum":
                    total -= gone[at]
                lo += 1
            if j + 1 < len(events) and events[j + 1][T] == t:
                continue  # judge ties once, with all of them in the window
            value = float(
                j + 1 - lo if kind == "event_count" else len(distinct) if kind == "value_count" else total
            )
            if self._test(value, self.spec.threshold) and self.suppressor.allow(key, t):
                firings.append(Firing(key, events[lo : j + 1], value))
        # Events that no window still to be judged can reach.
        del events[: bisect_left(events, done - span, key=_time)]
        return firings

    def _slide_arrays(
        self, key: tuple[Any, ...], events: list[Event], lo: int, first: int, last: int
    ) -> list[Firing] | None:
        """:meth:`_slide`'s windows ending at ``events[first:last]`` for counts and sums, with
        arrays: each window's start by ``searchsorted``, its sum as a difference of prefix
        sums.  The same firings, values and order as the loop: sums only when every value is
        an integer and all of them together stay below 2**52, where float running sums are
        exact; None (use the loop) otherwise."""
        window = events[lo:last]
        times = np.fromiter(map(_time, window), dtype=np.int64, count=len(window))
        ends = times[first - lo :]
        starts = np.searchsorted(times, ends - self.spec.timespan_ns, side="left")
        stop = np.arange(first - lo + 1, len(window) + 1)  # one past each window's last event
        if self.spec.kind == "event_count":
            values = (stop - starts).astype(np.float64)
        else:
            raw = [e[self.value_at] for e in window]
            if not all(type(v) is int for v in raw):
                return None
            if sum(map(abs, raw)) >= _EXACT:
                return None
            prefix = np.concatenate(([0], np.cumsum(np.array(raw, dtype=np.int64))))
            values = (prefix[stop] - prefix[starts]).astype(np.float64)
        # Ties are judged once, at the last of them (with all of them in the window).
        last_of_tie = np.ones(len(ends), dtype=bool)
        last_of_tie[:-1] = ends[1:] != ends[:-1]
        met = np.flatnonzero(self._test(values, self.spec.threshold) & last_of_tie)
        firings = []
        for j, begin, t, value in zip(
            met.tolist(), starts[met].tolist(), ends[met].tolist(), values[met].tolist(), strict=True
        ):
            if self.suppressor.allow(key, t):
                firings.append(Firing(key, window[begin : first - lo + j + 1], value))
        return firings

    def expire(self, watermark: int) -> None:
        """Drop groups whose every event is too old to be in any window still to be judged."""
        span = self.spec.timespan_ns
        while self.groups:
            key, group = next(iter(self.groups.items()))
            last = group[-1][T] if isinstance(group, list) else group[T]
            if key in self.due_at or last >= watermark - span:
                break
            del self.groups[key]
            self._forget(key)

    def dump(self) -> list[list[Any]]:
        """The groups as JSON-ready rows."""
        return [
            [list(k), self.done.get(k, _NEVER), [dump_event(e) for e in (g if isinstance(g, list) else [g])]]
            for k, g in self.groups.items()
        ]

    def restore(self, rows: list[list[Any]], version: int) -> None:
        """Groups from :meth:`dump` rows written by state ``version`` (their pending windows
        are judged on the next batch)."""
        for key_list, done, rows_of_events in rows:
            if not rows_of_events:
                continue  # an emptied group an older version saved: nothing to restore
            key = tuple(key_list)
            events = self.groups[key] = [restore_event(e, version) for e in rows_of_events]
            if done != _NEVER:
                self.done[key] = done
            if events and events[-1][T] > done and len(events) >= self._min_events:
                self._schedule(key, events[bisect_right(events, done, key=_time)][T])


_NEVER = -(2**63)
_ALWAYS = 2**63
_EXACT = 2**52
"""Below this every partial sum of integers is exact in a float: array sums equal the loop's."""
VECTOR_MIN_EVENTS = 32
"""Events (the windows to judge and those before them in the first window) from which
counts and sums are judged with arrays: below it the loop is cheaper than numpy's set-up."""
_time = operator.itemgetter(T)


def _min_events(spec: CorrelationSpec) -> int:
    """Fewest events a window needs to meet the condition: a count or distinct count of ``n``
    needs ``n`` events (``gt``: one more); sums and other operators: one."""
    if spec.kind == "value_sum" or spec.op not in ("gte", "gt", "eq"):
        return 1
    need = math.ceil(spec.threshold)
    if spec.op == "gt" and need == spec.threshold:
        need += 1
    return max(1, int(need))
