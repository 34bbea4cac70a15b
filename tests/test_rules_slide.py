"""Sums judged with prefix sums over the columns give exactly the running sum's (the loop
``_running_sums``, taken for values that are not integers or too large): the same windows, values, evidence and order, suppression included."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelhound.rules import correlate
from tunnelhound.rules.correlate import CorrelationSpec, Counters, Event, EventBatch, Suppressor, Windows

NS = 1_000_000_000


def judge(spec: CorrelationSpec, batches: list[list[tuple[str, int, Any]]], exact_below: int) -> list[Any]:
    """Feed ``batches`` of (key, second, value) events, judging after each batch and at the end;
    every firing as plain values, and the counters."""
    correlate._EXACT = exact_below
    counters = Counters()
    windows = Windows(spec, Suppressor(30 * NS, 1000, counters), 1000, 1000, counters)
    out: list[Any] = []
    latest = 0
    for batch in batches:
        keys = [[key for key, _, _ in batch]]
        events = [(t * NS, t * NS, value, f"id-{i}-{t}", None, None, None, None, None)
                  for i, (_, t, value) in enumerate(batch)]  # fmt: skip
        latest = max([latest, *(t * NS for _, t, _ in batch)])
        windows.add(keys, EventBatch.of(events), latest - 20 * NS)
        out.extend(windows.evaluate(latest - 20 * NS))
    out.extend(windows.evaluate(2**62))
    return [(f.key, f.value, [e[3] for e in f.events]) for f in out] + [repr(counters)]


events = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 400), st.integers(-5, 2000)), max_size=120
)


@pytest.fixture(autouse=True)
def _restore_exact() -> Any:
    saved = correlate._EXACT
    yield
    correlate._EXACT = saved


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["event_count", "value_sum"]),
    st.sampled_from(["gt", "gte", "lt", "lte", "eq", "neq"]),
    st.integers(1, 3000),
    st.lists(events, min_size=1, max_size=5),
    st.booleans(),
)
def test_array_windows_equal_the_loop(
    kind: str, op: str, threshold: int, batches: list[list[tuple[str, int, int]]], floats: bool
) -> None:
    if kind == "event_count":
        threshold = threshold % 40
    if floats:  # float values always take the loop: the same result either way
        batches = [[(k, t, v + 0.5) for k, t, v in b] for b in batches]
    spec = CorrelationSpec(
        name="r",
        kind=kind,  # type: ignore[arg-type]
        sources=("base",),
        group_by=("source.ip",),
        timespan_ns=60 * NS,
        op=op,
        threshold=float(threshold),
        field="x" if kind == "value_sum" else None,
    )
    loop = judge(spec, batches, 0)
    arrays = judge(spec, batches, 2**52)
    assert arrays == loop


def test_array_windows_fire_like_the_loop_on_a_burst() -> None:
    """A known case: 50 events of 100 bytes one second apart, sum > 2000 in 60 s fires once at
    the 21st event (then the key is quiet for 30 s: again at the 51st... there is none)."""
    spec = CorrelationSpec(
        name="r", kind="value_sum", sources=("base",), group_by=("source.ip",), timespan_ns=60 * NS,
        op="gt", threshold=2000.0, field="x",
    )  # fmt: skip
    batch = [("h", t, 100) for t in range(50)]
    arrays = judge(spec, [batch], 2**52)
    assert arrays == judge(spec, [batch], 0)
    assert [(key, value, len(ids)) for key, value, ids in arrays[:-1]] == [(("h",), 2100.0, 21)]


def test_a_group_whose_events_are_all_too_old_goes_and_its_key_starts_afresh() -> None:
    """Two events 81 s behind the watermark with a 60 s window: no window still to be judged
    holds them, so their group is dropped (it used to stay as an empty list, and the key's next
    event or ``expire`` raised IndexError)."""
    windows, _, event = count_windows(threshold=3.0, max_groups=1000, events=200)
    windows.add([["a", "b", "b"]], batch(event[141], event[0], event[1]), 121 * NS)
    assert windows.keys() == [("a",)]
    windows.add([["b"] * 3], batch(event[2], event[150], event[151]), 121 * NS)
    windows.expire(121 * NS)
    assert windows.events_of(("b",)) == [event[2], event[150], event[151]]
    firings = windows.evaluate(2**62)
    assert firings == []  # 2, 150 and 151 are never within 60 s of each other
    windows.add([["b"]], batch(event[152]), 121 * NS)
    assert [(f.key, f.value) for f in windows.evaluate(2**62)] == [(("b",), 3.0)]


def batch(*events: Event) -> EventBatch:
    return EventBatch.of(list(events))


def count_windows(*, threshold: float, max_groups: int, events: int) -> tuple[Windows, Counters, list[Event]]:
    """An ``event_count`` correlation over 60 s by source.ip, its counters, and ``events``
    events one second apart (event ``t`` at ``t`` s, id ``id-t``)."""
    spec = CorrelationSpec(
        name="r", kind="event_count", sources=("base",), group_by=("source.ip",), timespan_ns=60 * NS,
        op="gte", threshold=threshold,
    )  # fmt: skip
    counters = Counters()
    windows = Windows(spec, Suppressor(30 * NS, 1000, counters), max_groups, 1000, counters)
    return (
        windows,
        counters,
        [(t * NS, t * NS, None, f"id-{t}", None, None, None, None, None) for t in range(events)],
    )


def test_groups_over_the_cap_are_evicted_at_the_end_of_the_batch() -> None:
    """``max_groups`` 2, one batch of keys a, b, c, a: the least recent group by its first event
    of the batch (a) goes with all its events, counted once (key by key it was evicted at c,
    started afresh at its second event and evicted again at b's turn: 2); the next batch's a
    is a new group and evicts b."""
    windows, counters, event = count_windows(threshold=5.0, max_groups=2, events=10)
    windows.add([["a", "b", "c", "a"]], batch(*event[:4]), 0)
    assert (windows.keys(), counters.evicted_groups) == ([("b",), ("c",)], 1)
    assert windows.events_of(("a",)) == []
    windows.add([["a"]], batch(event[4]), 0)
    assert (windows.keys(), counters.evicted_groups) == ([("c",), ("a",)], 2)
    assert windows.events_of(("a",)) == [event[4]]


def _packed_one(text: str) -> Any:
    """packed_ids' rule for one id: a 32-digit lowercase (or all-digit) hex digest as bytes."""
    if len(text) == 32 and (text.islower() or text.isdigit()):
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            return text
        return raw if len(raw) == 16 else text
    return text


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(min_size=16, max_size=16).map(bytes.hex),
            st.binary(min_size=16, max_size=16).map(lambda b: b.hex().upper()),
            st.text(alphabet="0123456789abcdef -", min_size=30, max_size=33),
        ),
        max_size=8,
    )
)
def test_packed_ids_at_once_equal_one_by_one(ids: list[str]) -> None:
    """A frame of digests is decoded in one go; any other id makes it go one by one: the same
    result either way."""
    assert correlate.packed_ids(ids) == [_packed_one(text) for text in ids]


def test_a_nan_group_key_is_one_group() -> None:
    """Keys compare as dict keys do: a NaN (the same object) is one group, not one a row."""
    spec = CorrelationSpec(
        name="r", kind="event_count", sources=("base",), group_by=("x",), timespan_ns=60 * NS,
        op="gte", threshold=3.0,
    )  # fmt: skip
    counters = Counters()
    windows = Windows(spec, Suppressor(30 * NS, 1000, counters), 1000, 1000, counters)
    nan = float("nan")
    event = [(t * NS, t * NS, None, f"id-{t}", None, None, None, None, None) for t in range(3)]
    windows.add([[nan, nan, nan]], batch(*event), 0)
    assert len(windows) == 1
    assert [(f.value, len(f.events)) for f in windows.evaluate(2**62)] == [(3.0, 3)]
