"""Issue 7, acceptance 3 and 6 with the real detections: `tunnelhound run` fed over loopback UDP.

The collector runs the built-in Sigma rules (``tunnelhound.detection``) in its analysis stage
and writes alerts to an NDJSON alert sink; /metrics is read with prometheus_client's parser.
Every wait is bounded.
"""

from __future__ import annotations

import json
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from collector import Collector, exporter, send
from replay import DATA
from tunnelhound.rules.engine import STATE_VERSION
from tunnelhound.sources.files import iter_replay

LAB_V9 = DATA / "lab" / "netflow_v9.pcap"
# What `tunnelhound replay` reports for the capture (its decoding is checked against tshark in
# test_decoder_vs_tshark.py and test_lab_detections.py checks the alerts against the labels).
LAB_V9_DATAGRAMS, LAB_V9_RECORDS, LAB_V9_OPTIONS, LAB_V9_DOCUMENTS = 184, 3375, 12, 1919
LAB_V9_ALERTS = {
    "app_tunnel_flow": 2,
    "beacon_regular": 3,
    "dns_tunnel_flow": 2,
    "dns_tunnel_volume": 2,
    "exfiltration_volume": 1,
    "icmp_tunnel_flow": 1,
    "port_scan_vertical": 2,
}
BAD = {  # reason -> datagrams that are rejected whole, before any record
    "truncated_header": [b"\x00\x09\x00\x01"] * 3,  # a v9 header cut short
    "bad_version": [b"\x00\x07" + b"\x00" * 22] * 2,
    "bad_message_length": [struct.pack("!HHIII", 10, 5, 0, 0, 0)],  # IPFIX, shorter than its header
}

