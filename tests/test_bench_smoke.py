"""Smoke test of bench/decode.py: it runs, reports every figure, and decodes what it built.

Not a timing test: the figures only have to be there and be positive.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from es_server import DEFAULT_PORT, ensure_elasticsearch

ROOT = Path(__file__).resolve().parents[1]
RECORDS = 20_000
FIGURES = (
    "decode_fast_rps",
    "decode_reference_rps",
    "decode_normalize_rps",
    "decode_normalize_ndjson_rps",
    "netflow_pkg_rps",
)
STREAMS = ("v9", "ipfix")


def run_bench() -> dict[str, object]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "sidecar"), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "decode.py"),
            "--records",
            str(RECORDS),
            "--json",
            "--repeat",
            "1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert isinstance(report, dict)
    return report


def test_bench_reports_every_figure_and_decodes_every_record() -> None:
    report = run_bench()
    has_netflow = importlib.util.find_spec("netflow") is not None

    machine = report["machine"]
    assert isinstance(machine, dict)
    assert machine["cpu_model"] is not None and machine["nproc"] >= 1
    assert report["records"] == RECORDS
    assert isinstance(report["meets_target"], bool)

    streams = report["streams"]
    assert isinstance(streams, dict) and set(streams) == set(STREAMS)
    for name in STREAMS:
        s = streams[name]
        for key in FIGURES:
            assert key in s, f"{name}: {key} missing"
            if key == "netflow_pkg_rps" and not has_netflow:
                assert s[key] is None
                continue
            assert isinstance(s[key], float) and s[key] > 0, f"{name}: {key} = {s[key]!r}"
        # Our decode reproduces the stream exactly: count, byte counters, sequence numbers.
        assert s["records_built"] == RECORDS
        assert s["decoded_records"] == RECORDS
        assert s["decode_ok"] is True
        assert s["decode_errors"] == 0 and s["sequence_lost"] == 0
        assert s["reference_ok"] is True
        assert s["ndjson_lines"] == RECORDS
        assert s["datagrams"] * s["records_per_datagram"] >= RECORDS
        assert s["peak_rss_mb"] > 0
        if has_netflow:
            assert s["netflow_pkg_records"] == RECORDS
            assert s["netflow_pkg_ok"] is True


ES_RECORDS = 3_000


@pytest.mark.elasticsearch
def test_elasticsearch_bench_reports_both_rates_and_exact_counts() -> None:
    """bench/elasticsearch.py on the tests' node (reused, so left running): figures and exact counts."""
    ensure_elasticsearch(DEFAULT_PORT)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "sidecar"), env.get("PYTHONPATH")]))
    args = ["--records", str(ES_RECORDS), "--repeat", "1", "--warm-up", "0", "--settle", "0"]
    args += ["--batch-docs", "500", "--port", str(DEFAULT_PORT), "--json"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "elasticsearch.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)

    assert report["node_started"] is False  # reused: the bench must not stop it
    assert report["node"]["heap_max_mb"] > 0
    assert report["machine"]["nproc"] >= 1 and report["machine"]["loadavg"]
    assert report["records"] == ES_RECORDS and report["batch_docs"] == 500
    for key in ("raw_docs_per_s", "sidecar_docs_per_s", "ratio"):
        assert isinstance(report[key], float) and report[key] > 0, f"{key} = {report[key]!r}"
    assert isinstance(report["meets_target"], bool) and report["target_ratio"] == 0.9
    assert report["counts_exact"] is True
    sides = sorted(run["side"] for run in report["runs"])
    assert sides == ["raw", "sidecar"]
    for run in report["runs"]:
        assert run["count"] == ES_RECORDS, run
        assert run["docs"] == ES_RECORDS and run["count_exact"] is True
        assert run["requests"] >= ES_RECORDS // 500
        if run["side"] == "raw":
            assert run["item_failures"] == 0
        else:
            assert run["all_acked"] is True
            assert run["metrics"]["docs_acked"] == ES_RECORDS
            assert run["metrics"]["dead_letters"] == 0 and run["metrics"]["spool_batches"] == 0
