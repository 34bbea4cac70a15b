"""Issue 4, acceptance 2: the labeled lab corpus through the whole sidecar pipeline.

Every malicious scenario of labels.json raises an alert of its detector naming its internal
host, for each export of the same traffic (NetFlow v5, v9, IPFIX from softflowd), and no alert
of any rule names a host of a benign scenario.  The per-detection table is the one
``scripts/lab_detection_table.py`` prints for ``docs/detections.md``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from lab_replay import replay_alerts
from replay import DATA

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "lab_detection_table.py"
LABELS = json.loads((DATA / "lab" / "labels.json").read_text())


def _table_module() -> Any:
    spec = importlib.util.spec_from_file_location("lab_detection_table", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("capture", ["netflow_v5.pcap", "netflow_v9.pcap", "ipfix.pcap"])
def test_every_malicious_scenario_alerts_and_no_benign_host_does(tmp_path: Path, capture: str) -> None:
    lab = _table_module()
    alerts = replay_alerts(tmp_path, capture)
    rows = lab.table([lab.finding(a) for a in alerts], LABELS)
    missed = {r["detector"]: r["missed"] for r in rows if r["fn"]}
    assert not missed, f"{capture}: scenarios without their alert: {missed}"
    assert sum(r["tp"] for r in rows) == sum(1 for s in LABELS if s["kind"] != "benign") == 12
    benign = set().union(*(lab.hosts(s["src"]) for s in LABELS if s["kind"] == "benign"))
    # Any rule at all, the threat index included: a benign host is never named.
    assert not [
        (a["rule"]["name"], a["source"]["ip"]) for a in alerts if a.get("source", {}).get("ip") in benign
    ]
    assert all(r["fp"] == 0 for r in rows), rows


def test_a_second_replay_with_the_same_state_raises_nothing_new(tmp_path: Path) -> None:
    assert len(replay_alerts(tmp_path, "netflow_v9.pcap", "first")) >= 12
    # Same state_dir: every (rule, key) already alerted inside its suppression window.
    assert replay_alerts(tmp_path, "netflow_v9.pcap", "second") == []
