"""The native Broker transport against a real Broker peer (Debian's python3-broker).

The test's endpoint plays Zeek's side: it publishes ``Tunnelhound::conn`` events with the
Broker types ``main.zeek`` declares and receives the sidecar's ``Tunnelhound::detection``
events.  ``scripts/test.sh`` installs python3-broker (apt); the sidecar finds it through
``zeek.broker_python_path`` as it would find a Zeek install's bindings.
"""

from __future__ import annotations

import ipaddress
import struct
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

from fieldlist import problems
from tunnelhound.config import ZeekConfig
from tunnelhound.decode.decoder import Decoder
from tunnelhound.errors import ConfigError
from tunnelhound.model import Datagram
from tunnelhound.normalize.ecs import Normalizer
from tunnelhound.sinks.zeek import ZeekAlertSink
from tunnelhound.sources.zeek import ZeekConnSource
from tunnelhound.zeek.connect import open_transport
from tunnelhound.zeek.events import CONN, DETECTION
from tunnelhound.zeek.native import BrokerTransport, import_broker
from zeek_alerts import example_alert

BROKER_PATH = ("/usr/lib/python3/dist-packages",)
START = datetime(2026, 11, 23, 13, 40, 10, 100000, tzinfo=UTC)
SCANNER, TARGET = "10.77.1.68", "198.18.5.10"


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

    def conn(
        self,
        uid: str,
        sport: int,
        dport: int,
        *,
        orig: tuple[int, int],
        resp: tuple[int, int],
        state: str,
        history: str,
        start: datetime = START,
        duration: float = 1.5,
        service: str = "",
    ) -> None:
        """Publish one conn event with exactly the Broker types main.zeek declares."""
        b = self.b
        args = [
            b.Count(1),
            uid,
            start,
            ipaddress.ip_address(SCANNER),
            b.Port(sport, b.Port.TCP),
            ipaddress.ip_address(TARGET),
            b.Port(dport, b.Port.TCP),
            b.Enum("tcp"),
            service,
            timedelta(seconds=duration),
            b.Count(max(orig[1] - 40 * orig[0], 0)),  # payload bytes: IP bytes less 40 a packet
            b.Count(max(resp[1] - 40 * resp[0], 0)),
            b.Count(orig[1]),
            b.Count(resp[1]),
            b.Count(orig[0]),
            b.Count(resp[0]),
            state,
            history,
            True,
            False,
            "",
        ]
        assert len(args) == len(CONN.args)
        self.endpoint.publish("tunnelhound/conn", b.zeek.Event(CONN.name, *args))

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


def receive_frames(source: ZeekConnSource, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(docs) < n and time.monotonic() < deadline:
        docs += source.poll(max_events=n, timeout=0.1).documents()
    return docs


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
    zeek.conn(
        "CwebTLS1", 53124, 443, orig=(5, 400), resp=(4, 3000), state="SF", history="ShADadFf", service="ssl"
    )
    (ours,) = receive_frames(source, 1)
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


def stand_in_scan_detection(docs: list[dict[str, Any]], threshold: int = 15) -> list[dict[str, Any]]:
    """Unanswered destination ports per (source, destination): an alert at ``threshold``.

    Stands in for the Sigma engine (port_scan_vertical), which lives on another branch; the
    alert is shaped as the alert contract says, so the engine's alerts take the same path.
    """
    ports: dict[tuple[str, str], set[int]] = defaultdict(set)
    for doc in docs:
        if doc["destination"]["packets"] == 0:
            ports[doc["source"]["ip"], doc["destination"]["ip"]].add(doc["destination"]["port"])
    alerts = []
    for (src, dst), seen in ports.items():
        if len(seen) >= threshold:
            alert = example_alert(source={"ip": src}, destination={"ip": dst})
            alert["event"]["reason"] = (
                f"{src} sent to {len(seen)} unanswered ports of {dst} (threshold {threshold})"
            )
            alerts.append(alert)
    return alerts


def test_a_scripted_scan_comes_back_to_zeek_as_a_detection(
    zeek: ZeekSide, transport: BrokerTransport
) -> None:
    source = ZeekConnSource(transport, observer_ip="192.0.2.7")
    sink = ZeekAlertSink(transport)
    for i in range(20):  # SYNs to 20 closed ports, nothing back
        zeek.conn(
            f"Cscan{i:02}",
            40000 + i,
            1000 + i,
            orig=(1, 44),
            resp=(0, 0),
            state="S0",
            history="S",
            duration=0,
        )
    zeek.conn("Cweb", 53124, 443, orig=(5, 400), resp=(4, 3000), state="SF", history="ShADadFf")
    docs = receive_frames(source, 21)
    assert len(docs) == 21 and source.dropped == {}
    assert sorted(d["destination"]["port"] for d in docs if d["zeek"]["connection"]["state"] == "S0") == list(
        range(1000, 1020)
    )

    alerts = stand_in_scan_detection(docs)
    assert len(alerts) == 1
    sink.write_alerts(alerts)
    (event,) = zeek.take_detections(1)

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
    assert [a.value for a in args if isinstance(a, b.Count)] == [1, 73]  # version, severity
    values = dict(zip(DETECTION.arg_names, args, strict=True))
    assert values["action"] == "port_scan" and values["rule_name"] == "port_scan_vertical"
    assert values["src"] == ipaddress.IPv4Address(SCANNER)
    assert values["dst"] == (ipaddress.IPv4Address(TARGET),)
    assert values["reason"] == f"{SCANNER} sent to 20 unanswered ports of {TARGET} (threshold 15)"
    assert values["ts"] == datetime(2026, 11, 23, 13, 40, 12, 345000, tzinfo=UTC)
    assert sink.published == 1 and transport.stats.sent == 1
    assert transport.stats.connects == 1 and transport.stats.received == 21


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
