"""Smoke test of bench/rules.py: it runs on a small stream and reports its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_rules_bench_reports_its_figures() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "sidecar")}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "rules.py"),
            "--records",
            "30000",
            "--repeat",
            "1",
            "--json",
            "--no-builtin",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["rules"] == 12 and report["stitched"] is True
    assert 29000 < report["records"] <= 30000
    assert report["records_per_second"] > 0 and report["decode_normalize_us_per_record"] > 0
    assert report["detections"] > 0
