"""The streaming windows against a brute-force reference: random scans, random batching and
disorder within the allowed lateness give exactly the firings of judging every window."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path
from typing import Any

from hypothesis import given, settings, target
from hypothesis import strategies as st

from flows import NS, T0, flow, frame
from tunnelhound.rules import RuleEngine, load_pipeline, load_rules

RULES = Path(__file__).resolve().parent / "data" / "rules"
RULE_SET = load_rules([RULES], load_pipeline(RULES / "pipelines" / "tunnelhound.yml"))
SPAN, SUPPRESSION, LATENESS, THRESHOLD = 300 * NS, 600 * NS, 30, 15


def reference(rows: list[dict[str, Any]]) -> list[tuple[tuple[str, str], int]]:
    """Every window [t - 300 s, t] of every (source, destination) judged in time order."""
    by_key: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for r in rows:
        by_key[(r["src_ip"], r["dst_ip"])].append((r["end_ns"], r["dst_port"]))
    fired = []
    for key, events in by_key.items():
        events.sort()
        quiet_until = -(2**63)
        for t in sorted({t for t, _ in events}):
            ports = {p for u, p in events if t - SPAN <= u <= t}
            if len(ports) >= THRESHOLD and t >= quiet_until:
                fired.append((key, t))
                quiet_until = t + SUPPRESSION
    return sorted(fired)


# Bursts of ports from one source to one destination: (source, destination, start second,
# ports, seconds between them, first port), so streams land at and around the threshold.
bursts = st.lists(
    st.tuples(
        st.sampled_from(["10.0.0.1", "10.0.0.2"]),
        st.sampled_from(["10.9.9.1", "10.9.9.2"]),  # internal: the rows feed only the scan rule
        st.integers(0, 1500),
        st.integers(5, 25),
        st.integers(0, 40),
        st.integers(1, 20),
    ),
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(bursts, st.lists(st.integers(1, 50), min_size=1, max_size=10), st.randoms(use_true_random=False))
def test_streaming_windows_match_the_reference(
    scans: list[tuple[str, str, int, int, int, int]], cuts: list[int], rnd: Any
) -> None:
    rows = [
        flow(src, dst, first + k, t=start + k * step, sport=40000 + n * 100 + k)
        for n, (src, dst, start, ports, step, first) in enumerate(scans)
        for k in range(ports)
    ]
    rows.sort(key=lambda r: r["end_ns"])
    # Batches of random sizes; inside each, rows shuffled (disorder well within the lateness
    # as long as a batch spans less than it: keep only such batches' disorder).
    batches, i = [], 0
    for size in itertools.cycle(cuts):
        if i >= len(rows):
            break
        batch = rows[i : i + size]
        if batch[-1]["end_ns"] - batch[0]["end_ns"] < LATENESS * NS:
            rnd.shuffle(batch)
        batches.append(batch)
        i += size
    engine = RuleEngine(RULE_SET, lateness_s=LATENESS, suppression_s=SUPPRESSION / NS)
    found = [d for b in batches for d in engine.process(frame(b))] + engine.flush()
    got = sorted(
        ((d.key["source.ip"], d.key["destination.ip"]), d.end_ns)
        for d in found
        if d.rule.name == "test_scan_vertical"
    )
    assert engine.counters.late_events == 0
    assert got == reference(rows)
    target(len(got))  # steer towards streams that fire
    assert all(d.end_ns >= T0 for d in found)
