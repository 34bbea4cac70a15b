"""Smoke test of bench/pipeline.py: the whole chain runs on a small paired stream, prints its
figures, pairs the records it should, and raises only the alerts such traffic can raise.

Not a timing test: the rates only have to be there and be positive.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDS = 30_000
STAGES = ("decode", "normalize", "stitch", "features", "rules", "alerts")
# What random traffic of a busy border router may set off: popular external hosts probing many
# internal ones, small-packet sessions on web ports, pairs that happen to look regular, and the
# threat index of a host with several of those. Never DNS or ICMP tunnels or exfiltration:
# the stream's DNS is one datagram each way and no host sends 20 MB in its 1.5 s.
PLAUSIBLE = {
    "port_scan_horizontal",
    "port_scan_vertical",
    "app_tunnel_flow",
    "beacon_regular",
    "threat_index_high",
}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "sidecar")}
    command = [
        sys.executable,
        str(ROOT / "bench" / "pipeline.py"),
        "--records",
        str(RECORDS),
        "--repeat",
        "1",
    ]
    return subprocess.run(
        [*command, "--warm-up", "0", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
        check=False,
    )


def test_pipeline_bench_reports_every_stage_and_sane_alerts() -> None:
    done = run("--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report["streams"]) == {"v9", "ipfix"}
    for name, result in report["streams"].items():
        assert result["records"] == RECORDS, name
        assert result["rules"] == 13, "every built-in rule and correlation"
        assert result["records_per_second"] > 0 and result["cpu_seconds"] > 0
        assert set(result["us_per_record"]) == set(STAGES)
        assert all(cost > 0 for cost in result["us_per_record"].values()), result["us_per_record"]
        # Every answered request meets its response: ~97 % of records pair, ~6 % of TCP/UDP
        # conversations go unanswered (SYN-only attempts, lost UDP requests).
        assert 0.95 < result["records_paired"] <= 1.0, result["records_paired"]
        assert RECORDS * 0.5 < result["flows"] < RECORDS * 0.55
        assert 0.03 < result["unanswered_ratio"] < 0.1, result["unanswered_ratio"]
        assert set(result["detections"]) <= PLAUSIBLE, result["detections"]
        assert 0 < result["alerts"] == sum(result["detections"].values()) < RECORDS / 500
        assert 0 < result["alert_hosts"] <= result["alerts"]
        assert set(result["severities"]) <= {21, 47, 73, 99}


def test_pipeline_bench_prints_a_table() -> None:
    done = run("--stream", "v9", "--records", "5000")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("records/s (best)") for line in lines)
    for stage in STAGES:
        assert any(line.split()[:2] == ["µs/record", stage] for line in lines), stage
    assert lines[-1].startswith("target ≥ 200,000 records/s on one core: ")
