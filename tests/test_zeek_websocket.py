"""The WebSocket transport against a peer that speaks Broker's JSON API v1 as documented.

The peer (tests/zeek_peer.py) stands in for Zeek: no Zeek binary exists where these tests
run.  Its frames are golden files written from Broker's documentation (tests/data/zeek/).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fieldlist import problems
from sample_alerts import example_alert
from tunnelhound.config import Config, ZeekConfig, from_dict
from tunnelhound.errors import ConfigError
from tunnelhound.normalize.frame import FlowFrame
from tunnelhound.normalize.records import frame_from_records
from tunnelhound.pipeline import FlowPipeline
from tunnelhound.sinks.alerts import open_alert_sinks
from tunnelhound.sinks.zeek import ZeekAlertSink, detection_args
from tunnelhound.sources.zeek import ZeekConnSource, flags_of_history, record_of_conn
from tunnelhound.zeek.brokerjson import BrokerJsonError, decode_message, decode_value, encode_value
from tunnelhound.zeek.connect import open_transport
from tunnelhound.zeek.events import CONN, DETECTION, Port, ZeekEvent
from tunnelhound.zeek.websocket import WebSocketTransport
from zeek_peer import BrokerJsonPeer, golden
from zeek_scan import START, conn_args

TOPIC = "tunnelhound/conn"


@pytest.fixture
def peer() -> Iterator[BrokerJsonPeer]:
    server = BrokerJsonPeer()
    yield server
    server.close()


def client(url: str, **options: float) -> WebSocketTransport:
    transport = WebSocketTransport(url, (TOPIC,), **options)  # type: ignore[arg-type]
    transport.start()
    return transport


def wait_for(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# ------------------------------------------------------------------------ the data model


def test_the_documentations_example_event_decodes() -> None:
    kind, (topic, event) = decode_message(golden("doc_event.json"))
    assert (kind, topic) == ("data-message", "/foo/bar")
    assert event == ZeekEvent("event_1", (42, "test"))


def test_ack_and_error_messages_decode() -> None:
    assert decode_message(golden("ack.json")) == (
        "ack",
        {"endpoint": "925c9110-5b87-57d9-9d80-b65568e87a44", "version": "2.2.0-22"},
    )
    kind, text = decode_message(golden("error.json"))
    assert kind == "error" and text.startswith("deserialization_failed: input #1 contained malformed JSON")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"@data-type": "none", "data": {}}, None),
        ({"@data-type": "timespan", "data": "1500ms"}, timedelta(seconds=1.5)),
        ({"@data-type": "timespan", "data": "2min"}, timedelta(minutes=2)),
        ({"@data-type": "timespan", "data": "7d"}, timedelta(days=7)),
        ({"@data-type": "timespan", "data": "250ns"}, timedelta(0)),
        (
            {"@data-type": "timestamp", "data": "2022-04-10T07:00:00.000"},
            datetime(2022, 4, 10, 7, tzinfo=UTC),
        ),
        ({"@data-type": "port", "data": "8080/tcp"}, Port(8080, "tcp")),
        ({"@data-type": "subnet", "data": "255.255.255.0/24"}, "255.255.255.0/24"),
        (
            {
                "@data-type": "table",
                "data": [
                    {
                        "key": {"@data-type": "string", "data": "first-name"},
                        "value": {"@data-type": "string", "data": "John"},
                    }
                ],
            },
            {"first-name": "John"},
        ),
    ],
)
def test_documented_values_decode(value: dict[str, object], expected: object) -> None:
    assert decode_value(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"@data-type": "count", "data": 1.0},  # the documentation: a decimal point is an error
        {"@data-type": "count", "data": -1},
        {"@data-type": "integer", "data": True},
        {"@data-type": "timespan", "data": "15 parsecs"},
        {"@data-type": "port", "data": "70000/tcp"},
        {"@data-type": "pointer", "data": 0},
        {"data": 1},
    ],
)
def test_malformed_values_are_errors(value: dict[str, object]) -> None:
    with pytest.raises(BrokerJsonError):
        decode_value(value)


def test_encoding_round_trips_every_declared_type() -> None:
    args = (
        1,
        "C1",
        datetime(2026, 11, 23, 13, 40, 10, 100000, tzinfo=UTC),
        "2001:db8::1",
        Port(443, "tcp"),
        "10.0.0.1",
        Port(50000, "tcp"),
        "tcp",
        "ssl",
        timedelta(seconds=2.5),
        *range(6),
        "SF",
        "ShADadFf",
        True,
        False,
        "",
    )
    encoded = [encode_value(v, t) for (_, t), v in zip(CONN.args, args, strict=True)]
    assert [e["@data-type"] for e in encoded[:10]] == [
        "count",
        "string",
        "timestamp",
        "address",
        "port",
        "address",
        "port",
        "enum-value",
        "string",
        "timespan",
    ]
    assert encoded[2]["data"] == "2026-11-23T13:40:10.100"  # the documented YYYY-MM-DDThh:mm:ss.sss
    assert encoded[9]["data"] == "2500000000ns"
    assert tuple(decode_value(e) for e in encoded) == args


# ------------------------------------------------------------------------ conn events in


def test_both_event_forms_become_flow_documents(peer: BrokerJsonPeer) -> None:
    transport = client(peer.url)
    source = ZeekConnSource(transport, observer_ip="192.0.2.7")
    try:
        assert transport.wait_connected(5)
        assert peer.subscriptions == [[TOPIC]]  # the topic list is the first message
        assert transport.peer == {"endpoint": "925c9110-5b87-57d9-9d80-b65568e87a44", "version": "2.2.0-22"}
        peer.send(golden("conn_event.json"))  # Zeek < 8: [name, args]
        peer.send(golden("conn_event_metadata.json"))  # Zeek 8: [name, args, metadata]
        events: list[ZeekEvent] = []
        deadline = time.monotonic() + 5
        while len(events) < 2 and time.monotonic() < deadline:
            events += [event for _, event in transport.receive(10, 0.1)]
    finally:
        transport.close()
    assert [e.metadata for e in events] == [
        (),
        ((1, datetime(2026, 11, 23, 13, 40, 12, 250000, tzinfo=UTC)),),
    ]
    dns, icmp = frame_from_records(source.records(events)).documents()
    assert dns["source"] == {
        "ip": "10.77.1.68",
        "port": 53124,
        "bytes": 63,
        "packets": 1,
        "locality": "internal",
    }
    assert dns["destination"] == {
        "ip": "198.18.5.10",
        "port": 53,
        "bytes": 148,
        "packets": 1,
        "locality": "external",
    }
    assert dns["event"]["start"] == "2026-11-23T13:40:10.100Z"
    assert dns["event"]["end"] == "2026-11-23T13:40:11.600Z"
    assert dns["event"]["duration"] == 1_500_000_000
    assert dns["event"]["dataset"] == "tunnelhound.flow"
    assert dns["observer"] == {"ip": "192.0.2.7", "type": "zeek"}
    assert dns["network"]["transport"] == "udp"
    assert dns["network"]["community_id"] == "1:k9pBKU8ZwDnZuEXOOZyUfgsG8k0="  # what Zeek computed too
    assert dns["tunnelhound"] == {"biflow": "exporter"}
    assert dns["zeek"] == {
        "session_id": "CHhAvVGS1DHFjwGM9",
        "connection": {"state": "SF", "history": "Dd", "service": "dns"},
    }
    assert icmp["tunnelhound"] == {"biflow": "exporter", "icmp": {"type": 8, "code": 0}}
    assert "port" not in icmp["source"]
    assert icmp["zeek"] == {"session_id": "C4J4Th3PJpwUYZZ6gc", "connection": {"state": "OTH"}}
    assert icmp["network"]["community_id"] == "1:Mmh5RbUEGQkcDLZ5UyyyX+YI7ic="
    for doc in (dns, icmp):
        assert problems(doc) == []


@pytest.mark.parametrize(
    ("history", "flags"),
    [
        ("ShADadFf", (0x13, 0x13)),  # a full connection: SYN, ACK, FIN both ways
        ("Sr", (0x02, 0x04)),  # REJ: a SYN answered by RST, the initiator never ACKed
        ("S", (0x02, None)),  # S0: nothing came back, so nothing is known of the responder
        ("ShR", (0x06, 0x12)),  # a half-open SYN scan: SYN, SYN-ACK, RST (no ACK)
        ("Dd", (0x10, 0x10)),  # picked up mid-stream: data segments carry ACK
        ("^hADd", (0x10, 0x12)),  # flipped by Zeek: the letters already name the new originator
        ("CcGgTtWwIiX", (None, None)),  # letters that prove no flag
    ],
)
def test_history_letters_become_tcp_flags_per_direction(
    history: str, flags: tuple[int | None, int | None]
) -> None:
    assert flags_of_history(history) == flags


def test_the_pipeline_keeps_zeeks_originator_as_the_source(tmp_path: Path) -> None:
    """UDP 5000 -> 6000: the port heuristic would make 6000 the client; Zeek saw who started."""
    documents: list[dict[str, Any]] = []

    class Collect:
        def write_frame(self, frame: FlowFrame) -> None:
            documents.extend(frame.documents())

        def close(self) -> None:
            pass

    args = list(
        conn_args(
            "Cudp",
            "10.77.1.20",
            5000,
            "198.18.5.20",
            6000,
            orig=(3, 300),
            resp=(2, 200),
            state="SF",
            history="Dd",
            start=START,
        )
    )
    args[4:8] = [Port(5000, "udp"), "198.18.5.20", Port(6000, "udp"), "udp"]
    record = record_of_conn(args, "192.0.2.7")
    assert record is not None
    pipeline = FlowPipeline(Config(state_dir=str(tmp_path)), Collect())
    pipeline.process_records([record])
    pipeline.close()
    (doc,) = documents
    assert (doc["source"]["ip"], doc["source"]["port"], doc["source"]["bytes"]) == ("10.77.1.20", 5000, 300)
    assert (doc["destination"]["ip"], doc["destination"]["port"]) == ("198.18.5.20", 6000)


def test_events_that_do_not_fit_are_counted_not_raised() -> None:
    _, (_, good) = decode_message(golden("conn_event.json"))
    args = list(good.args)
    source = ZeekConnSource(open_transport(ZeekConfig()), observer_ip="192.0.2.7")
    records = source.records(
        [
            good,
            ZeekEvent(good.name, (2, *good.args[1:])),  # a later layout version
            ZeekEvent(good.name, tuple(args[:-1])),  # an argument short
            ZeekEvent(good.name, (*args[:7], "unknown_transport", *args[8:])),
            ZeekEvent("Tunnelhound::other", ()),
        ]
    )
    assert [r.identity for r in records] == ["zeek|CHhAvVGS1DHFjwGM9|1795441210100000000"]
    assert source.dropped == {"bad_event": 2, "unknown_transport": 1, "other_event": 1}
    assert source.last_error == "Tunnelhound::conn: 20 arguments, expected 21"


# ------------------------------------------------------------------------ detections out


def test_alerts_go_out_as_documented_detection_events(peer: BrokerJsonPeer) -> None:
    transport = client(peer.url)
    sink = ZeekAlertSink(transport)
    try:
        assert transport.wait_connected(5)
        dns = example_alert(destination=None, message="DNS tunnel")
        dns["event"]["action"] = "dns_tunnel"
        started = time.monotonic()
        sink.write_alerts([example_alert(), dns, example_alert(source=None)])
        assert time.monotonic() - started < 0.1
        scan, tunnel = peer.take(2)
    finally:
        sink.close()
    assert sink.published == 2 and sink.dropped == {"no_source_ip": 1}
    assert scan["topic"] == "tunnelhound/detections"
    assert scan["@data-type"] == "vector"
    fmt, kind, body = scan["data"]
    assert fmt == {"@data-type": "count", "data": 1} and kind == {"@data-type": "count", "data": 1}
    name, args = body["data"]
    assert name == {"@data-type": "string", "data": "Tunnelhound::detection"}
    assert args["@data-type"] == "vector"
    assert args["data"] == [
        {"@data-type": "count", "data": 1},
        {"@data-type": "string", "data": "5f0c2b1e9d7a4c3b8e6f1a2d3c4b5a69"},
        {"@data-type": "timestamp", "data": "2026-11-23T13:40:12.345"},
        {"@data-type": "string", "data": "port_scan"},
        {"@data-type": "string", "data": "port_scan_vertical"},
        {"@data-type": "string", "data": "0b8d2a4e-5c1f-4e2a-9b7d-3f6a8c1e2d40"},
        {"@data-type": "count", "data": 73},
        {"@data-type": "string", "data": "Port scan: many unanswered destination ports"},
        {
            "@data-type": "string",
            "data": "10.77.1.68 sent to 212 unanswered ports of 198.18.5.10 in 300 s (threshold 15)",
        },
        {"@data-type": "address", "data": "10.77.1.68"},
        {"@data-type": "vector", "data": [{"@data-type": "address", "data": "198.18.5.10"}]},
        {"@data-type": "string", "data": "1:k9pBKU8ZwDnZuEXOOZyUfgsG8k0="},
    ]
    tunnel_args = tunnel["data"][2]["data"][1]["data"]
    assert tunnel_args[3] == {"@data-type": "string", "data": "dns_tunnel"}
    assert tunnel_args[10] == {"@data-type": "vector", "data": []}


# ------------------------------------------------------------------------ failures


def test_publish_detections_opens_a_zeek_alert_sink_of_its_own(peer: BrokerJsonPeer) -> None:
    """replay and run: the sink peers by itself, subscribed to nothing, and closes its transport."""
    config = from_dict(Config, {"zeek": {"url": peer.url, "publish_detections": True}})
    sinks = open_alert_sinks(config)
    try:
        (sink,) = sinks.sinks
        assert isinstance(sink, ZeekAlertSink) and sink.close_transport
        assert isinstance(sink.transport, WebSocketTransport) and sink.transport.wait_connected(5)
        assert peer.subscriptions == [[]]  # publishes only
        sinks.write_alerts([example_alert(), example_alert(source=None)])
        (message,) = peer.take(1)
    finally:
        sinks.close()
    assert message["topic"] == "tunnelhound/detections"
    assert sinks.stats() == {
        "zeek_sent": 1,
        "zeek_failed": 0,
        "zeek_dropped": 1,
        "zeek_dropped_no_source_ip": 1,
    }
    assert open_alert_sinks(Config()).sinks == []  # off by default


def test_a_lent_transport_carries_the_detections_and_stays_open(peer: BrokerJsonPeer) -> None:
    """tunnelhound zeek: one session for conn events in and detections out."""
    config = from_dict(Config, {"zeek": {"url": peer.url, "publish_detections": True}})
    transport = client(peer.url)
    try:
        assert transport.wait_connected(5)
        sinks = open_alert_sinks(config, zeek_transport=transport)
        (sink,) = sinks.sinks
        assert isinstance(sink, ZeekAlertSink) and sink.transport is transport
        sinks.close()
        assert transport.publish("tunnelhound/detections", DETECTION, detection_args(example_alert()) or ())
        (message,) = peer.take(1)  # still open after the sinks closed
    finally:
        transport.close()
    assert message["topic"] == "tunnelhound/detections"
    assert peer.sessions == 1 and peer.subscriptions == [[TOPIC]]


def test_closing_sends_what_was_published(peer: BrokerJsonPeer) -> None:
    """The last detections (raised while the pipeline closes) still reach Zeek."""
    transport = client(peer.url)
    assert transport.wait_connected(5)
    sink = ZeekAlertSink(transport)
    sink.write_alerts([example_alert()] * 50)
    sink.close()
    assert len(peer.take(50)) == 50 and transport.stats.sent == 50


def test_reconnects_with_backoff_after_refusals_and_after_the_peer_goes_away() -> None:
    peer = BrokerJsonPeer(reject=3)  # three handshakes answered with an error, then an ack
    transport = client(peer.url, reconnect_initial=0.1, reconnect_max=0.3)
    try:
        assert transport.wait_connected(5)
        gaps = [b - a for a, b in zip(peer.attempts, peer.attempts[1:], strict=False)]
        assert len(peer.attempts) == 4 and peer.sessions == 1
        # 0.1, 0.2, then capped at 0.3 (each gap also holds a connect; allow for a busy machine)
        for gap, wanted in zip(gaps, (0.1, 0.2, 0.3), strict=True):
            assert wanted - 0.02 <= gap <= wanted + 0.25, gaps
        assert transport.stats.connects == 1
        assert transport.stats.last_error.startswith("_HandshakeError: expected an ack, got error")

        peer.drop()  # Zeek restarts: the client is back after the (reset) initial backoff
        wait_for(lambda: peer.sessions == 2)
        assert transport.wait_connected(5)
        assert transport.stats.disconnects == 1 and transport.stats.connects == 2
        assert peer.attempts[-1] - peer.attempts[-2] < 0.5
        assert peer.subscriptions == [[TOPIC]] * 5
        peer.send(golden("conn_event.json"))
        received = transport.receive(10, 5.0)
        assert [event.args[1] for _, event in received] == ["CHhAvVGS1DHFjwGM9"]
    finally:
        transport.close()
        peer.close()


def test_publishing_never_blocks_while_zeek_is_away() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = client(f"ws://127.0.0.1:{port}/v1/messages/json", queue_size=100, reconnect_initial=0.05)
    sink = ZeekAlertSink(transport)
    try:
        started = time.monotonic()
        for _ in range(10):
            sink.write_alerts([example_alert()] * 100)
        elapsed = time.monotonic() - started
    finally:
        sink.close()
    assert elapsed < 1.0, elapsed
    assert sink.published == 100
    assert sink.dropped == {"transport_full": 900}
    assert transport.stats.dropped_out == 900
    assert transport.stats.connects == 0
    assert "ConnectionRefusedError" in transport.stats.last_error or "OSError" in transport.stats.last_error


def test_publishing_never_blocks_while_zeek_does_not_read() -> None:
    peer = BrokerJsonPeer(stall=True)
    transport = client(peer.url, queue_size=100)
    sink = ZeekAlertSink(transport)
    try:
        assert transport.wait_connected(5)
        started = time.monotonic()
        for _ in range(200):  # ~ 25 MB of detections: more than the socket buffers hold
            sink.write_alerts([example_alert()] * 100)
        elapsed = time.monotonic() - started
    finally:
        sink.close()  # frees the thread stuck in send
        peer.drop()
        peer.close()
    assert elapsed < 5.0, elapsed
    assert transport.stats.dropped_out > 0
    assert sink.published + sink.dropped["transport_full"] == 20000
    assert sink.dropped["transport_full"] == transport.stats.dropped_out


def test_a_slow_pipeline_drops_received_events_and_counts_them(peer: BrokerJsonPeer) -> None:
    transport = client(peer.url, queue_size=10)
    try:
        assert transport.wait_connected(5)
        for _ in range(50):
            peer.send(golden("conn_event.json"))
        wait_for(lambda: transport.stats.dropped_in == 40)
        assert len(transport.receive(100, 0.1)) == 10
        assert transport.stats.received == 10
    finally:
        transport.close()


def test_bad_messages_and_peer_errors_are_counted_and_the_session_goes_on(peer: BrokerJsonPeer) -> None:
    transport = client(peer.url)
    try:
        assert transport.wait_connected(5)
        peer.send("How is it going?")
        peer.send(json.dumps({"type": "data-message", "topic": TOPIC, "@data-type": "count", "data": 1}))
        peer.send(golden("error.json"))
        peer.send(golden("conn_event_metadata.json"))
        received = transport.receive(10, 5.0)
    finally:
        transport.close()
    assert [event.args[1] for _, event in received] == ["C4J4Th3PJpwUYZZ6gc"]
    assert transport.stats.bad_messages == 2
    assert transport.stats.peer_errors == 1
    assert transport.stats.connects == 1 and transport.stats.disconnects == 1  # the close at the end


def test_a_url_that_is_not_a_websocket_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(Config, {"zeek": {"url": "http://127.0.0.1:27759/v1/messages/json"}})
    assert str(info.value).startswith("config error: zeek.url:")
    assert "a ws:// or wss:// URL" in str(info.value)
