"""The streaming rule engine: flows in, :class:`Detection` s out.

Per batch (:meth:`RuleEngine.process`): every flow rule's predicate runs once over the whole
frame; only the matching rows are touched in Python, to become alerts of rules that alert on
their own and events of the correlations that use them.  Correlations judge their windows as
the watermark (latest ``event.end`` seen minus ``rules.lateness``) passes them, firings of
correlations feed the correlations chained on them, and the alerts' hosts raise their threat
index, whose rules then run on one event per changed host.  :meth:`RuleEngine.flush` judges
what is still open (end of a replay); :meth:`save`/:meth:`load` keep windows, suppression and
the threat index under ``state_dir`` across restarts.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from tunnelhound.normalize.frame import ABSENT, FlowFrame

from .correlate import (
    PIN_FIELDS,
    PINS,
    START,
    VALUE,
    CorrelationSpec,
    Counters,
    Event,
    EventBatch,
    Firing,
    Suppressor,
    T,
    Windows,
    event_query,
    flow_count,
    flow_ids,
    packed_ids,
)
from .fields import Column, EventFields, FlowFields
from .loader import BUILTIN_RULES, PIPELINE, BaseRule, CorrelationRule, RuleSet, load_pipeline, load_rules
from .lucene import quote, term
from .model import Detection
from .threat import ThreatIndex

if TYPE_CHECKING:
    from tunnelhound.config import Config

__all__ = ["MAX_EVIDENCE_IDS", "STATE_FILE", "STATE_VERSION", "RuleEngine"]

log = logging.getLogger(__name__)

MAX_EVIDENCE_IDS = 100
STATE_FILE = "rules-state.json"
STATE_VERSION = 2
_STATE_VERSIONS = (1, STATE_VERSION)
"""Versions load() reads: 1 stored flows' events with ``flows, query`` (converted on load)."""
_NS = 1_000_000_000
_MS = 1_000_000
_FLOWS = "data_stream.dataset:tunnelhound.flow"
_BASE_KEY = ("source.ip", "destination.ip", "destination.port")
"""What a base rule's alerts are suppressed by: the connection's addresses and service port."""
_PHRASE = {"event_count": "events", "value_count": "distinct {}", "value_sum": "sum of {}"}


