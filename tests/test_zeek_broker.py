"""The native Broker transport against a real Broker peer (Debian's python3-broker).

The test's endpoint plays Zeek's side: it publishes ``Tunnelhound::conn`` events with the
Broker types ``main.zeek`` declares and receives the sidecar's ``Tunnelhound::detection``
events.  ``scripts/test.sh`` installs python3-broker (apt); the sidecar finds it through
``zeek.broker_python_path`` as it would find a Zeek install's bindings.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fieldlist import problems
from sample_alerts import example_alert
from tunnelhound.config import ZeekConfig
from tunnelhound.decode.decoder import Decoder
from tunnelhound.errors import ConfigError
from tunnelhound.model import Datagram
from tunnelhound.normalize.ecs import Normalizer
from tunnelhound.normalize.records import FlowRecord, frame_from_records
from tunnelhound.sinks.zeek import ZeekAlertSink
from tunnelhound.sources.zeek import ZeekConnSource
from tunnelhound.zeek.connect import open_transport
from tunnelhound.zeek.events import CONN, DETECTION
from tunnelhound.zeek.native import BrokerTransport, import_broker
from zeek_scan import SCANNER, START, TARGET, conn_args, scan_scenario

BROKER_PATH = ("/usr/lib/python3/dist-packages",)


@pytest.fixture(scope="module")
def broker() -> ModuleType:
    return import_broker(BROKER_PATH)


class ZeekSide:
    """A Broker endpoint standing where Zeek would: listens, publishes conn events."""

    def __init__(self, broker: ModuleType) -> None:
        self.b = broker
        self.endpoint = broker.Endpoint()
        self.port = self.endpoint.listen("127.0.0.1", 0)
        self.detections = self.endpoint.make_subscriber("tunnelhound/detections")
        self.status = self.endpoint.make_status_subscriber(True)

    def wait_for_peer(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any("peer_added" in str(s) for s in self.status.poll()):
                return
            time.sleep(0.02)
        raise AssertionError("the sidecar did not peer")

    def publish(self, args: tuple[Any, ...]) -> None:
        """Publish one conn event with exactly the Broker types main.zeek declares."""
        b = self.b
        broker_type = {
            "count": b.Count,
            "string": str,
            "bool": bool,
            "time": lambda v: v,
            "interval": lambda v: v,
            "addr": ipaddress.ip_address,
            "port": lambda v: b.Port(v.number, b.Port.TCP),
            "transport_proto": b.Enum,
        }
        values = [broker_type[t](v) for (_, t), v in zip(CONN.args, args, strict=True)]
        self.endpoint.publish("tunnelhound/conn", b.zeek.Event(CONN.name, *values))

    def take_detections(self, n: int, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        events: list[Any] = []
        while len(events) < n and time.monotonic() < deadline:
            for _, data in self.detections.poll():
                events.append(self.b.zeek.Event(data))
            time.sleep(0.02)
        return events

    def close(self) -> None:
        self.endpoint.shutdown()


@pytest.fixture
def zeek(broker: ModuleType) -> Iterator[ZeekSide]:
    side = ZeekSide(broker)
    yield side
    side.close()


@pytest.fixture
def transport(zeek: ZeekSide) -> Iterator[BrokerTransport]:
    config = ZeekConfig(transport="broker", port=zeek.port, broker_python_path=BROKER_PATH)
    sidecar = open_transport(config)
    assert isinstance(sidecar, BrokerTransport)
    sidecar.start()
    zeek.wait_for_peer()
    yield sidecar
    sidecar.close()


def receive_documents(source: ZeekConnSource, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    records: list[FlowRecord] = []
    deadline = time.monotonic() + timeout
    while len(records) < n and time.monotonic() < deadline:
        records += source.poll(max_events=n, timeout=0.1)
    return frame_from_records(records).documents()


def ipfix_biflow(
    *, start_ms: int, end_ms: int, sport: int, dport: int, orig: tuple[int, int], resp: tuple[int, int]
) -> bytes:
    """One IPFIX message: a template and one biflow record (RFC 5103 reverse counters)."""
    rev = 0x8000
    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8), (2, 8), (152, 8), (153, 8)]
    template = struct.pack("!HH", 256, len(fields) + 2) + b"".join(
        struct.pack("!HH", i, n) for i, n in fields
    )
    template += struct.pack("!HHI", rev | 1, 8, 29305) + struct.pack("!HHI", rev | 2, 8, 29305)
    record = ipaddress.ip_address(SCANNER).packed + ipaddress.ip_address(TARGET).packed
    record += struct.pack("!HHBQQQQQQ", sport, dport, 6, orig[1], orig[0], start_ms, end_ms, resp[1], resp[0])
    sets = (
        struct.pack("!HH", 2, 4 + len(template))
        + template
        + struct.pack("!HH", 256, 4 + len(record))
        + record
    )
    return struct.pack("!HHIII", 10, 16 + len(sets), end_ms // 1000 + 1, 0, 1) + sets


def test_without_bindings_the_broker_transport_is_a_clear_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "broker", None)  # what a machine without Zeek sees: no module
    with pytest.raises(ConfigError) as info:
        open_transport(ZeekConfig(transport="broker", broker_python_path=("/nonexistent",)))
    assert str(info.value).startswith("config error: zeek.transport: broker: cannot import broker")
    assert "/nonexistent" in str(info.value)
    assert "/nonexistent" not in sys.path  # the search path is not left behind


def test_conn_events_become_the_flow_documents_netflow_gives(
    zeek: ZeekSide, transport: BrokerTransport
) -> None:
    source = ZeekConnSource(transport, observer_ip="192.0.2.7")
    zeek.publish(
        conn_args(
            "CwebTLS1",
            SCANNER,
            53124,
            TARGET,
            443,
            orig=(5, 400),
            resp=(4, 3000),
            state="SF",
            history="ShADadFf",
            start=START,
            duration=1.5,
            service="ssl",
        )
    )
    (ours,) = receive_documents(source, 1)
    start_ms = int(START.timestamp() * 1000)
    message = ipfix_biflow(
        start_ms=start_ms, end_ms=start_ms + 1500, sport=53124, dport=443, orig=(5, 400), resp=(4, 3000)
    )
    batches = Decoder().decode(Datagram(message, "192.0.2.1", 4739, START.timestamp() + 2)).flows
    (netflow,) = Normalizer().frames(batches).documents()

    assert ours["observer"] == {"ip": "192.0.2.7", "type": "zeek"}
    assert ours["zeek"] == {
        "session_id": "CwebTLS1",
        "connection": {"state": "SF", "history": "ShADadFf", "service": "ssl"},
    }
    assert ours["source"]["bytes"] == 400 and ours["destination"]["packets"] == 4
    assert problems(ours) == []
    # Identical except what says who observed it and how: observer, the per-source event id,
    # the creation time, the exporter's netflow.* and Zeek's zeek.*.
    for doc in (ours, netflow):
        for key in ("observer", "netflow", "zeek"):
            doc.pop(key, None)
        del doc["event"]["id"], doc["event"]["created"]
    assert ours == netflow


def test_a_scripted_scan_comes_back_to_zeek_as_one_detection(zeek: ZeekSide, tmp_path: Path) -> None:
    """`tunnelhound zeek` peers with the endpoint, the built-in rules see the scan, Zeek gets it."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "zeek:\n"
        "  transport: broker\n"
        f"  port: {zeek.port}\n"
        f"  broker_python_path: [{BROKER_PATH[0]}]\n"
        "  observer_ip: 192.0.2.7\n"
        "  publish_detections: true\n"
    )
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
        banner = proc.stderr.readline().strip()
        assert banner == f"tunnelhound: reading Zeek conn events from 127.0.0.1:{zeek.port}"
        zeek.wait_for_peer()
        events = scan_scenario()
        for args in events:
            zeek.publish(args)
        detections = zeek.take_detections(1, timeout=15)
        assert len(detections) == 1, "no detection came back"
        detections += zeek.take_detections(1, timeout=1.0)  # and no second one
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert err.strip() == (
        f"tunnelhound: {len(events)} documents from Zeek; alerts {{'port_scan_vertical': 1}}; sessions 1, "
        "events dropped none, dropped in transport 0, events sent to Zeek 1, bad messages 0"
    )
    (event,) = detections
    b = zeek.b
    assert event.name() == DETECTION.name
    args = event.args()
    python_types = {
        "count": b.Count,
        "string": str,
        "time": datetime,
        "addr": ipaddress.IPv4Address,
        "vector of addr": tuple,
    }
    assert [type(a) for a in args] == [python_types[t] for _, t in DETECTION.args]
    assert [a.value for a in args if isinstance(a, b.Count)] == [1, 47]  # version; severity: level medium
    values = dict(zip(DETECTION.arg_names, args, strict=True))
    assert (values["action"], values["rule_name"]) == ("port_scan", "port_scan_vertical")
    assert values["rule_id"] == "05792720-941a-4d24-bf62-ba5ea151e4c2"  # sigma-rules/port_scan.yml
    assert values["src"] == ipaddress.IPv4Address(SCANNER)
    assert values["dst"] == (ipaddress.IPv4Address(TARGET),)
    assert values["reason"] == (
        f"source.ip={SCANNER}, destination.ip={TARGET}: 15 distinct destination.port in 300 s (condition gte 15)"
    )
    assert len(values["alert_id"]) == 32 and values["message"]

    docs = [
        json.loads(line)
        for path in sorted(out.glob("flows-*.ndjson"))
        for line in path.read_text().splitlines()
    ]
    assert len(docs) == len(events)
    unanswered = {d["zeek"]["session_id"] for d in docs if d["tunnelhound"]["scan"]["unanswered"]}
    # Every probe, REJ (the RST is an answer packet, but no ACK ever came from the scanner) and S0;
    # the benign client's three refused connections too, below the rule's 15 ports.
    assert unanswered == {f"Cscan{i:02}" for i in range(20)} | {"Cmail0", "Cmail1", "Cmail2"}
    assert (tmp_path / "rules-state.json").is_file()  # rule state persisted on SIGTERM


def test_publishing_returns_at_once_while_zeek_is_away() -> None:
    config = ZeekConfig(transport="broker", port=9, broker_python_path=BROKER_PATH)  # nothing listens
    transport = open_transport(config)
    transport.start()
    sink = ZeekAlertSink(transport)
    try:
        started = time.monotonic()
        for _ in range(50):
            sink.write_alerts([example_alert()] * 100)
        elapsed = time.monotonic() - started
    finally:
        sink.close()
    assert elapsed < 5.0, elapsed
    assert sink.published == 5000 and transport.stats.connects == 0