# A one-template NetFlow v9 export for hand-made flows.
_TEMPLATE_ID = 300
_FIELDS = ((8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (1, 4), (2, 4), (22, 4), (21, 4))
_RECORD = struct.Struct(
    "!4s4sHHBBIIII"
)  # src, dst, sport, dport, proto, tcp flags, bytes, packets, first, last
_UPTIME_MS = 86_400_000  # the exporter has been up a day at every export


def v9_datagram(flows: list[dict[str, Any]], export_s: int, *, source_id: int, sequence: int = 0) -> bytes:
    """One v9 datagram: the template, then ``flows`` (src, dst, sport, dport, proto, flags,
    bytes, packets, start and end in Unix seconds); packets of a flow with no ACK are probes."""
    fields = b"".join(struct.pack("!HH", t, n) for t, n in _FIELDS)
    template = struct.pack("!HHHH", 0, 8 + len(fields), _TEMPLATE_ID, len(_FIELDS)) + fields

    def uptime(t: float) -> int:
        return _UPTIME_MS - int((export_s - t) * 1000)

    records = b"".join(
        _RECORD.pack(
            bytes(int(x) for x in f["src"].split(".")),
            bytes(int(x) for x in f["dst"].split(".")),
            f.get("sport", 40000), f["dport"], f.get("proto", 6), f.get("flags", 0x02),
            f.get("bytes", 60), f.get("packets", 1), uptime(f["start"]), uptime(f["end"]),
        )
        for f in flows
    )  # fmt: skip
    padding = -len(records) % 4
    data = struct.pack("!HH", _TEMPLATE_ID, 4 + len(records) + padding) + records + b"\0" * padding
    header = struct.pack("!HHIIII", 9, len(flows) + 1, _UPTIME_MS, export_s, sequence, source_id)
    return header + template + data


def alert_counts(directory: Path) -> Counter[str]:
    """Alerts per rule name in the NDJSON alert files of ``directory``."""
    return Counter(a["rule"]["name"] for a in alert_docs(directory))


def alert_docs(directory: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for f in sorted(directory.glob("alerts-*.ndjson"))
        for line in f.read_text().splitlines()
    ]


def alerts_sink(directory: Path) -> str:
    return f"alerts:\n  ndjson_enabled: true\n  ndjson:\n    path: {directory}\n"


def metric_alerts(run: Collector) -> dict[str, float]:
    return {
        dict(labels)["rule"]: value
        for (name, labels), value in run.scrape().items()
        if name == "tunnelhound_alerts_total"
    }


# ---------------------------------------------------------------------------- acceptance 3


def _lab_run(tmp: Path, bad: list[bytes]) -> tuple[Collector, dict[str, float], Counter[str], str]:
    """Send the lab v9 capture (``bad`` datagrams spread through it) to a one-worker collector,
    then a flow a day later that moves flow time on: the stitcher releases the flows still
    waiting for a partner, as it would in a live run.  /metrics is read before the stop."""
    alerts = tmp / "alerts"
    run = Collector(tmp, workers=1, stage=False, biflow=True, extra=alerts_sink(alerts))
    datagrams = [d.data for d in iter_replay([LAB_V9])]
    assert len(datagrams) == LAB_V9_DATAGRAMS
    step = len(datagrams) // (len(bad) + 1)
    for i, data in enumerate(bad):
        datagrams.insert((i + 1) * step + i, data)
    last = max(struct.unpack_from("!I", d, 8)[0] for d in datagrams if d[:2] == b"\x00\x09" and len(d) >= 20)
    clock = {
        "src": "10.250.0.1",
        "dst": "10.250.0.2",
        "dport": 443,
        "start": last + 86_400,
        "end": last + 86_400,
    }
    try:
        with exporter("127.0.0.1") as a:
            send(a, datagrams, run.port)
            run.wait_for("tunnelhound_records_total", LAB_V9_RECORDS, exporter="127.0.0.1")
            send(a, [v9_datagram([clock], last + 86_400, source_id=99)], run.port)
            run.wait_for("tunnelhound_records_total", LAB_V9_RECORDS + 1, exporter="127.0.0.1")
        # Every lab flow reached the rules: all but the clock flow, which waits for its partner.
        run.wait_for("tunnelhound_analysis_rows_total", LAB_V9_DOCUMENTS)
        run.wait_for("tunnelhound_alerts_total", sum(LAB_V9_ALERTS.values()))
        metrics = run.scrape()
    finally:
        err = run.stop()
    values: dict[str, float] = {}
    for (name, labels), value in metrics.items():
        key = name + "".join(f",{k}={v}" for k, v in sorted(labels))
        values[key] = value
    return run, values, alert_counts(alerts), err


@pytest.mark.parametrize("bad", ["none", "mixed"])
def test_metrics_after_replaying_the_lab_capture_over_udp(tmp_path: Path, bad: str) -> None:
    garbage = [d for group in BAD.values() for d in group] if bad == "mixed" else []
    run, m, alerts, err = _lab_run(tmp_path, garbage)
    assert m["tunnelhound_datagrams_total,exporter=127.0.0.1"] == LAB_V9_DATAGRAMS + len(garbage) + 1
    assert m["tunnelhound_records_total,exporter=127.0.0.1"] == LAB_V9_RECORDS + 1
    assert m["tunnelhound_options_records_total,exporter=127.0.0.1"] == LAB_V9_OPTIONS
    errors = {
        k.split("reason=")[1]: v for k, v in m.items() if k.startswith("tunnelhound_decode_errors_total")
    }
    assert errors == ({reason: len(group) for reason, group in BAD.items()} if garbage else {})
    assert m.get("tunnelhound_template_misses_total,exporter=127.0.0.1", 0) == 0  # no series: none
    assert m.get("tunnelhound_kernel_drops_total,worker=0") == 0
    assert m["tunnelhound_analysis_rows_total,worker=0"] == LAB_V9_DOCUMENTS
    by_rule = {k.split("rule=")[1]: v for k, v in m.items() if k.startswith("tunnelhound_alerts_total")}
    assert by_rule == LAB_V9_ALERTS
    assert m["tunnelhound_rule_state_entries,stage=rules"] == m["tunnelhound_rules_groups,stage=rules"] > 0
    assert m["tunnelhound_rules_loaded,stage=rules"] >= len(LAB_V9_ALERTS)
    assert m["tunnelhound_rules_evicted_groups_total,stage=rules"] == 0
    assert m["tunnelhound_rules_state_errors_total,stage=rules"] == 0
    # The alert sink got the same alerts; the clock flow, flushed at the stop, added none.
    assert alerts == LAB_V9_ALERTS
    assert len(run.documents()) == LAB_V9_DOCUMENTS + 1
    assert "errors: none" in err if not garbage else "errors: none" not in err


def test_run_stopped_after_the_capture_ends_with_the_alerts_of_replay(tmp_path: Path) -> None:
    """No later flow: when the input ends, some flows (14 or 15, depending on how datagrams
    fell into batches) still wait in the stitcher for a partner until 30 s of flow time pass,
    and one of them raises the third ``beacon_regular`` alert, so /metrics shows fewer alerts
    than replay.  SIGTERM flushes the stitcher into the analysis: the alert sink ends with
    replay's 13.  Windows still open are persisted, not judged (a restart continues them;
    ``replay`` judges them at its end, and here none is left to fire)."""
    alerts = tmp_path / "alerts"
    run = Collector(tmp_path, workers=1, stage=False, biflow=True, extra=alerts_sink(alerts))
    try:
        with exporter("127.0.0.1") as a:
            send(a, [d.data for d in iter_replay([LAB_V9])], run.port)
        run.wait_for("tunnelhound_records_total", LAB_V9_RECORDS, exporter="127.0.0.1")
        deadline = time.monotonic() + 30
        before: tuple[float, ...] = ()
        while True:  # idle: every document written was analysed, and nothing moves any more
            time.sleep(0.3)
            rows = run.value("tunnelhound_analysis_rows_total")
            now = (rows, run.value("tunnelhound_documents_total"), run.value("tunnelhound_alerts_total"))
            if now == before and rows == now[1]:
                break
            before = now
            assert time.monotonic() < deadline, "the collector did not settle"
        running = metric_alerts(run)
    finally:
        run.stop()
    assert 0 < LAB_V9_DOCUMENTS - rows <= 20  # waiting for a partner
    assert sum(running.values()) < sum(LAB_V9_ALERTS.values())
    assert all(n <= LAB_V9_ALERTS[rule] for rule, n in running.items()), running
    assert alert_counts(alerts) == LAB_V9_ALERTS
    assert len(run.documents()) == LAB_V9_DOCUMENTS
    state = json.loads((tmp_path / "state" / "rules-state.json").read_text())
    assert state["version"] == STATE_VERSION and state["windows"]


# ---------------------------------------------------------------------------- acceptance 6

SCANNER, TARGET = "10.66.0.5", "10.77.0.9"


def _probe(src: str, port: int, t: float) -> dict[str, Any]:
    return {"src": src, "dst": TARGET, "dport": port, "start": t, "end": t}


def test_two_workers_a_scan_through_two_exporters_raises_one_alert(tmp_path: Path) -> None:
    """20 unanswered ports of one host, 10 through each of two exporters that the kernel hands
    to different workers: neither worker alone sees the 15 distinct ports the rule needs; the
    one analysis process sees all 20 and alerts once."""
    alerts = tmp_path / "alerts"
    t0 = 1_795_440_000
    run = Collector(tmp_path, workers=2, stage=False, extra=alerts_sink(alerts))
    sockets = []
    try:
        a = exporter("127.0.0.1")
        sockets.append(a)
        send(
            a,
            [v9_datagram([_probe(SCANNER, p, t0 + p) for p in range(1, 11)], t0 + 11, source_id=1)],
            run.port,
        )
        run.wait_for("tunnelhound_documents_total", 10)
        worker_a = next(w for w in "01" if run.value("tunnelhound_documents_total", worker=w) == 10)
        # Exporter B: a source port the kernel hashes to the other worker.  Each candidate
        # announces itself with one probe of a host of its own (never enough for any rule).
        on_a = 10
        for n in range(1, 41):
            b = exporter("127.0.0.2")
            sockets.append(b)
            probe = _probe(f"10.88.0.{n}", 22, t0 + 12)
            send(b, [v9_datagram([probe], t0 + 12, source_id=2)], run.port)
            run.wait_for("tunnelhound_documents_total", 10 + n)
            if (got := run.value("tunnelhound_documents_total", worker=worker_a)) == on_a:
                break
            on_a = got
        else:
            raise AssertionError("40 source ports all hashed to one worker")
        sent = 10 + n
        send(b, [v9_datagram([_probe(SCANNER, p, t0 + p) for p in range(11, 21)], t0 + 21, source_id=2, sequence=1)],
             run.port)  # fmt: skip
        # Flow time moves past the scan's windows (60 s of lateness): they are judged.
        send(
            b, [v9_datagram([_probe("10.88.1.1", 22, t0 + 300)], t0 + 300, source_id=2, sequence=2)], run.port
        )
        run.wait_for("tunnelhound_analysis_rows_total", sent + 11)
        run.wait_for("tunnelhound_documents_total", sent + 11)  # the workers' snapshots come later
        run.wait_for("tunnelhound_alerts_total", 1, rule="port_scan_vertical")
        per_worker = {w: run.value("tunnelhound_documents_total", worker=w) for w in "01"}
    finally:
        for s in sockets:
            s.close()
        run.stop()
    # Worker A decoded the first 10 probes (and candidates that hashed to it), the other the rest.
    assert per_worker[worker_a] == on_a and sum(per_worker.values()) == sent + 11
    scans = [a for a in alert_docs(alerts) if a["rule"]["name"] == "port_scan_vertical"]
    assert len(scans) == 1
    assert scans[0]["source"]["ip"] == SCANNER and scans[0]["destination"]["ip"] == TARGET
    assert alert_counts(alerts) == {"port_scan_vertical": 1}
    # Its evidence: the 20 probes, 10 decoded by each worker.
    docs = [d for d in run.documents() if d["source"]["ip"] == SCANNER]
    assert sorted(d["destination"]["port"] for d in docs) == list(range(1, 21))
    assert Counter(d["observer"]["ip"] for d in docs) == {"127.0.0.1": 10, "127.0.0.2": 10}


def test_the_rule_state_cap_evicts_and_metrics_count_it(tmp_path: Path) -> None:
    """``rules.max_groups: 4``: probes from 10 hosts to one port of one host make 10 groups
    in each scan correlation; the 6 oldest of each are evicted and counted."""
    t0 = 1_795_440_000
    run = Collector(tmp_path, workers=1, stage=False, extra="rules:\n  max_groups: 4\n")
    probes = [_probe(f"10.66.1.{n}", 445, t0 + n) for n in range(1, 11)]
    try:
        with exporter("127.0.0.1") as a:
            send(a, [v9_datagram(probes, t0 + 11, source_id=1)], run.port)
        run.wait_for("tunnelhound_analysis_rows_total", 10)
        run.wait_for("tunnelhound_rules_evicted_groups_total", 2 * 6, stage="rules")
        assert run.value("tunnelhound_rule_state_entries", stage="rules") == 2 * 4
        assert run.value("tunnelhound_rules_groups", stage="rules") == 2 * 4
    finally:
        run.stop()
