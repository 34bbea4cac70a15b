"""``tunnelhound zeek`` against a Zeek WebSocket peer: conn events become NDJSON flow documents,
run through the built-in rules, and a scripted scan goes back to the peer as one detection."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fieldlist import problems
from tunnelhound.zeek.brokerjson import decode_message, encode_event
from tunnelhound.zeek.events import CONN, DETECTION, ZeekEvent
from zeek_peer import BrokerJsonPeer, golden
from zeek_scan import SCANNER, TARGET, scan_scenario


def run_zeek(peer: BrokerJsonPeer, tmp_path: Path, extra: str, feed: Callable[[], None]) -> str:
    """Run ``tunnelhound zeek`` until ``feed()`` returns, then SIGTERM it; its stderr summary."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"zeek:\n  url: {peer.url}\n  observer_ip: 192.0.2.7\n  reconnect_initial: 0.05\n{extra}"
    )
    command = ["zeek", "-c", str(config), "-o", str(tmp_path / "out"), "--state-dir", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunnelhound", *command], stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().strip() == f"tunnelhound: reading Zeek conn events from {peer.url}"
        deadline = time.monotonic() + 10
        while peer.sessions == 0:
            assert time.monotonic() < deadline, "no session"
            time.sleep(0.02)
        feed()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        peer.close()
    assert proc.returncode == 0, err
    return err.strip()


def flow_documents(tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / "out"
    return [
        json.loads(line)
        for path in sorted(out.glob("flows-*.ndjson"))
        for line in path.read_text().splitlines()
    ]


def test_zeek_subcommand_writes_flow_documents_until_sigterm(tmp_path: Path) -> None:
    peer = BrokerJsonPeer()

    def feed() -> None:
        peer.send(golden("conn_event.json"))
        peer.send(golden("conn_event_metadata.json"))
        time.sleep(1.0)  # two poll rounds

    err = run_zeek(peer, tmp_path, "", feed)
    assert err == (
        "tunnelhound: 2 documents from Zeek; alerts none; sessions 1, events dropped none, "
        "dropped in transport 0, events sent to Zeek 0, bad messages 0"
    )
    docs = flow_documents(tmp_path)
    assert [d["zeek"]["session_id"] for d in docs] == ["CHhAvVGS1DHFjwGM9", "C4J4Th3PJpwUYZZ6gc"]
    assert {d["observer"]["type"] for d in docs} == {"zeek"}
    assert all(problems(d) == [] for d in docs)
    assert peer.received.empty()  # publish_detections is off by default


def test_a_scripted_scan_comes_back_over_websocket_as_one_detection(tmp_path: Path) -> None:
    peer = BrokerJsonPeer()
    events = scan_scenario()
    messages: list[dict[str, Any]] = []

    def feed() -> None:
        for args in events:
            peer.send(encode_event("tunnelhound/conn", CONN, args).decode())
        messages.extend(peer.take(1, timeout=15))
        time.sleep(1.0)  # time for a second detection, which must not come

    err = run_zeek(peer, tmp_path, "  publish_detections: true\n", feed)
    assert err == (
        f"tunnelhound: {len(events)} documents from Zeek; alerts {{'port_scan_vertical': 1}}; sessions 1, "
        "events dropped none, dropped in transport 0, events sent to Zeek 1, bad messages 0"
    )
    assert peer.received.empty()
    ((kind, (topic, event)),) = [decode_message(json.dumps(m)) for m in messages]
    assert (kind, topic) == ("data-message", "tunnelhound/detections")
    assert isinstance(event, ZeekEvent) and event.name == DETECTION.name
    values = dict(zip(DETECTION.arg_names, event.args, strict=True))
    # The declared types, as Broker's JSON data model carries them.
    assert [type(v) for v in event.args] == [
        {"count": int, "string": str, "time": datetime, "addr": str, "vector of addr": list}[t]
        for _, t in DETECTION.args
    ]
    assert (values["version"], values["severity"]) == (1, 47)
    assert (values["action"], values["rule_name"]) == ("port_scan", "port_scan_vertical")
    assert (values["src"], values["dst"]) == (SCANNER, [TARGET])
    docs = flow_documents(tmp_path)
    assert len(docs) == len(events)
    assert all(problems(d) == [] for d in docs)
