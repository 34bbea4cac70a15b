"""The command line: replay, demo, bad config, and restart of the UDP collector."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from replay import DATA

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "sidecar")}


def tunnelhound(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tunnelhound", *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


def read_ndjson(directory: Path) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(directory.glob("*.ndjson")):
        docs.extend(json.loads(line) for line in path.read_text().splitlines())
    return docs


def test_replay_writes_documents_and_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = tunnelhound(
        "replay", str(DATA / "lab" / "ipfix.pcap"), "-o", str(out), "--state-dir", str(tmp_path / "state")
    )
    assert result.returncode == 0, result.stderr
    docs = read_ndjson(out)
    assert len(docs) == 1919
    assert "199 datagrams, 3375 flow records" in result.stderr
    assert (tmp_path / "state" / "decoder-state.json").exists()


def test_replay_to_stdout_and_dat_exporter(tmp_path: Path) -> None:
    result = tunnelhound(
        "replay",
        str(DATA / "vendors" / "dat" / "netflow9_test_paloalto_panos_tpl.dat"),
        str(DATA / "vendors" / "dat" / "netflow9_test_paloalto_panos_data.dat"),
        "--exporter",
        "198.51.100.7:2055",
        "-o",
        "-",
        "--state-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert "2 datagrams, 8 flow records" in result.stderr
    assert sum(2 if d["tunnelhound"]["biflow"] == "stitched" else 1 for d in docs) == 8
    assert {d["observer"]["ip"] for d in docs} == {"198.51.100.7"}
    assert {d["netflow"]["exporter"]["address"] for d in docs} == {"198.51.100.7:2055"}


def test_demo_prints_the_detections_of_the_bundled_capture(tmp_path: Path) -> None:
    result = tunnelhound("demo", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "184 datagrams, 3375 flow records" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("13 detections in lab_netflow_v9.pcap")
    header, *rows = lines[1:]
    assert header.split()[:5] == ["severity", "rule", "host", "peer", "evidence"]
    assert len(rows) == 13
    hosts = {row.split()[2] for row in rows}
    assert hosts == {f"10.77.1.{n}" for n in range(65, 74)}  # the nine attacking hosts of the lab
    flows = [json.loads(line) for f in tmp_path.glob("flows-*.ndjson") for line in f.read_text().splitlines()]
    alerts = [
        json.loads(line) for f in tmp_path.glob("alerts-*.ndjson") for line in f.read_text().splitlines()
    ]
    assert len(flows) == 1919 and len(alerts) == 13
    assert {a["source"]["ip"] for a in alerts} == hosts


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("decode:\n  share_templatez: true\n", "decode.share_templatez"),
        ("normalize:\n  internal_networks: [10.0.0.0/33]\n", "normalize.internal_networks[0]"),
        ("output:\n  ndjson:\n    rotate_bytes: -1\n", "output.ndjson.rotate_bytes"),
    ],
)
def test_bad_config_exits_with_one_line_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    result = tunnelhound("replay", "-c", str(config), str(DATA / "lab" / "ipfix.pcap"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and lines[0].startswith("tunnelhound: config error:")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = tunnelhound("replay", str(tmp_path / "nope.pcap"), "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 1 and "nope.pcap: no such file" in result.stderr
    assert not (tmp_path / "state").exists()


# ---------------------------------------------------------------------------- restart


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Collector:
    """`tunnelhound run` on a loopback port, stopped with SIGTERM."""

    def __init__(self, port: int, out: Path, state: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tunnelhound", "run", "--listen", f"127.0.0.1:{port}", "-o", str(out),
             "--state-dir", str(state)],
            stderr=subprocess.PIPE, text=True, env=ENV,
        )  # fmt: skip
        assert self.proc.stderr is not None
        self.banner = self.proc.stderr.readline()
        assert "listening on 127.0.0.1:" in self.banner, self.banner

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        return err


def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_restart_between_template_and_data_decodes_from_persisted_templates(tmp_path: Path) -> None:
    port, state, out1, out2 = _free_port(), tmp_path / "state", tmp_path / "out1", tmp_path / "out2"
    template = (DATA / "vendors" / "dat" / "netflow9_test_cisco_asa_1_tpl.dat").read_bytes()
    data = (DATA / "vendors" / "dat" / "netflow9_test_cisco_asa_1_data.dat").read_bytes()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as exporter:
        exporter.bind(("127.0.0.1", 0))  # one exporter address and port for both runs
        first = Collector(port, out1, state)
        exporter.sendto(template, ("127.0.0.1", port))
        state_file = state / "decoder-state.json"
        _wait_for(lambda: state_file.exists() and '"templates":[{' in state_file.read_text())
        summary = first.stop()
        assert "1 datagrams, 0 flow records" in summary
        assert read_ndjson(out1) == []

        second = Collector(port, out2, state)
        assert "templates restored: True" in second.banner
        exporter.sendto(data, ("127.0.0.1", port))
        summary = second.stop()
    assert "1 datagrams, 14 flow records" in summary
    docs = read_ndjson(out2)
    # The ASA reports one record per connection event; all 14 are decoded at once.
    assert sum(2 if d["tunnelhound"]["biflow"] == "stitched" else 1 for d in docs) == 14
    assert all(d["netflow"]["exporter"]["version"] == 9 for d in docs)


def test_every_command_runs_with_the_tuned_garbage_collector(capsys: pytest.CaptureFixture[str]) -> None:
    import gc

    from tunnelhound.cli import main
    from tunnelhound.gc_tuning import GC_THRESHOLD

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        assert main(["rules", "list"]) == 0
        assert gc.get_threshold() == GC_THRESHOLD
    finally:
        gc.set_threshold(*before)
    assert "port_scan_vertical" in capsys.readouterr().out
