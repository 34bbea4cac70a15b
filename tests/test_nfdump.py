"""nfdump archives: a real nfcapd collects the lab NetFlow v9 export over loopback, and
`tunnelhound replay` of its file gives the flows and the alerts of replaying the export itself
(issue 8, acceptance 2)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from lab_replay import replay_alerts
from replay import DATA
from tunnelhound.cli import main
from tunnelhound.decode.decoder import Decoder
from tunnelhound.errors import SourceError
from tunnelhound.features import Baseline
from tunnelhound.normalize.ecs import Normalizer
from tunnelhound.sources.files import iter_replay, iter_replay_items, sniff_format
from tunnelhound.sources.nfdump import (
    NfdumpStats,
    _parse_objects,
    is_nfcapd,
    iter_nfdump_chunks,
    iter_nfdump_records,
    record_from_json,
)

V9 = DATA / "lab" / "netflow_v9.pcap"
RECORDS = 3375  # flow records in the lab export (tests/data/lab/README.md)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def nfcapd_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab v9 export, sent over UDP to a real nfcapd on 127.0.0.1, as nfcapd wrote it."""
    workdir = tmp_path_factory.mktemp("nfcapd")
    flows = workdir / "flows"
    flows.mkdir()
    port = free_udp_port()
    log = (workdir / "nfcapd.log").open("w+")
    proc = subprocess.Popen(
        ["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", str(flows), "-t", "3600"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while not any(flows.iterdir()):  # nfcapd.current.<pid> appears once it listens
            assert proc.poll() is None and time.monotonic() < deadline, "nfcapd did not start"
            time.sleep(0.05)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for i, datagram in enumerate(iter_replay([str(V9)])):
                sender.sendto(datagram.data, ("127.0.0.1", port))
                if i % 16 == 15:
                    time.sleep(0.005)  # paced: loopback drops a burst larger than the socket buffer
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    log.seek(0)
    summary = log.read()
    assert f"Flows: {RECORDS}," in summary, summary
    (archive,) = [p for p in flows.iterdir() if p.name.startswith("nfcapd.2")]
    return archive


def replay_documents(path: Path, tmp_path: Path, name: str) -> list[dict[str, Any]]:
    out = tmp_path / name
    assert main(["replay", str(path), "-o", str(out), "--state-dir", str(tmp_path / f"{name}-state")]) == 0
    return [json.loads(line) for f in sorted(out.iterdir()) for line in f.read_text().splitlines()]


def flow_key(doc: dict[str, Any]) -> tuple[Any, ...]:
    src, dst, th = doc["source"], doc["destination"], doc["tunnelhound"]
    return (
        src["ip"],
        src.get("port", -1),
        dst["ip"],
        dst.get("port", -1),
        doc["network"]["iana_number"],
        src["bytes"],
        src["packets"],
        dst["bytes"],
        dst["packets"],
        doc["event"]["start"],
        doc["event"]["end"],
        json.dumps(th.get("icmp")),
        th["biflow"],
        doc["network"]["community_id"],
        doc["flow"]["id"],
        doc["observer"]["ip"],
    )


def test_replay_of_the_nfcapd_file_gives_the_flows_of_the_export(nfcapd_file: Path, tmp_path: Path) -> None:
    archived = replay_documents(nfcapd_file, tmp_path, "nfcapd")
    direct = replay_documents(V9, tmp_path, "export")
    assert len(archived) == len(direct) == 1919  # after biflow stitching, both ways
    assert sorted(map(flow_key, archived)) == sorted(map(flow_key, direct))
    assert sum(d["tunnelhound"]["biflow"] == "stitched" for d in archived) == RECORDS - 1919
    doc = next(d for d in archived if d["network"]["transport"] == "tcp")
    assert doc["netflow"]["exporter"] == {"address": "127.0.0.1"}
    assert isinstance(doc["netflow"]["tcp_control_bits"], int)
    ids = [d["event"]["id"] for d in archived]
    assert len(set(ids)) == len(ids)
    again = replay_documents(nfcapd_file, tmp_path, "nfcapd-again")
    assert [d["event"]["id"] for d in again] == ids  # replaying an archive twice writes no duplicates


def alert_key(alert: dict[str, Any]) -> tuple[Any, ...]:
    event = alert["event"]
    return (
        alert["rule"]["name"],
        alert["source"]["ip"],
        alert["destination"]["ip"],
        event["start"],
        event["end"],
        event["reason"],
        alert["tunnelhound"]["alert"]["evidence"]["flow_count"],
        alert["tunnelhound"]["threat_index"]["value"],
    )


def test_replay_of_the_nfcapd_file_raises_the_alerts_of_the_export(nfcapd_file: Path, tmp_path: Path) -> None:
    archived = replay_alerts(tmp_path, nfcapd_file, "nfcapd", state="nfcapd-state")
    direct = replay_alerts(tmp_path, V9, "export", state="export-state")
    assert len(direct) == 13  # tests/test_lab_detections.py: every malicious scenario
    assert sorted(map(alert_key, archived)) == sorted(map(alert_key, direct))

    def evidence(run: str, alerts: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """Each alert with the flows its evidence names (by content: archived flows have
        event ids of their own)."""
        docs = [json.loads(line) for f in (tmp_path / run).glob("flows-*.ndjson") for line in f.open()]
        flows = {d["event"]["id"]: flow_key(d) for d in docs}
        return sorted(
            (alert_key(a), sorted(flows[i] for i in a["tunnelhound"]["alert"]["evidence"]["flow_event_ids"]))
            for a in alerts
        )

    assert evidence("nfcapd", archived) == evidence("export", direct)


def test_records_match_the_decoded_export_one_for_one(nfcapd_file: Path) -> None:
    """Per uniflow (before stitching): times to the ms, counters and TCP flags."""
    decoder = Decoder()
    frame = Normalizer().frames([b for dg in iter_replay([str(V9)]) for b in decoder.decode(dg).flows])
    c = {name: col.tolist() for name, col in frame.cols.items()}
    direct = sorted(
        (c["src_ip"][i], c["src_port"][i], c["dst_ip"][i], c["dst_port"][i], c["proto"][i], c["start_ns"][i],
         c["end_ns"][i], c["src_bytes"][i], c["src_packets"][i], c["flags"][i], c["icmp_type"][i], c["icmp_code"][i])
        for i in range(frame.n)
    )  # fmt: skip
    stats = NfdumpStats()
    archived = sorted(
        (r.src_ip, r.src_port if r.src_port is not None else -1, r.dst_ip, r.dst_port if r.dst_port is not None
         else -1, r.proto, r.start_ns, r.end_ns, r.src_bytes, r.src_packets, r.flags if r.flags is not None
         else -1, r.icmp_type if r.icmp_type is not None else -1, r.icmp_code if r.icmp_code is not None else -1)
        for r in iter_nfdump_records(nfcapd_file, stats)
    )  # fmt: skip
    assert len(archived) == len(direct) == RECORDS
    assert archived == direct
    assert stats.records == RECORDS and stats.bad_records == {}
    assert [len(chunk) for chunk in iter_nfdump_chunks(nfcapd_file, size=1000)] == [1000, 1000, 1000, 375]


def test_nfcapd_files_are_told_apart_by_magic(nfcapd_file: Path, tmp_path: Path) -> None:
    assert sniff_format(nfcapd_file) == "nfcapd"
    assert sniff_format(V9) == "pcap"
    assert is_nfcapd(b"\x0c\xa5\x02\x00") and not is_nfcapd(b"\x0c\xa5\x09\x00")
    with pytest.raises(SourceError, match="holds flow records, not datagrams"):
        next(iter_replay([str(nfcapd_file)]))
    items = list(iter_replay_items([str(V9), str(nfcapd_file)]))
    assert sum(isinstance(i, list) for i in items) == 1 and len(items[-1]) == RECORDS


def test_truncated_archive_is_a_clear_error(
    nfcapd_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = tmp_path / "nfcapd.truncated"
    cut.write_bytes(nfcapd_file.read_bytes()[:3000])
    with pytest.raises(SourceError, match=r"nfdump cannot read it: Open file .*error"):
        list(iter_nfdump_records(cut))
    assert main(["replay", str(cut), "-o", str(tmp_path / "out"), "--state-dir", str(tmp_path / "s")]) == 1
    assert "nfcapd.truncated: nfdump cannot read it" in capsys.readouterr().err


def test_missing_nfdump_is_a_clear_error(
    nfcapd_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without nfdump
    with pytest.raises(SourceError, match=r"nfdump not found on PATH; install the 'nfdump' package"):
        list(iter_nfdump_records(nfcapd_file))
    assert (
        main(["replay", str(nfcapd_file), "-o", str(tmp_path / "out"), "--state-dir", str(tmp_path / "s")])
        == 1
    )
    assert "apt install nfdump" in capsys.readouterr().err


def test_biflow_ipv6_and_icmp_records_from_nfdump_json() -> None:
    nsel = {
        "type": "FLOW", "export_sysid": 3, "first": "2026-01-31T23:59:59.999", "last": "2026-02-01T00:00:01.001",
        "in_packets": 5, "in_bytes": 600, "out_packets": 4, "out_bytes": 3000, "proto": 6,
        "tcp_flags": "...AP.S.", "src_port": 51000, "dst_port": 443, "src6_addr": "2001:db8::10",
        "dst6_addr": "2001:db8:1::1", "src_mask": 64, "input_snmp": 3, "ip6_router": "2001:db8::fe",
    }  # fmt: skip
    r = record_from_json(nsel, 7)
    assert (r.start_ns, r.end_ns) == (1769903999999_000_000, 1769904001001_000_000)
    assert (r.src_bytes, r.src_packets, r.dst_bytes, r.dst_packets, r.biflow) == (600, 5, 3000, 4, True)
    assert r.flags == 0x1A and r.observer_ip == "2001:db8::fe"
    assert json.loads("{" + (r.netflow or "") + "}") == {
        "exporter": {"address": "2001:db8::fe"},
        "tcp_control_bits": 0x1A,
        "ingress_interface": 3,
        "source_ipv6_prefix_length": 64,
    }
    ping = {"first": "2026-01-01T00:00:00.000", "last": "2026-01-01T00:00:00.000", "in_packets": 1,
            "in_bytes": 84, "proto": 1, "icmp_type": 8, "icmp_code": 0, "src4_addr": "10.0.0.1",
            "dst4_addr": "10.0.0.2", "tcp_flags": "0x00"}  # fmt: skip
    p = record_from_json(ping, 0)
    assert (p.src_port, p.icmp_type, p.icmp_code, p.biflow, p.observer_ip) == (None, 8, 0, False, "0.0.0.0")
    assert p.identity != record_from_json(ping, 1).identity  # position in the file is part of it
    with pytest.raises(KeyError):
        record_from_json({k: v for k, v in ping.items() if k != "src4_addr"}, 0)
    with pytest.raises(ValueError):
        record_from_json({**ping, "in_bytes": "many"}, 0)


def test_a_record_nfdump_did_not_escape_costs_only_itself() -> None:
    good = b'{\n\t"proto" : 6,\n\t"in_bytes" : 1\n}'
    bad = b'{\n\t"user_name" : "a"b",\n\t"in_bytes" : 2\n}'
    assert _parse_objects(good + b",\n" + good) == [{"proto": 6, "in_bytes": 1}] * 2
    assert _parse_objects(good + b",\n" + bad + b",\n" + good) == [
        {"proto": 6, "in_bytes": 1},
        None,
        {"proto": 6, "in_bytes": 1},
    ]


def test_baseline_build_learns_the_same_baseline_from_the_archive(nfcapd_file: Path, tmp_path: Path) -> None:
    from_archive, from_export = tmp_path / "archive.json", tmp_path / "export.json"
    assert main(["baseline", "build", str(nfcapd_file), "-o", str(from_archive)]) == 0
    assert main(["baseline", "build", str(DATA / "lab" / "netflow_v9.pcap"), "-o", str(from_export)]) == 0
    archive, export = Baseline.load(from_archive).metrics, Baseline.load(from_export).metrics
    assert sorted(archive) == sorted(export) == ["dns.duration", "dns.packets", "icmp.bytes_per_packet"]
    for name, stats in export.items():
        assert (archive[name].count, archive[name].mean) == (stats.count, pytest.approx(stats.mean)), name
