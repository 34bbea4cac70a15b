"""Correlation state: sliding windows on flow time, per rule and group key, with bounded
lateness, suppression and a cap on the number of groups.

Events (a matching flow, or a firing of a correlated correlation) are kept per group in time
order.  A window is judged only once it can no longer change: the window ending at event
time ``t`` covers ``[t - timespan, t]`` and is evaluated when the watermark (latest flow time
seen minus the allowed lateness) has passed ``t``; events older than the watermark are late,
dropped and counted.  Windows are evaluated by sliding over the group's events (a running
count, distinct-value counter or sum), so a batch costs the events it adds plus one pass over
the windows they touch.  A firing suppresses the same rule and key until ``t + suppression``:
one alert per rule and key per suppression window.
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right, insort
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CorrelationSpec", "Counters", "Event", "Firing", "Suppressor", "Windows"]

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


@dataclass(slots=True)
class Event:
    """One thing a correlation counts: a flow, or a firing of a correlation it chains on.

    ``t`` is ``event.end`` in ns truncated to milliseconds (the precision Elasticsearch keeps,
    so evidence queries by time range select exactly the window's events).
    """

    t: int
    start: int
    value: Any
    ids: list[str]
    count: int
    query: str | None
    pins: Pins

    def dump(self) -> list[Any]:
        return [self.t, self.start, self.value, self.ids, self.count, self.query, list(self.pins)]

    @staticmethod
    def restore(row: list[Any]) -> Event:
        t, start, value, ids, count, query, pins = row
        return Event(t, start, value, ids, count, query, tuple(pins))


@dataclass(slots=True)
class Firing:
    """A window that met its rule's condition: the group key, its events and the value."""

    key: tuple[Any, ...]
    events: list[Event]
    value: float


@dataclass(slots=True)
class _Group:
    times: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    done: int = -(2**63)
    """Windows ending at or before this time have been judged."""


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
        """Forget keys whose quiet time ended before ``now``."""
        for key in [k for k, until in self.until.items() if until <= now]:
            del self.until[key]

    def dump(self) -> list[list[Any]]:
        return [[list(key) if isinstance(key, tuple) else key, until] for key, until in self.until.items()]

    def restore(self, rows: list[list[Any]]) -> None:
        for key, until in rows:
            self.until[tuple(key) if isinstance(key, list) else key] = until


class Windows:
    """The sliding windows of one correlation rule, per group key."""

    def __init__(
        self,
        spec: CorrelationSpec,
        suppressor: Suppressor,
        max_groups: int,
        max_events: int,
        counters: Counters,
    ) -> None:
        self.spec = spec
        self.suppressor = suppressor
        self.max_groups = max_groups
        self.max_events = max_events
        self.counters = counters
        self.groups: OrderedDict[tuple[Any, ...], _Group] = OrderedDict()
        self.pending: set[tuple[Any, ...]] = set()
        self._test = OPS[spec.op]

    def add(self, key: tuple[Any, ...], events: list[Event], watermark: int) -> None:
        """Add one group's new events; those older than ``watermark`` are late and dropped."""
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Group()
            while len(self.groups) > self.max_groups:
                old, _ = self.groups.popitem(last=False)
                self.pending.discard(old)
                self.counters.evicted_groups += 1
        else:
            self.groups.move_to_end(key)
        for event in events:
            if event.t < watermark or event.t <= group.done:
                self.counters.late_events += 1
                continue
            if not group.times or event.t >= group.times[-1]:
                group.times.append(event.t)
                group.events.append(event)
            else:
                i = bisect_right(group.times, event.t)
                insort(group.times, event.t)
                group.events.insert(i, event)
        excess = len(group.times) - self.max_events
        if excess > 0:
            del group.times[:excess], group.events[:excess]
            self.counters.evicted_events += excess
        self.pending.add(key)

    def evaluate(self, watermark: int) -> list[Firing]:
        """Judge every window that ends at or before ``watermark`` and was not judged yet."""
        firings: list[Firing] = []
        for key in sorted(self.pending, key=repr):
            group = self.groups[key]
            firings.extend(self._slide(key, group, watermark))
            if not group.times or group.times[-1] <= group.done:
                self.pending.discard(key)
        return firings

    def _slide(self, key: tuple[Any, ...], group: _Group, watermark: int) -> list[Firing]:
        times, events, span = group.times, group.events, self.spec.timespan_ns
        first = bisect_right(times, group.done)
        last = bisect_right(times, watermark)
        if first >= last:
            return []
        group.done = times[last - 1]
        kind = self.spec.kind
        lo = bisect_left(times, times[first] - span)
        distinct: Counter[Any] = Counter()
        total = 0.0
        for e in events[lo:first]:
            if kind == "value_count":
                distinct[e.value] += 1
            elif kind == "value_sum":
                total += e.value
        firings = []
        for j in range(first, last):
            t = times[j]
            new = events[j]
            if kind == "value_count":
                distinct[new.value] += 1
            elif kind == "value_sum":
                total += new.value
            while times[lo] < t - span:
                gone = events[lo]
                if kind == "value_count":
                    distinct[gone.value] -= 1
                    if not distinct[gone.value]:
                        del distinct[gone.value]
                elif kind == "value_sum":
                    total -= gone.value
                lo += 1
            if j + 1 < len(times) and times[j + 1] == t:
                continue  # judge ties once, with all of them in the window
            value = float(
                j + 1 - lo if kind == "event_count" else len(distinct) if kind == "value_count" else total
            )
            if self._test(value, self.spec.threshold) and self.suppressor.allow(key, t):
                firings.append(Firing(key, events[lo : j + 1], value))
        # Events that no window still to be judged can reach.
        cut = bisect_left(times, group.done - span)
        if cut:
            del times[:cut], events[:cut]
        return firings

    def expire(self, watermark: int) -> None:
        """Drop groups whose every event is too old to be in any window still to be judged."""
        span = self.spec.timespan_ns
        while self.groups:
            key, group = next(iter(self.groups.items()))
            if key in self.pending or (group.times and group.times[-1] >= watermark - span):
                break
            del self.groups[key]

    def dump(self) -> list[list[Any]]:
        """The groups as JSON-ready rows."""
        return [[list(k), g.done, [e.dump() for e in g.events]] for k, g in self.groups.items()]

    def restore(self, rows: list[list[Any]]) -> None:
        """Groups from :meth:`dump` rows (their pending windows are judged on the next batch)."""
        for key_list, done, events in rows:
            key = tuple(key_list)
            restored = [Event.restore(e) for e in events]
            self.groups[key] = _Group([e.t for e in restored], restored, done)
            if restored and restored[-1].t > done:
                self.pending.add(key)
