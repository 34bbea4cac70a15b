"""The streaming engine on the rules in tests/data/rules: correlation thresholds, sliding
windows, lateness, group-by, suppression, chaining, the threat index, state across restarts
and bounded state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows import T0, flow, frame
from tunnelhound.config import Config, RulesConfig
from tunnelhound.rules import Detection, RuleEngine, load_pipeline, load_rules

RULES = Path(__file__).resolve().parent / "data" / "rules"
PIPELINE = RULES / "pipelines" / "tunnelhound.yml"
SCANNER, TARGET = "10.0.0.5", "198.51.100.9"
MB = 1_000_000


def engine(tmp_path: Path | None = None, **kwargs: Any) -> RuleEngine:
    rules = load_rules([RULES], load_pipeline(PIPELINE))
    return RuleEngine(rules, lateness_s=kwargs.pop("lateness_s", 10), state_dir=tmp_path, **kwargs)


def scan(
    ports: int, *, start: float = 0, step: float = 1, src: str = SCANNER, dst: str = TARGET, port: int = 1000
) -> list[dict[str, Any]]:
    """Unanswered TCP flows to ``ports`` distinct ports from ``port`` on, one every ``step`` seconds."""
    return [flow(src, dst, port + i, t=start + i * step) for i in range(ports)]


def run(e: RuleEngine, *batches: list[dict[str, Any]]) -> list[Detection]:
    out = [d for rows in batches for d in e.process(frame(rows))]
    return out + e.flush()


def names(detections: list[Detection]) -> list[str]:
    return [d.rule.name for d in detections]


@pytest.mark.parametrize(("ports", "alerts"), [(14, 0), (15, 1), (16, 1), (200, 1)])
def test_value_count_threshold(ports: int, alerts: int) -> None:
    found = run(engine(), scan(ports))
    assert names(found).count("test_scan_vertical") == alerts
    if alerts:
        (d,) = [x for x in found if x.rule.name == "test_scan_vertical"]
        assert d.key == {"source.ip": SCANNER, "destination.ip": TARGET}
        assert (d.value, d.threshold, d.op, d.flow_count) == (15.0, 15.0, "gte", 15)
        assert d.flow_ids[0] == scan(1)[0]["event_id"]
        assert (d.source_ip, d.destination_ip, d.destination_port) == (SCANNER, TARGET, None)
        assert d.start_ns == T0 - 1_000_000_000 and d.end_ns == T0 + 14_000_000_000
        assert d.rule.detector == "scan" and d.rule.level == "high"
        assert "15 distinct destination.port in 300 s" in d.reason


def test_repeated_ports_count_once() -> None:
    rows = [flow(SCANNER, TARGET, 1000 + i % 10, t=i) for i in range(40)]
    assert "test_scan_vertical" not in names(run(engine(), rows))


@pytest.mark.parametrize(("step", "alerts"), [(20.0, 1), (21.4, 1), (21.5, 0), (25.0, 0)])
def test_window_slides_on_flow_time(step: float, alerts: int) -> None:
    # 15 ports over 14 steps: within the 300 s window up to step 300/14 = 21.43 s.
    assert names(run(engine(), scan(15, step=step))).count("test_scan_vertical") == alerts


def test_window_slides_past_an_old_burst() -> None:
    # 10 ports, then 10 more 400 s later: no 300 s window holds 15; then 5 more soon after do.
    e = engine()
    assert e.process(frame(scan(10))) == [] and e.process(frame(scan(10, start=400))) == []
    found = run(e, [flow(SCANNER, TARGET, 2000 + i, t=420 + i) for i in range(5)])
    assert names(found) == ["test_scan_vertical"] and found[0].flow_count == 15


def test_group_by_keeps_destinations_apart() -> None:
    rows = scan(8, dst="198.51.100.1") + scan(8, dst="198.51.100.2")
    assert "test_scan_vertical" not in names(run(engine(), rows))


def test_late_flows_count_until_no_window_can_hold_them() -> None:
    # Ports 0..13 in order, then port 14 arriving 5 s late (within the lateness): counted.
    e = engine(lateness_s=10)
    assert e.process(frame(scan(14, start=100))) == []
    found = run(e, [flow(SCANNER, TARGET, 1999, t=108)])
    assert names(found) == ["test_scan_vertical"] and e.counters.late_events == 0
    # The same, with the watermark already 80 s past it: the group's windows were not judged
    # (14 ports cannot fire), so the late flow still completes the scan.
    e = engine(lateness_s=10)
    e.process(frame(scan(14, start=100, dst="10.9.9.9")))
    e.process(frame([flow("10.9.9.8", "10.9.9.7", 80, t=200)]))  # the watermark moves to 190
    found = run(e, [flow(SCANNER, "10.9.9.9", 1999, t=108)])
    assert names(found) == ["test_scan_vertical"] and e.counters.late_events == 0
    # A flow older than every window still to be judged of its group is dropped and counted.
    e = engine(lateness_s=10)
    e.process(frame(scan(20, start=1000, dst="10.9.9.9")))
    e.process(frame([flow("10.9.9.8", "10.9.9.7", 80, t=1100)]))  # judged up to 1019
    assert names(e.process(frame([flow(SCANNER, "10.9.9.9", 5000, t=600)]))) == []
    assert e.counters.late_events == 1


def test_suppression_one_alert_per_key_per_window() -> None:
    e = engine(suppression_s=3600)
    first = run(e, scan(100), scan(100, start=200))
    assert names(first) == ["test_scan_vertical"]
    assert e.counters.suppressed > 0
    later = run(e, scan(30, start=4000))
    assert names(later) == ["test_scan_vertical"]
    assert later[0].end_ns > first[0].end_ns


def test_alerts_do_not_depend_on_batching() -> None:
    rows = scan(40)
    whole = run(engine(), rows)
    split = run(engine(), *[rows[i : i + 3] for i in range(0, 40, 3)])
    assert [(d.rule.name, d.key, d.end_ns, d.flow_ids) for d in whole] == [
        (d.rule.name, d.key, d.end_ns, d.flow_ids) for d in split
    ]


def upload(t: float, nbytes: int, src: str = "10.0.0.8") -> dict[str, Any]:
    return flow(src, "203.0.113.50", 443, t=t, src_bytes=nbytes, dst_packets=10)


@pytest.mark.parametrize(("nbytes", "alerts"), [(20 * MB, 0), (20 * MB + 1, 1)])
def test_value_sum_threshold(nbytes: int, alerts: int) -> None:
    rows = [upload(0, nbytes - 3 * MB), upload(100, 3 * MB)]
    found = run(engine(), rows)
    assert names(found).count("test_exfil_volume") == alerts
    if alerts:
        assert found[0].value == nbytes and found[0].key == {"source.ip": "10.0.0.8"}


def test_value_sum_window_excludes_older_bytes() -> None:
    assert run(engine(), [upload(0, 15 * MB), upload(301, 15 * MB)]) == []


@pytest.mark.parametrize(("uploads", "repeat"), [(2, 0), (3, 1), (4, 2)])
def test_chained_event_count_over_value_sum(uploads: int, repeat: int) -> None:
    # One large upload every 4000 s (past the 3600 s suppression): each is a trigger-1 firing;
    # the fourth is again >= 3 in 24 h, past the repeat rule's own suppression.
    e = engine(suppression_s=3600)
    found = run(e, *[[upload(i * 4000, 25 * MB)] for i in range(uploads)])
    assert names(found).count("test_exfil_volume") == uploads
    assert names(found).count("test_exfil_repeat") == repeat
    if repeat:
        d = next(x for x in found if x.rule.name == "test_exfil_repeat")
        assert d.key == {"source.ip": "10.0.0.8"} and d.flow_count == 3 and d.value == 3
        assert d.rule.level == "critical"


def test_base_rule_alerts_once_per_connection_key() -> None:
    ssh = [
        flow("10.0.0.2", "198.51.100.2", 53, t=i, app="ssh", dst_packets=5, sport=40000 + i) for i in range(3)
    ]
    e = engine()
    found = run(e, ssh[:2], ssh[2:])
    assert names(found) == ["test_ssh_on_53"]
    (d,) = found
    assert d.flow_count == 2 and d.key == {
        "source.ip": "10.0.0.2",
        "destination.ip": "198.51.100.2",
        "destination.port": 53,
    }
    assert d.destination_port == 53 and d.source_port is None
    assert d.threat_index == 6.0


def test_threat_index_crosses_once() -> None:
    e = engine()
    host = "10.0.0.2"
    batches = [[flow(host, f"198.51.100.{i}", 53, t=i, app="ssh", dst_packets=5)] for i in range(1, 6)]
    found = [names(e.process(frame(rows))) for rows in batches]
    # high = 6 each: 6, 12, 18, 24 (crosses 20), 30 (already above).
    assert found == [["test_ssh_on_53"]] * 3 + [["test_ssh_on_53", "test_threat_index"], ["test_ssh_on_53"]]
    assert e.threat.value(host, T0 + 5_000_000_000) == pytest.approx(30, rel=1e-3)


def test_threat_index_decays_with_half_life() -> None:
    e = engine()
    e.process(frame([flow("10.0.0.2", "198.51.100.2", 53, t=0, app="ssh")]))
    assert e.threat.value("10.0.0.2", T0 + 6 * 3600 * 1_000_000_000) == pytest.approx(3.0)


def test_scan_split_across_restart_alerts_once(tmp_path: Path) -> None:
    first = engine(tmp_path)
    assert first.process(frame(scan(10))) == []
    first.save()
    second = engine(tmp_path)
    assert second.load()
    found = run(second, scan(10, start=10, port=2000))
    assert names(found) == ["test_scan_vertical"] and found[0].flow_count == 15
    second.save()
    third = engine(tmp_path)
    assert third.load()
    assert run(third, scan(20, start=30, port=3000)) == []  # still suppressed after the restart


def test_state_of_version_1_is_converted_on_load(tmp_path: Path) -> None:
    """Version 1 kept ``flows, query`` after a flow's id (now only firings carry them): a
    restart after the upgrade continues the windows it saved."""
    first = engine(tmp_path)
    assert first.process(frame(scan(10))) == []
    first.save()
    path = tmp_path / "rules-state.json"
    state = json.loads(path.read_text())
    for _fingerprint, groups in state["windows"].values():
        for group in groups:
            group[2] = [[*event[:4], 1, None, *event[4:]] for event in group[2]]
    state["version"] = 1
    path.write_text(json.dumps(state))
    second = engine(tmp_path)
    assert second.load()
    found = run(second, scan(10, start=10, port=2000))
    assert names(found) == ["test_scan_vertical"] and found[0].flow_count == 15
    assert found[0].flow_ids[:2] == [row["event_id"] for row in scan(2)]


def test_hex_event_ids_are_kept_as_bytes_and_given_back_as_text(tmp_path: Path) -> None:
    """A 128-bit hex ``event.id`` (what the normalizer writes) is held as its 16 bytes; the
    detection and the saved state have it as the text it came as; other ids stay text."""
    rows = scan(15)
    for i, row in enumerate(rows):
        row["event_id"] = f"{i:030x}" + ("ab" if i % 2 else "AB")  # upper case: kept as text
    e = engine(tmp_path)
    e.process(frame(rows[:10]))
    group = e.windows["test_scan_vertical"].events_of((SCANNER, TARGET))
    assert [type(event[3]) for event in group[:2]] == [str, bytes]
    e.save()
    saved = json.loads((tmp_path / "rules-state.json").read_text())["windows"]["test_scan_vertical"][1]
    assert [event[3] for event in saved[0][2]] == [row["event_id"] for row in rows[:10]]
    (d,) = [d for d in run(e, rows[10:]) if d.rule.name == "test_scan_vertical"]
    assert d.flow_ids == [row["event_id"] for row in rows]
    assert all(f'"{i}"' in d.query for i in d.flow_ids)


def test_correlations_counting_one_flow_share_its_event_and_strings(tmp_path: Path) -> None:
    """Rule state holds the values of events as columns (docs/operations.md, rule state
    memory): the correlations a flow feeds hold its one id and address objects, the distinct
    counts of pinned fields (destination port, destination address) read their pins, a sum
    holds its value; the group keys hold those address objects too."""
    (tmp_path / "horizontal.yml").write_text(
        "title: Horizontal scan\nname: test_scan_horizontal\nid: 8f6c2a10-0000-4000-8000-0000000000aa\n"
        "correlation:\n  type: value_count\n  rules: [test_unanswered]\n"
        "  group-by: [source.ip, destination.port]\n  timespan: 5m\n"
        "  condition: {gte: 15, field: destination.ip}\nlevel: high\n"
    )
    e = RuleEngine(load_rules([RULES, tmp_path], load_pipeline(PIPELINE)), lateness_s=10)
    copy = [flow(SCANNER[:3] + SCANNER[3:], TARGET[:3] + TARGET[3:], 1000, t=1)]  # equal, not identical
    assert copy[0]["src_ip"] is not SCANNER and copy[0]["dst_ip"] is not TARGET
    e.process(frame([flow(SCANNER, TARGET, 1000, t=0), *copy]))
    names = ("test_scan_vertical", "test_scan_horizontal", "test_exfil_volume")
    vertical_key, horizontal_key, volume_key = (e.windows[name].keys()[0] for name in names)
    vertical, horizontal, volume = (
        e.windows[name].events_of(key)
        for name, key in zip(names, (vertical_key, horizontal_key, volume_key), strict=True)
    )
    assert len(vertical) == len(horizontal) == len(volume) == 2
    assert vertical == horizontal
    assert [event[2] for event in vertical] == [None, None]  # the counts read the pins
    for v, h, s in zip(vertical, horizontal, volume, strict=True):
        assert s[2] == 100
        assert all(s[i] is v[i] is h[i] for i in (3, 4, 5, 7))  # id, addresses, port
    assert vertical_key[0] is horizontal_key[0] is volume_key[0] is vertical[0][4] is vertical[1][4]
    assert vertical_key[1] is vertical[0][5] is vertical[1][5]  # one string for the two flows
    assert horizontal_key[1] is vertical[0][7]  # the port: one int for every 1000


def test_state_of_another_version_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "rules-state.json").write_text('{"version": 99}')
    e = engine(tmp_path)
    assert not e.load() and e.counters.state_errors == 1


def test_bounded_state_evicts_and_counts() -> None:
    e = engine(max_groups=2, max_group_events=5)
    run(e, scan(3, src="10.0.0.1") + scan(3, src="10.0.0.2") + scan(3, src="10.0.0.3"))
    assert e.counters.evicted_groups >= 1
    e = engine(max_group_events=5)
    e.process(frame(scan(8, start=100, dst="10.0.0.99")))  # internal: feeds the scan rule only
    assert e.counters.evicted_events == 3
    assert e.metrics()["rules_evicted_events"] == 3


def test_events_over_the_rule_cap_go_earliest_first_across_keys_and_are_counted(tmp_path: Path) -> None:
    e = engine(max_rule_events=6)
    windows = e.windows["test_scan_vertical"]

    def held() -> dict[str, int]:
        groups = windows.keys()
        return {key[0]: len(windows.events_of(key)) for key in groups}

    # Three scanners, four flows each, to internal targets: only the vertical scan counts them.
    e.process(frame(scan(4, src="10.0.0.1", dst="10.0.0.99")))
    e.process(frame(scan(4, start=10, src="10.0.0.2", dst="10.0.0.99")))
    assert e.counters.evicted_events == 2
    assert held() == {"10.0.0.1": 2, "10.0.0.2": 4}  # the earliest arrived went
    e.process(frame(scan(4, start=20, src="10.0.0.3", dst="10.0.0.99")))
    assert held() == {"10.0.0.2": 2, "10.0.0.3": 4}  # a key left without events is dropped
    assert e.metrics()["rules_evicted_events"] == 6
    config = Config(state_dir=str(tmp_path), rules=RulesConfig(max_rule_events=7))
    assert RuleEngine.from_config(config).windows["port_scan_vertical"].max_rule_events == 7


def test_from_config_loads_users_rules_and_disables(tmp_path: Path) -> None:
    users = tmp_path / "rules"
    users.mkdir()
    for name in ("exfil.yml", "threat_index.yml"):
        text = (RULES / name).read_text().replace("DestinationPort", "destination.port")
        (users / name).write_text(text)
    config = Config(
        state_dir=str(tmp_path),
        rules=RulesConfig(builtin=False, directories=(str(users),), disabled=("test_outbound",)),
    )
    e = RuleEngine.from_config(config)
    loaded = {r.info.name for r in e.rules.base} | {c.info.name for c in e.rules.correlations}
    # Disabling the base rule turns off the correlations built on it.
    assert loaded == {"test_ssh_on_53", "test_threat_index"}
    assert e.state_dir == tmp_path


def test_saved_windows_of_a_changed_rule_are_not_restored(tmp_path: Path) -> None:
    first = engine(tmp_path)
    first.process(frame(scan(10)))
    first.save()
    changed = tmp_path / "rules"
    changed.mkdir()
    text = (
        (RULES / "scan.yml")
        .read_text()
        .replace("group-by: [SourceIp, DestinationIp]", "group-by: [SourceIp]")
    )
    (changed / "scan.yml").write_text(text)
    second = RuleEngine(load_rules([changed], load_pipeline(PIPELINE)), lateness_s=10, state_dir=tmp_path)
    assert second.load()
    assert len(second.windows["test_scan_vertical"]) == 0
    found = run(second, scan(15, start=20, port=2000))
    assert [d.key for d in found] == [{"source.ip": SCANNER}]


def test_state_file_is_versioned_json(tmp_path: Path) -> None:
    e = engine(tmp_path)
    e.process(frame(scan(3)))
    e.save()
    state = json.loads((tmp_path / "rules-state.json").read_text())
    assert state["version"] == 2 and set(state) == {
        "version",
        "max_t",
        "windows",
        "suppressed",
        "threat_index",
    }
    fingerprint, groups = state["windows"]["test_scan_vertical"]
    assert "value_count" in fingerprint and [g[0] for g in groups] == [[SCANNER, TARGET]]


def test_public_names() -> None:
    import tunnelhound.rules as rules

    assert sorted(rules.__all__) == [
        "BUILTIN_RULES",
        "Detection",
        "RuleEngine",
        "RuleError",
        "RuleInfo",
        "RuleSet",
        "load_pipeline",
        "load_rules",
    ]
    assert all(getattr(rules, name).__doc__ or name == "BUILTIN_RULES" for name in rules.__all__)


EVENT_COUNT = """title: Many DNS flows
name: many_dns
id: 8f6c2a10-0000-4000-8000-0000000000a1
logsource: {product: tunnelhound, category: network, service: flow}
detection:
  selection:
    destination.port: 53
  condition: selection
---
title: DNS burst
name: dns_burst
id: 8f6c2a10-0000-4000-8000-0000000000a2
correlation: {type: event_count, rules: [many_dns], group-by: [source.ip], timespan: 1m, condition: {gt: 5}}
level: medium
"""


@pytest.mark.parametrize(
    ("flows", "step", "alerts"), [(5, 1, 0), (6, 1, 1), (6, 12, 1), (6, 12.1, 0), (30, 1, 1)]
)
def test_event_count_threshold_and_window(tmp_path: Path, flows: int, step: float, alerts: int) -> None:
    (tmp_path / "dns.yml").write_text(EVENT_COUNT)
    e = RuleEngine(load_rules([tmp_path]), lateness_s=10)
    rows = [flow("10.0.0.3", "10.0.0.53", 53, sport=50000 + i, t=i * step, proto=17) for i in range(flows)]
    found = run(e, rows)
    assert names(found) == ["dns_burst"] * alerts
    if alerts:
        assert found[0].value == 6 and found[0].op == "gt" and found[0].key == {"source.ip": "10.0.0.3"}
