"""``tunnelhound zeek``: conn events from a Zeek WebSocket peer end up as NDJSON flow documents."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from fieldlist import problems
from zeek_peer import BrokerJsonPeer, golden


def test_zeek_subcommand_writes_flow_documents_until_sigterm(tmp_path: Path) -> None:
    peer = BrokerJsonPeer()
    config = tmp_path / "config.yaml"
    config.write_text(f"zeek:\n  url: {peer.url}\n  observer_ip: 192.0.2.7\n  reconnect_initial: 0.05\n")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tunnelhound",
            "zeek",
            "-c",
            str(config),
            "-o",
            str(out),
            "--state-dir",
            str(tmp_path),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().strip() == f"tunnelhound: reading Zeek conn events from {peer.url}"
        deadline = time.monotonic() + 10
        while peer.sessions == 0:
            assert time.monotonic() < deadline, "no session"
            time.sleep(0.02)
        peer.send(golden("conn_event.json"))
        peer.send(golden("conn_event_metadata.json"))
        time.sleep(1.0)  # two poll rounds
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        peer.close()
    assert proc.returncode == 0, err
    assert err.strip() == (
        "tunnelhound: 2 documents from Zeek; sessions 1, events dropped none, dropped in transport 0, bad messages 0"
    )
    docs = [
        json.loads(line) for path in sorted(out.glob("*.ndjson")) for line in path.read_text().splitlines()
    ]
    assert [d["zeek"]["session_id"] for d in docs] == ["CHhAvVGS1DHFjwGM9", "C4J4Th3PJpwUYZZ6gc"]
    assert {d["observer"]["type"] for d in docs} == {"zeek"}
    assert all(problems(d) == [] for d in docs)
