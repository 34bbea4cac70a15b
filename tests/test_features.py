"""Feature stage on synthetic flows at and around every threshold (issue 4, acceptance 3)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from flowframes import flow, frame
from tunnelhound.config import Config, DetectionOverrideConfig, DetectionsConfig, from_dict
from tunnelhound.features import Baseline, BaselineError, FeatureStage
from tunnelhound.features.baseline import MetricStats
from tunnelhound.features.beacon import pair_hashes
from tunnelhound.normalize.columns import Columns
from tunnelhound.normalize.frame import ABSENT

DEFAULTS = DetectionsConfig()


def run(*rows: dict, config: DetectionsConfig = DEFAULTS, baseline: Baseline | None = None) -> dict:
    f = FeatureStage(config, baseline=baseline).apply(frame(*rows))
    return f.features


def flags(values: np.ndarray) -> list[bool]:
    return [v is True for v in values.tolist()]


# --------------------------------------------------------------------------- sizes


def test_bytes_per_packet_per_direction_absent_when_nothing_sent() -> None:
    feats = run(flow(src_bytes=300, src_packets=3, dst_bytes=0, dst_packets=0))
    assert feats["bytes_per_packet.source"].tolist() == [100.0]
    assert np.isnan(feats["bytes_per_packet.destination"][0])


# --------------------------------------------------------------------------- DNS


def dns(packets: int, duration: float, **kw: object) -> dict:
    half = packets // 2
    values: dict = {"proto": 17, "dst_port": 53, **kw}
    return flow(src_packets=packets - half, dst_packets=half, duration=duration, **values)


def test_dns_floors_before_the_baseline_is_known() -> None:
    feats = run(dns(11, 2.0), dns(10, 2.0), dns(11, 1.0), dns(11, 1.01), dns(2, 0.0))
    assert flags(feats["dns.anomaly"]) == [True, False, False, True, False]
    assert feats["dns.bytes"].tolist() == [200] * 5  # both directions, for the volume rule
    assert np.isnan(feats["dns.packets_z"]).all()  # no baseline yet: no z-scores
    assert feats["dns.packet_rate"][0] == pytest.approx(5.5)


def test_dns_both_metrics_must_exceed_mean_plus_k_std() -> None:
    baseline = Baseline(
        {
            "dns.packets": MetricStats(100, 20.0, 100 * 5.0**2),
            "dns.duration": MetricStats(100, 2.0, 100 * 1.0**2),
        },
        fixed=True,
    )
    # thresholds: 20 + 3*5 = 35 packets, 2 + 3*1 = 5 s
    feats = run(dns(36, 5.5), dns(35, 5.5), dns(36, 5.0), dns(1000, 1.0), baseline=baseline)
    assert flags(feats["dns.anomaly"]) == [True, False, False, False]
    assert feats["dns.packets_z"][0] == pytest.approx(3.2)
    assert feats["dns.duration_z"][0] == pytest.approx(3.5)


def test_dns_max_difference_changes_the_threshold_and_is_overridable_per_network() -> None:
    baseline = Baseline(
        {"dns.packets": MetricStats(100, 20.0, 100 * 25.0), "dns.duration": MetricStats(100, 2.0, 100.0)},
        fixed=True,
    )
    config = replace(
        DEFAULTS,
        overrides=(DetectionOverrideConfig(networks=("10.9.0.0/16",), dns_max_difference=5.0),),
    )
    rows = [dns(40, 6.0), dns(40, 6.0, src_ip="10.9.1.1")]  # k=3: 35 / 5 s; k=5: 45 / 7 s
    assert flags(run(*rows, config=config, baseline=baseline)["dns.anomaly"]) == [True, False]


def test_dns_merged_requests_4_packets_over_4001_s_do_not_alert() -> None:
    """The research's false positive: two lookups minutes apart merged into one flow. With a
    baseline that puts both thresholds below it, only the packet rate keeps it quiet."""
    config = replace(DEFAULTS, dns=replace(DEFAULTS.dns, min_packets=1, min_duration=0.0))
    baseline = Baseline(
        {
            "dns.packets": MetricStats(1000, 2.0, 1000 * 0.25),
            "dns.duration": MetricStats(1000, 0.05, 1000 * 0.01),
        },
        fixed=True,
    )
    feats = run(dns(4, 4001.0), dns(4, 4.0), config=config, baseline=baseline)
    assert flags(feats["dns.anomaly"]) == [False, True]
    assert feats["dns.packet_rate"][0] == pytest.approx(4 / 4001)


def test_dns_tcp_and_other_ports_are_not_dns_tunnel_flows() -> None:
    feats = run(dns(5000, 30.0, proto=6), dns(5000, 30.0, dst_port=5353))
    assert "dns.anomaly" not in feats and "dns.bytes" not in feats


def test_online_baseline_learns_after_warm_up_from_normal_flows_only() -> None:
    config = replace(DEFAULTS, warmup_flows=50)
    stage = FeatureStage(config)
    normal = [dns(2, 0.01 * (i % 3)) for i in range(60)]
    stage.apply(frame(*normal, dns(5000, 30.0)))  # the tunnel is not learned
    stats = stage.baseline.stats("dns.packets")
    assert stats is not None and stats.count == 60 and stats.mean == 2.0
    # learned thresholds sit below the floors, so the floors still decide
    assert flags(stage.apply(frame(dns(11, 1.5), dns(9, 1.5))).features["dns.anomaly"]) == [True, False]


# --------------------------------------------------------------------------- ICMP


def echo(packets: int, size: int, icmp_type: int = 8, **kw: object) -> dict:
    values: dict = {"proto": 1, "src_port": ABSENT, "dst_port": ABSENT, "icmp_code": 0, **kw}
    return flow(
        icmp_type=icmp_type,
        src_packets=packets,
        src_bytes=packets * size,
        dst_packets=0,
        dst_bytes=0,
        **values,
    )


def test_icmp_echo_larger_than_ping_with_enough_packets() -> None:
    feats = run(echo(10, 85), echo(10, 84), echo(9, 1000), echo(4, 84), echo(20, 576, icmp_type=3))
    assert flags(feats["icmp_tunnel.oversize"]) == [True, False, False, False, False]
    assert feats["icmp_tunnel.bytes_per_packet"][0] == 85.0
    assert np.isnan(feats["icmp_tunnel.bytes_per_packet"][4])  # errors are not echo


def test_icmp_reply_direction_counts_and_windows_size_is_normal() -> None:
    reply_heavy = flow(
        proto=1,
        src_port=ABSENT,
        dst_port=ABSENT,
        icmp_type=8,
        src_packets=7,
        src_bytes=392,
        dst_packets=460,
        dst_bytes=487072,
    )
    assert flags(run(reply_heavy, echo(10, 60))["icmp_tunnel.oversize"]) == [True, False]


def test_icmpv6_echo_allows_the_longer_header() -> None:
    v6 = {"proto": 58, "is_v6": True, "src_ip": "fd00::5", "dst_ip": "2001:db8::7"}
    feats = run(echo(10, 104, icmp_type=128, **v6), echo(10, 105, icmp_type=128, **v6), echo(10, 105))
    assert flags(feats["icmp_tunnel.oversize"]) == [False, True, True]


def test_icmp_normal_size_per_network() -> None:
    config = replace(
        DEFAULTS,
        overrides=(DetectionOverrideConfig(networks=("10.1.0.0/16",), icmp_normal_bytes_per_packet=1500),),
    )
    feats = run(echo(10, 1028), echo(10, 1028, src_ip="10.1.2.3"), config=config)
    assert flags(feats["icmp_tunnel.oversize"]) == [True, False]


# --------------------------------------------------------------------------- scan


def test_unanswered_probes() -> None:
    rows = [
        flow(flags=0x02, dst_packets=1, dst_bytes=40),  # SYN answered by RST
        flow(flags=0x02, dst_packets=0, dst_bytes=0),  # SYN, no answer
        flow(flags=0x06, dst_packets=1),  # half-open: SYN, then RST after SYN-ACK
        flow(flags=0x1B),  # full connection
        flow(proto=17, flags=ABSENT, dst_packets=0, dst_bytes=0),  # UDP, no answer
        flow(proto=17, flags=ABSENT),  # UDP answered
        flow(proto=1, flags=ABSENT, dst_packets=0),  # ICMP is not a port probe
    ]
    assert flags(run(*rows)["scan.unanswered"]) == [True, True, True, False, True, False, False]


def test_replies_seen_without_their_request_are_not_probes() -> None:
    # A one-way exporter: the server's answers arrive as uniflows that found no partner.
    reply = {"src_ip": "198.51.100.1", "dst_ip": "10.0.0.1", "dst_packets": 0, "dst_bytes": 0, "biflow": 0}
    rows = [
        flow(**reply, src_port=443, dst_port=50000, flags=0x18),  # from a service port: a reply
        flow(**reply, src_port=40001, dst_port=50001, flags=0x12, initial_flags=0x12),  # starts with SYN+ACK
        flow(**reply, src_port=53, dst_port=50002, flags=0x02, initial_flags=0x02),  # bare SYN: a probe
        flow(**reply, src_port=50003, dst_port=443, flags=0x02),  # ephemeral to a service: a probe
        flow(**{**reply, "biflow": 2}, src_port=443, dst_port=50004, flags=0x02),  # stitched: oriented
    ]
    assert flags(run(*rows)["scan.unanswered"]) == [False, False, True, True, True]


def test_unanswered_excludes_configured_scanners() -> None:
    config = replace(DEFAULTS, scan=replace(DEFAULTS.scan, exclude_sources=("10.0.0.5/32",)))
    assert flags(run(flow(flags=2), flow(flags=2, src_ip="10.0.0.6"), config=config)["scan.unanswered"]) == [
        False,
        True,
    ]


# --------------------------------------------------------------------------- exfiltration


def test_exfil_bytes_the_internal_host_sent_whatever_the_initiator() -> None:
    rows = [
        flow(src_bytes=5000, dst_bytes=70),  # internal client uploads
        flow(
            src_ip="203.0.113.9",
            dst_ip="10.0.0.8",
            src_internal=False,
            dst_internal=True,
            src_bytes=80,
            dst_bytes=9000,
        ),  # external client downloads from an internal server
        flow(dst_ip="10.0.0.9", dst_internal=True),  # internal to internal
        flow(src_bytes=5000, dst_port=873),  # excluded port below
    ]
    config = replace(DEFAULTS, exfil=replace(DEFAULTS.exfil, exclude_ports=(873,)))
    feats = run(*rows, config=config)
    assert feats["exfil.host"].tolist() == ["10.0.0.5", "10.0.0.8", None, None]
    assert feats["exfil.bytes_out"].tolist() == [5000, 9000, ABSENT, ABSENT]


def test_exfil_excluded_networks_and_disabled_hosts() -> None:
    config = replace(
        DEFAULTS,
        exfil=replace(DEFAULTS.exfil, exclude_networks=("198.51.100.0/24",)),
        overrides=(DetectionOverrideConfig(networks=("10.0.0.6",), disable=("exfiltration",)),),
    )
    feats = run(
        flow(), flow(dst_ip="203.0.113.1"), flow(src_ip="10.0.0.6", dst_ip="203.0.113.1"), config=config
    )
    assert feats["exfil.host"].tolist() == [None, "10.0.0.5", None]


# --------------------------------------------------------------------------- beacon


def beacons(starts: list[float], size: int = 300, **kw: object) -> list[dict]:
    return [
        flow(**{"start": s, "src_port": 40000 + i, "src_bytes": size, "duration": 0.1, **kw})
        for i, s in enumerate(starts)
    ]


def test_beacon_regular_from_four_connections() -> None:
    assert flags(run(*beacons([0, 60, 120, 180]))["beacon.regular"]) == [True] * 4
    feats = run(*beacons([0, 60, 120]))
    assert flags(feats["beacon.regular"]) == [False] * 3  # three connections: below the minimum
    assert feats["beacon.connections"].tolist() == [3, 3, 3]


def test_beacon_irregular_intervals_or_sizes_do_not_score() -> None:
    rng = np.random.default_rng(7)
    random_gaps = np.cumsum(rng.uniform(2, 22, 12)).tolist()
    feats = run(*beacons(random_gaps))
    assert feats["beacon.score"][0] < 0.8
    sizes = [flow(start=60 * i, src_bytes=b) for i, b in enumerate([300, 4000, 900, 120000, 2500, 70])]
    assert not any(flags(run(*sizes)["beacon.regular"]))


def test_beacon_faster_than_min_interval_and_dns_are_not_beacons() -> None:
    assert not any(flags(run(*beacons([0.49 * i for i in range(10)]))["beacon.regular"]))
    assert all(flags(run(*beacons([0.5 * i for i in range(10)]))["beacon.regular"]))
    assert not any(flags(run(*beacons([60 * i for i in range(10)], dst_port=53, proto=17))["beacon.regular"]))


def test_fixed_port_udp_beacon_merged_into_long_flows() -> None:
    """softflowd merges a 5 s fixed-port UDP beacon into records of 14 and 10 packets."""
    rows = [
        flow(
            proto=17,
            dst_port=9999,
            src_packets=14,
            src_bytes=14 * 92,
            dst_packets=0,
            dst_bytes=0,
            duration=65.0,
        ),
        flow(
            proto=17,
            dst_port=9999,
            start=70.5,
            src_packets=10,
            src_bytes=920,
            dst_packets=0,
            dst_bytes=0,
            duration=45.0,
        ),
    ]
    feats = run(*rows)
    assert flags(feats["beacon.regular"]) == [True, True]
    assert feats["beacon.connections"].tolist() == [24, 24]
    assert feats["beacon.interval"][0] == pytest.approx(5.0, abs=0.01)
    # a long flow of unequal packets (bytes not a multiple of packets) is one connection
    odd = flow(proto=17, dst_port=9999, src_packets=14, src_bytes=14 * 92 + 5, dst_packets=0, duration=65.0)
    assert run(odd)["beacon.connections"].tolist() == [1]
    # one record alone is only an average spacing: not yet a beacon (nor is ping -c 4)
    assert flags(run(rows[0])["beacon.regular"]) == [False]
    ping = flow(
        proto=1,
        src_port=ABSENT,
        dst_port=ABSENT,
        icmp_type=8,
        src_packets=4,
        src_bytes=336,
        dst_packets=4,
        dst_bytes=336,
        duration=3.0,
    )
    ping_features = run(ping)
    assert ping_features["beacon.connections"].tolist() == [4] and flags(ping_features["beacon.regular"]) == [
        False
    ]


def test_beacon_history_survives_a_restart(tmp_path: Path) -> None:
    stage = FeatureStage(DEFAULTS, state_dir=tmp_path)
    stage.apply(frame(*beacons([0, 60])))
    stage.save()
    again = FeatureStage(DEFAULTS, state_dir=tmp_path)
    assert again.load()
    feats = again.apply(frame(*beacons([120, 180]))).features
    assert flags(feats["beacon.regular"]) == [True, True]
    assert feats["beacon.connections"].tolist() == [4, 4]


def test_beacon_pairs_are_bounded_least_recently_seen_evicted() -> None:
    config = replace(DEFAULTS, beacon=replace(DEFAULTS.beacon, max_pairs=2))
    stage = FeatureStage(config)
    stage.apply(frame(flow(dst_ip="198.51.100.1")))
    stage.apply(frame(flow(dst_ip="198.51.100.2")))
    stage.apply(frame(flow(dst_ip="198.51.100.3")))
    assert sorted(stage.beacon.pairs) == ["10.0.0.5 198.51.100.2 443 6", "10.0.0.5 198.51.100.3 443 6"]
    assert stage.beacon.evicted == 1
    # more new pairs in one batch than rows: the rows fill, the rest are not remembered
    feats = stage.apply(frame(*[flow(dst_ip=f"203.0.113.{i}") for i in range(5)])).features
    assert len(stage.beacon.pairs) == 2 and stage.beacon.evicted == 3
    assert (feats["beacon.connections"] == 1).sum() == 2 and (
        feats["beacon.connections"] == ABSENT
    ).sum() == 3


# --------------------------------------------------------------------------- application tunneling


def test_app_tunnel_without_dpi() -> None:
    rows = [
        flow(dst_port=53, duration=61.0),
        flow(dst_port=53, duration=59.0),
        flow(dst_port=53, src_bytes=1_000_001, src_packets=700, duration=0.3),
        flow(dst_port=53, src_bytes=1_000_000 - 100, duration=0.3),
        flow(dst_port=8080, src_packets=20, src_bytes=2400, dst_packets=20, dst_bytes=3000, duration=3.0),
        flow(dst_port=8080, src_packets=19, src_bytes=1900, dst_packets=20, dst_bytes=3000, duration=3.0),
        flow(
            dst_port=8080, src_packets=40, src_bytes=4000, dst_packets=800, dst_bytes=1_100_000, duration=3.0
        ),
        flow(dst_port=22, src_packets=50, src_bytes=5000, dst_packets=50, dst_bytes=5000, duration=30.0),
        flow(dst_port=53, src_packets=5, src_bytes=400, dst_packets=5, dst_bytes=900, duration=0.05),
    ]
    reasons = run(*rows)["app_tunnel.reason"].tolist()
    assert reasons == [
        "dns_tcp_long",
        None,
        "dns_tcp_volume",
        None,
        "interactive",
        None,
        None,
        None,
        None,
    ]


def test_app_tunnel_with_dpi() -> None:
    rows = [
        flow(dst_port=443, application="ssh"),
        flow(dst_port=22, application="ssh"),
        flow(dst_port=8080, application="http"),
        flow(dst_port=53, application="HTTP"),
        flow(dst_port=5000, application="something-unknown"),
    ]
    assert run(*rows)["app_tunnel.reason"].tolist() == [
        "application_port",
        None,
        None,
        "application_port",
        None,
    ]


# --------------------------------------------------------------------------- stage, config, baseline files


def test_stage_from_config_with_a_baseline_file_and_state(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    Baseline({"dns.packets": MetricStats(10, 2.0, 0.0)}, fixed=True).save(path)
    config = from_dict(Config, {"state_dir": str(tmp_path / "state"), "detections": {"baseline": str(path)}})
    stage = FeatureStage.from_config(config)
    assert stage.baseline.fixed and stage.baseline.metrics["dns.packets"].mean == 2.0
    stage.apply(frame(*beacons([0, 60])))
    stage.save()
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["beacon-history.npz"]


def test_bad_baseline_files_fail_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "b.json"
    bad.write_text(
        '{"format": "tunnelhound-baseline", "version": 1, "metrics": {"dns.packets": {"mean": 1}}}'
    )
    with pytest.raises(
        BaselineError, match=r"b.json: metric 'dns.packets': needs numeric count, mean and std"
    ):
        Baseline.load(bad)
    bad.write_text("[]")
    with pytest.raises(BaselineError, match="not a tunnelhound-baseline file"):
        Baseline.load(bad)


def test_disabled_stage_adds_nothing() -> None:
    assert FeatureStage(replace(DEFAULTS, enabled=False)).apply(frame(flow())).features == {}


def test_vectorized_regularity_equals_the_per_row_formula() -> None:
    from tunnelhound.features.beacon import SKEW_TOLERANCE, regularity

    rng = np.random.default_rng(3)
    rows = [rng.uniform(1, 30, k) for k in (2, 3, 4, 7, 12, 64)] + [
        np.full(5, 9.0),
        np.array([90.0, 91, 90, 91]),
    ]
    padded = np.full((len(rows), 64), np.nan)
    for i, r in enumerate(rows):
        padded[i, : len(r)] = np.sort(r)
    for i, r in enumerate(rows):
        q1, q2, q3 = np.percentile(r, (25, 50, 75))
        skew = (q3 + q1 - 2 * q2) / (q3 - q1) if q3 - q1 > SKEW_TOLERANCE * q2 else 0.0
        madm = np.median(np.abs(r - q2))
        expected = min(1 - abs(skew), 1 - min(1.0, madm / q2))
        assert regularity(padded)[i] == pytest.approx(expected), i


def test_beacon_score_takes_quantiles_of_the_intervals_in_order() -> None:
    """Intervals between sorted connection times are not themselves sorted; the median interval
    and the regularity must be those of the sorted intervals (numpy's own, per row)."""
    from tunnelhound.features.beacon import regularity, score

    rng = np.random.default_rng(11)
    rows = [np.cumsum(rng.choice([1.0, 5.0, 60.0], k)) for k in (3, 4, 6, 9, 20)]
    times = np.full((len(rows), 20), np.nan)
    for i, r in enumerate(rows):
        times[i, : len(r)] = rng.permutation(r)
    sizes = np.full_like(times, np.nan)
    sizes[~np.isnan(times)] = 100.0
    value, median = score(times, sizes)
    for i, r in enumerate(rows):
        intervals = np.diff(np.sort(r))
        assert median[i] == pytest.approx(np.median(intervals)), i
        padded = np.full((1, 20), np.nan)
        padded[0, : len(intervals)] = np.sort(intervals)
        assert value[i] == pytest.approx(regularity(padded)[0]), i


@pytest.mark.parametrize("capture", ["netflow_v5.pcap", "netflow_v9.pcap", "ipfix.pcap"])
def test_lab_documents_with_features_fit_the_field_list_and_encode_alike(capture: str) -> None:
    import orjson

    from fieldlist import declared, problems
    from replay import DATA
    from tunnelhound.decode.decoder import Decoder
    from tunnelhound.normalize.biflow import BiflowStitcher
    from tunnelhound.normalize.ecs import Normalizer
    from tunnelhound.normalize.frame import FlowFrame, encode_ndjson
    from tunnelhound.sources.files import iter_replay

    decoder, normalizer, stitcher = Decoder(), Normalizer(), BiflowStitcher()
    stage = FeatureStage(DEFAULTS)
    frames = []
    for dg in iter_replay([str(DATA / "lab" / capture)]):
        frames.append(stage.apply(stitcher.push(normalizer.frames(decoder.decode(dg).flows))))
    frames.append(stage.apply(stitcher.flush()))
    lab = FlowFrame.concat(frames)
    exact, _ = declared("flow.yml")
    assert {f"tunnelhound.{name}" for name in lab.features} <= set(exact)
    docs = lab.documents()
    assert sorted({p for doc in docs for p in problems(doc)}) == []
    assert [orjson.loads(line) for line in encode_ndjson(lab)] == docs
    flagged = {
        (d["source"]["ip"], k)
        for d in docs
        for k, v in d["tunnelhound"].items()
        if isinstance(v, dict)
        and (v.get("anomaly") or v.get("oversize") or v.get("regular") or v.get("reason"))
    }
    assert {host for host, _ in flagged} == {f"10.77.1.{i}" for i in (65, 66, 67, 70, 71, 72, 73)}


def test_beacon_pairs_keep_their_order_and_missing_addresses_across_a_restart(tmp_path: Path) -> None:
    """New pairs of a batch take rows in the order of their pair hashes (of the address texts:
    the same in every process; a missing address hashes apart from every text), are saved in
    the order they came and are found again after a restart."""
    stage = FeatureStage(DEFAULTS, state_dir=tmp_path)
    stage.apply(frame(*beacons([0, 60], dst_ip="198.51.100.9"), *beacons([0, 60], src_ip=None)))
    stage.apply(frame(*beacons([0], dst_ip="198.51.100.1")))
    first = ["10.0.0.5 198.51.100.9 443 6", "None 198.51.100.7 443 6"]
    hashes = pair_hashes(
        Columns({"a": np.array(["10.0.0.5", None], dtype=object)}).hashes("a"),
        Columns({"a": np.array(["198.51.100.9", "198.51.100.7"], dtype=object)}).hashes("a"),
        np.array([443, 443]),
        np.array([6, 6]),
    )
    pairs = {key: row for row, key in enumerate([first[i] for i in np.argsort(hashes).tolist()])}
    pairs["10.0.0.5 198.51.100.1 443 6"] = 2
    assert list(stage.beacon.pairs.items()) == list(pairs.items())
    stage.save()
    again = FeatureStage(DEFAULTS, state_dir=tmp_path)
    assert again.load()
    assert list(again.beacon.pairs.items()) == list(pairs.items())
    feats = again.apply(frame(*beacons([120, 180], src_ip=None))).features
    assert feats["beacon.connections"].tolist() == [4, 4]
    assert flags(feats["beacon.regular"]) == [True, True]