class RuleEngine:
    """Evaluates a :class:`RuleSet` over frames; see the module docstring."""

    def __init__(
        self,
        rules: RuleSet,
        *,
        lateness_s: float = 60.0,
        suppression_s: float = 3600.0,
        max_groups: int = 100000,
        max_group_events: int = 100000,
        max_rule_events: int = 1000000,
        threat: ThreatIndex | None = None,
        state_dir: Path | None = None,
    ) -> None:
        _return_freed_memory()
        self.rules = rules
        self.lateness_ns = int(lateness_s * _NS)
        self.state_dir = state_dir
        self.counters = Counters()
        self.threat = threat or ThreatIndex(
            {"low": 1, "medium": 3, "high": 6, "critical": 10}, 21600, max_groups
        )
        self.max_t = -(2**62)
        suppression_ns = int(suppression_s * _NS)
        names = [r.info.name for r in rules.base] + [c.info.name for c in rules.correlations]
        self.suppressors = {name: Suppressor(suppression_ns, max_groups, self.counters) for name in names}
        self.base_queries = {r.info.name: r.query for r in rules.base}
        self.windows = {
            c.info.name: Windows(
                c.spec,
                self.suppressors[c.info.name],
                max_groups,
                max_group_events,
                self.counters,
                max_rule_events=max_rule_events,
                value_at=self._value_at(c.spec),
            )
            for c in rules.correlations
        }
        # Recent addresses, one object each, that events and group keys share: _EventColumns.
        self._strings = np.full(_STRINGS, None, dtype=object)
        self._flow_rules = [r for r in rules.base if not r.threat]
        self._threat_rules = [r for r in rules.base if r.threat]
        # Which correlations each rule feeds.
        self._consumers: dict[str, list[CorrelationRule]] = defaultdict(list)
        for c in rules.correlations:
            for source in c.spec.sources:
                self._consumers[source].append(c)

    def _value_at(self, spec: CorrelationSpec) -> int:
        """Where the events of ``spec`` hold the value it counts: the pin of a counted flow
        field that is one (the flow's event, shared by every correlation counting it), else
        their own value."""
        flows = spec.sources[0] in self.base_queries  # sources are all flow rules or none
        if flows and spec.kind == "value_count" and spec.field in PIN_FIELDS:
            return PINS + PIN_FIELDS.index(spec.field)
        return VALUE

    @classmethod
    def from_config(cls, config: Config, state_dir: Path | None = None) -> RuleEngine:
        """The engine ``config.rules`` describes (built-in rules, users' directories, pipeline),
        with its state loaded from ``state_dir`` (default ``config.state_dir``)."""
        rc = config.rules
        directories = [Path(d) for d in rc.directories]
        pipeline = None
        if rc.builtin and BUILTIN_RULES.is_dir():
            directories.insert(0, BUILTIN_RULES)
        if (BUILTIN_RULES / PIPELINE).is_file():
            pipeline = load_pipeline(BUILTIN_RULES / PIPELINE)
        rules = load_rules(directories, pipeline, frozenset(rc.disabled))
        ti = rc.threat_index
        weights = {
            "low": ti.weight_low,
            "medium": ti.weight_medium,
            "high": ti.weight_high,
            "critical": ti.weight_critical,
        }
        engine = cls(
            rules,
            lateness_s=rc.lateness,
            suppression_s=rc.suppression,
            max_groups=rc.max_groups,
            max_group_events=rc.max_group_events,
            max_rule_events=rc.max_rule_events,
            threat=ThreatIndex(weights, ti.half_life, rc.max_groups),
            state_dir=Path(state_dir if state_dir is not None else config.state_dir),
        )
        engine.load()
        return engine

    # ------------------------------------------------------------------ processing

    def process(self, frame: FlowFrame) -> list[Detection]:
        """Run every rule over ``frame``; the detections this batch raised."""
        if not frame.n:
            return []
        fields = FlowFields(frame)
        ends = frame.cols["end_ns"] // _MS * _MS
        before = self.max_t - self.lateness_ns
        self.max_t = max(self.max_t, int(ends.max()))
        detections: list[Detection] = []
        objects: _EventColumns | None = None
        for rule in self._flow_rules:
            rows = np.flatnonzero(rule.predicate(fields))
            if not rows.size:
                continue
            if objects is None:  # made once a frame, on the first rule that matches
                objects = _EventColumns(frame, ends, self._strings)
            if rule.output:
                detections.extend(self._base_alerts(rule, frame, rows, ends, objects))
            for consumer in self._consumers.get(rule.info.name, ()):
                self._feed_flows(consumer, fields, objects, rows, before)
        return self._finish(detections, self.max_t - self.lateness_ns)

    def flush(self) -> list[Detection]:
        """Judge every window still open (end of input); the detections that raises."""
        return self._finish([], 2**62)

    def _finish(self, detections: list[Detection], watermark: int) -> list[Detection]:
        for c in self.rules.correlations:
            for firing in self.windows[c.info.name].evaluate(watermark):
                detection = self._correlation_alert(c, firing)
                if c.output:
                    detections.append(detection)
                for consumer in self._consumers.get(c.info.name, ()):
                    self._feed_detection(consumer, detection)
        # flush() judges everything but keeps what later flows may still need.
        now = min(watermark, self.max_t - self.lateness_ns)
        for windows in self.windows.values():
            windows.expire(now)
        for suppressor in self.suppressors.values():
            suppressor.prune(now)
        detections.extend(self._raise_threat(detections))
        return detections

    def _base_alerts(
        self, rule: BaseRule, frame: FlowFrame, rows: np.ndarray, ends: np.ndarray, objects: _EventColumns
    ) -> list[Detection]:
        """One alert per connection key among ``rows`` that is not quiet after an earlier alert."""
        by_key: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        src, dst, dport = (frame.cols[c][rows].tolist() for c in ("src_ip", "dst_ip", "dst_port"))
        for i, key in zip(rows.tolist(), zip(src, dst, dport, strict=True), strict=True):
            by_key[key].append(i)
        suppressor = self.suppressors[rule.info.name]
        out = []
        for key, picked in by_key.items():
            index = np.array(picked)
            t_end = int(ends[index].max())
            if not suppressor.allow(key, int(ends[index].min())):
                continue
            events = objects.shared(index)
            values = dict(zip(_BASE_KEY, (key[0], key[1], key[2] if key[2] != ABSENT else None), strict=True))
            span = (int(ends[index].min()), t_end)
            query = _evidence_query(events, rule.query, values, span)
            out.append(
                _detection(
                    rule,
                    values,
                    events,
                    query,
                    f"{_describe(values)}: {len(picked)} flows match {rule.info.title!r}",
                )
            )
        return out

    def _feed_flows(
        self,
        consumer: CorrelationRule,
        fields: FlowFields,
        objects: _EventColumns,
        rows: np.ndarray,
        watermark: int,
    ) -> None:
        spec = consumer.spec
        windows = self.windows[consumer.info.name]
        values: np.ndarray | None = None
        if (
            spec.kind == "value_sum"
            and (numbers := _numbers(fields.column(spec.field or ""), rows)) is not None
        ):
            rows, values = numbers
        elif spec.field is not None:
            found = _python(fields.column(spec.field), rows)
            keep = [i for i, v in enumerate(found) if v is not None]
            if spec.kind == "value_sum":
                keep = [i for i in keep if isinstance(found[i], int | float)]
                values = np.array([found[i] for i in keep], dtype=np.float64)
            elif windows.value_at == VALUE:
                values = np.empty(len(keep), dtype=object)
                values[:] = [found[i] for i in keep]
            if len(keep) != rows.size:
                rows = rows[keep]
        keys = [objects.key_column(g, fields, rows) for g in spec.group_by]
        windows.add(keys, objects.batch(rows, values, windows.value_at), watermark)

    def _feed_detection(self, consumer: CorrelationRule, detection: Detection) -> None:
        spec = consumer.spec
        key = [[detection.key.get(g)] for g in spec.group_by]
        value = detection.key.get(spec.field) if spec.field else None
        if spec.kind == "value_sum":
            value = detection.value
        event: Event = (
            detection.end_ns,
            detection.start_ns,
            value,
            detection.flow_ids,
            detection.source_ip,
            detection.destination_ip,
            detection.source_port,
            detection.destination_port,
            detection.community_id,
            detection.flow_count,
            detection.query,
        )
        self.windows[consumer.info.name].add(key, EventBatch.of([event]), -(2**62))

    def _correlation_alert(self, c: CorrelationRule, firing: Firing) -> Detection:
        spec = c.spec
        key = dict(zip(spec.group_by, firing.key, strict=True))
        t_end = firing.events[-1][T]
        window = (t_end - spec.timespan_ns, t_end)
        chained = spec.sources[0] not in self.base_queries
        if chained:
            inner = [event_query(e) for e in firing.events]
            condition = None if None in inner else " OR ".join(f"({q})" for q in inner if q)
            query = _evidence_query(firing.events, condition, {}, None, chained=True)
        else:
            queries = [self.base_queries[s] for s in spec.sources]
            condition = None if None in queries else " OR ".join(f"({q})" for q in queries if q)
            if condition is not None and spec.field:
                condition = f"({condition}) AND _exists_:{spec.field}"
            query = _evidence_query(firing.events, condition, key, window)
        phrase = _PHRASE[spec.kind].format(spec.field)
        reason = (
            f"{_describe(key)}: {firing.value:g} {phrase} in {spec.timespan_ns // _NS} s "
            f"(condition {spec.op} {spec.threshold:g})"
        )
        detection = _detection(c, key, firing.events, query, reason)
        detection.value, detection.threshold, detection.op = firing.value, spec.threshold, spec.op
        return detection

    def _raise_threat(self, detections: list[Detection]) -> list[Detection]:
        """Raise the hosts' threat index by these alerts, then run the threat-index rules."""
        changed: dict[str, list[Detection]] = defaultdict(list)
        previous: dict[str, float] = {}
        for d in sorted(detections, key=lambda d: d.end_ns):
            host = d.source_ip
            if host is None:
                continue
            if host not in changed:
                previous[host] = self.threat.value(host, d.end_ns)
            self.threat.raise_(host, d.rule.level, d.end_ns)
            changed[host].append(d)
        for d in detections:
            if d.source_ip is not None:
                d.threat_index = round(self.threat.value(d.source_ip, d.end_ns), 3)
        if not changed or not self._threat_rules:
            return []
        hosts = sorted(changed)
        ends = [max(d.end_ns for d in changed[h]) for h in hosts]
        values = [self.threat.value(h, t) for h, t in zip(hosts, ends, strict=True)]
        fields = EventFields(
            len(hosts),
            {
                "source.ip": Column("str", np.array(hosts, dtype=object)),
                "event.end": Column("num", np.array(ends, dtype=np.int64)),
                "tunnelhound.threat_index.value": Column("num", np.array(values)),
                "tunnelhound.threat_index.previous": Column("num", np.array([previous[h] for h in hosts])),
            },
        )
        out = []
        for rule in self._threat_rules:
            for i in np.flatnonzero(rule.predicate(fields)).tolist():
                host = hosts[i]
                if not self.suppressors[rule.info.name].allow((host,), ends[i]):
                    continue
                events: list[Event] = [
                    (
                        d.end_ns,
                        d.start_ns,
                        None,
                        d.flow_ids,
                        host,
                        None,
                        None,
                        None,
                        None,
                        d.flow_count,
                        d.query,
                    )
                    for d in changed[host]
                ]
                inner = [event_query(e) for e in events]
                condition = None if None in inner else " OR ".join(f"({q})" for q in inner if q)
                query = _evidence_query(events, condition, {}, None, chained=True)
                reason = f"threat index of {host} rose from {previous[host]:.1f} to {values[i]:.1f}"
                detection = _detection(rule, {"source.ip": host}, events, query, reason)
                detection.value = detection.threat_index = round(values[i], 3)
                out.append(detection)
        return out

    # ------------------------------------------------------------------ state

    def save(self) -> None:
        """Write windows, suppression and the threat index to ``state_dir`` (atomically)."""
        if self.state_dir is None:
            return
        state = {
            "version": STATE_VERSION,
            "max_t": self.max_t,
            "windows": {name: [_fingerprint(w.spec), w.dump()] for name, w in self.windows.items()},
            "suppressed": {name: s.dump() for name, s in self.suppressors.items()},
            "threat_index": self.threat.dump(),
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        # orjson: a million events' state is written in a second, not in ten (json's encoder).
        tmp.write_bytes(orjson.dumps(state))
        os.replace(tmp, path)

    def load(self) -> bool:
        """Restore what :meth:`save` wrote, for the rules still loaded; False (logged, and the
        engine starts empty) when there is no state or it is unreadable or of another version."""
        if self.state_dir is None or not (path := self.state_dir / STATE_FILE).is_file():
            return False
        try:
            state = orjson.loads(path.read_bytes())
            version = state.get("version")
            if version not in _STATE_VERSIONS:
                raise ValueError(f"version {version!r}, expected one of {_STATE_VERSIONS}")
            self.max_t = int(state["max_t"])
            for name, (fingerprint, rows) in state["windows"].items():
                # A rule changed since (group-by, window, condition): its old groups do not fit.
                if name in self.windows and fingerprint == _fingerprint(self.windows[name].spec):
                    self.windows[name].restore(rows, version)
            for name, rows in state["suppressed"].items():
                if name in self.suppressors:
                    self.suppressors[name].restore(rows)
            self.threat.restore(state["threat_index"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("rules: ignoring state %s: %s", path, " ".join(str(exc).split()))
            self.counters.state_errors += 1
            return False
        return True

    def metrics(self) -> dict[str, float]:
        """Counters and sizes for the metrics endpoint."""
        c = self.counters
        return {
            "rules_loaded": len(self.rules.base) + len(self.rules.correlations),
            "rules_late_events": c.late_events,
            "rules_suppressed": c.suppressed,
            "rules_evicted_groups": c.evicted_groups,
            "rules_evicted_events": c.evicted_events,
            "rules_evicted_suppressions": c.evicted_suppressions,
            "rules_evicted_hosts": self.threat.evicted,
            "rules_state_errors": c.state_errors,
            "rules_groups": sum(len(w) for w in self.windows.values()),
        }


# --------------------------------------------------------------------------- helpers


def _fingerprint(spec: CorrelationSpec) -> str:
    """What saved windows must match to be restored into a correlation."""
    return repr(spec)


def _python(col: Column, rows: np.ndarray) -> list[Any]:
    """The column's values at ``rows`` as Python values, None where absent (integers from -1
    to 65535 as the shared ones: see :class:`_EventColumns`)."""
    if col.codes is not None:
        assert col.names is not None
        names = col.names
        return [names[c] for c in col.codes[rows].tolist()]
    picked = col.values[rows]
    values = _ints(picked).tolist() if picked.dtype.kind == "i" else picked.tolist()
    if col.present is not None:
        present = col.present[rows].tolist()
        return [v if p else None for v, p in zip(values, present, strict=True)]
    return values


def _numbers(col: Column, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The rows of a numeric (or boolean) column where it is present and its values there as
    float64, what a sum adds (as ``_python`` and ``float()`` give them); None for other
    columns."""
    if col.codes is not None or col.values.dtype.kind not in "biuf":
        return None
    if col.present is not None:
        rows = rows[col.present[rows]]
    return rows, col.values[rows].astype(np.float64)


class _Lazy:
    """An object column of a frame made on demand, for the rows asked for (once each)."""

    def __init__(self, n: int, make: Callable[[np.ndarray], Any]) -> None:
        self._make = make
        self._values = np.empty(n, dtype=object)
        self._made = np.zeros(n, dtype=bool)

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        """The values at ``rows`` (distinct row numbers)."""
        new = rows[~self._made[rows]]
        if new.size:
            self._values[new] = self._make(new)
            self._made[new] = True
        return self._values[rows]


class _EventColumns:
    """A frame's columns that events hold, as Python objects made once a frame, for the rows
    some rule matched.

    Correlation state holds these objects (docs/operations.md, rule state memory), so each is
    made once and shared: a flow feeding three correlations gives their events the same id and
    address objects; integers from -1 to 65535 (ports, the absent marker) come from one table
    for the life of the process; recent addresses are one string object each through the
    engine's address table; hex event ids are kept as 16 bytes.
    """

    def __init__(self, frame: FlowFrame, ends: np.ndarray, strings: np.ndarray) -> None:
        c, n = frame.cols, frame.n
        self.ends = ends
        self.starts = c["start_ns"]
        self.ids = _Lazy(n, lambda rows: packed_ids(c["event_id"][rows].tolist()))
        # Addresses repeat (a host's flows, the servers hosts talk to); community ids seldom.
        self.src = _Lazy(n, lambda rows: _shared(c["src_ip"][rows], strings))
        self.dst = _Lazy(n, lambda rows: _shared(c["dst_ip"][rows], strings))
        self.cid = c["community_id"]
        # Ports as they are (-1: absent); _detection reads them so.
        self.sport = _Lazy(n, lambda rows: _ints(c["src_port"][rows]))
        self.dport = _Lazy(n, lambda rows: _ints(c["dst_port"][rows]))
        self.pins: tuple[_Lazy | np.ndarray, ...] = (self.src, self.dst, self.sport, self.dport, self.cid)
        self._text: dict[str, _Lazy | np.ndarray] = dict(
            zip(
                ("source.ip", "destination.ip", "network.community_id"),
                (self.src, self.dst, self.cid),
                strict=True,
            )
        )

    def key_column(self, name: str, fields: FlowFields, rows: np.ndarray) -> list[Any]:
        """Field ``name`` at ``rows`` for group keys: an address or community id as the
        events' string object, so that key and events hold one."""
        text = self._text.get(name)
        return list(text[rows].tolist()) if text is not None else _python(fields.column(name), rows)

    def shared(self, rows: np.ndarray) -> list[Event]:
        """The events of flows ``rows`` with no value, as tuples."""
        return list(
            zip(
                self.ends[rows].tolist(),
                self.starts[rows].tolist(),
                [None] * rows.size,
                self.ids[rows].tolist(),
                *(pin[rows].tolist() for pin in self.pins),
                strict=True,
            )
        )

    def batch(self, rows: np.ndarray, values: np.ndarray | None, value_at: int) -> EventBatch:
        """The events of flows ``rows`` as columns, counting ``values`` (None: the pin at
        ``value_at``, or nothing)."""
        pins = tuple(pin[rows] for pin in self.pins)
        if values is None:
            values = pins[value_at - PINS] if value_at != VALUE else np.empty(rows.size, dtype=object)
        return EventBatch(
            t=self.ends[rows], start=self.starts[rows], value=values, ids=self.ids[rows], pins=pins
        )


_SMALL_INTS = np.array(range(-1, 65536), dtype=object)
"""The Python ints -1 .. 65535, one object each, that every port and small count refers to."""
_STRINGS = 1 << 16
"""Slots of the engine's address table: an address lands in the slot of its hash."""
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 128 * 1024


def _return_freed_memory() -> None:
    """Have glibc serve allocations from 128 KiB up with their own mappings (and so return them
    to the system when freed): the windows' arrays are replaced as they grow and compact, and
    glibc's adaptive threshold would otherwise move them into a heap that never shrinks."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl): its own policy
        return
    libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)


def _ints(values: np.ndarray) -> np.ndarray:
    """An integer array as Python ints (object array): those from -1 to 65535 the shared ones."""
    small = (values >= -1) & (values < 65536)
    if small.all():  # ports: the table's ints only
        return _SMALL_INTS[values + 1]
    out = values.astype(object)
    out[small] = _SMALL_INTS[values[small] + 1]
    return out


def _shared(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``values`` (addresses, object array) with each replaced by the table's equal one: an
    address repeated while it stays in its slot (that of its hash) is one object, a new one
    takes the slot over, so the table's memory is bounded without ever clearing it."""
    slots = np.fromiter(map(hash, values.tolist()), dtype=np.int64, count=len(values)) & (len(table) - 1)
    new = table[slots] != values
    table[slots[new]] = values[new]  # of several new ones for a slot, the last stays
    held = table[slots]
    return np.where(held == values, held, values)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // _MS / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _evidence_query(
    events: list[Event],
    condition: str | None,
    key: dict[str, Any],
    window: tuple[int, int] | None,
    *,
    chained: bool = False,
) -> str:
    """A Lucene query on flow documents returning exactly the evidence flows: their event ids
    when they are few enough to list, else the rules' condition within the key and window."""
    ids = [i for e in events for i in flow_ids(e)]
    count = sum(map(flow_count, events))
    if count <= MAX_EVIDENCE_IDS and len(ids) == count:
        return f"{_FLOWS} AND event.id:(" + " OR ".join(quote(i) for i in ids) + ")"
    if condition is None:
        # No Lucene form for the condition: the listed flows (a sample of the evidence).
        return f"{_FLOWS} AND event.id:(" + " OR ".join(quote(i) for i in ids[:MAX_EVIDENCE_IDS]) + ")"
    if chained:
        return condition
    parts = [_FLOWS, f"({condition})"]
    for name, value in key.items():
        parts.append(term(name, value) if value is not None else f"(NOT _exists_:{name})")
    if window is not None:
        parts.append(f"event.end:[{quote(_iso(window[0]))} TO {quote(_iso(window[1]))}]")
    return " AND ".join(parts)


def _detection(
    rule: BaseRule | CorrelationRule, key: dict[str, Any], events: list[Event], query: str, reason: str
) -> Detection:
    ids: list[str] = []
    for e in events:
        ids.extend(flow_ids(e)[: MAX_EVIDENCE_IDS - len(ids)])
        if len(ids) >= MAX_EVIDENCE_IDS:
            break
    pinned = [_pinned([e[PINS + k] for e in events]) for k in range(5)]
    source_ip = key.get("source.ip", pinned[0])
    return Detection(
        rule=rule.info,
        key=key,
        start_ns=min(e[START] for e in events),
        end_ns=max(e[T] for e in events),
        flow_ids=ids,
        flow_count=sum(map(flow_count, events)),
        query=query,
        reason=reason,
        source_ip=source_ip,
        destination_ip=key.get("destination.ip", pinned[1]),
        source_port=key.get("source.port", pinned[2]),
        destination_port=key.get("destination.port", pinned[3]),
        community_id=key.get("network.community_id", pinned[4]),
    )


def _pinned(values: list[Any]) -> Any:
    """The one value all evidence shares, else None (ports: -1 is absent)."""
    first = values[0]
    return first if first is not None and first != ABSENT and all(v == first for v in values) else None


def _describe(key: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in key.items() if v is not None) or "all flows"
