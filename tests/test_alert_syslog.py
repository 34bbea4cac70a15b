"""Syslog alert sink against real listeners on 127.0.0.1: UDP datagrams, TCP with octet-counting
framing (RFC 6587) and TLS (RFC 5425) with a CA made in the test.  Every received message must
pass a strict RFC 5424 parser (a regex on the ABNF of the header and structured data)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sample_alerts import make_alert
from syslog_server import FramedServer, check_message, parse
from tls_ca import Pki, make_pki
from tunnelhound.sinks.delivery import DeliveryPolicy
from tunnelhound.sinks.syslog import SD_ID, SyslogSink, format_message
from tunnelhound.sinks.tls import tls_context

FAST = DeliveryPolicy(
    queue_size=1000, retry_seconds=30.0, backoff_initial=0.05, backoff_max=0.2, close_timeout=5.0
)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def tcp_server() -> Iterator[FramedServer]:
    server = FramedServer()
    yield server
    server.stop()


# ---------------------------------------------------------------- format


def test_message_fields_and_severity_mapping() -> None:
    # PRI = facility 16 (local0) * 8 + syslog severity: critical 2, high 3, medium 4, low 5.
    for rule, pri in (("dns_tunnel", 130), ("port_scan", 131), ("beacon", 132), ("exfiltration", 133)):
        alert = make_alert(rule)
        raw = format_message(alert, facility=16, hostname="sensor-1.example", procid=4242)
        msg = check_message(raw, alert, pri=pri)
        assert msg.procid == "4242"
    dns = parse(format_message(make_alert("dns_tunnel"), facility=4, hostname="h", procid=1))
    assert dns.pri == 4 * 8 + 2
    assert dns.sd[SD_ID]["attack"] == ["TA0011", "T1071", "T1071.004"]
    assert dns.sd[SD_ID]["destination_ip"] == ["198.18.5.10"]


def test_escaping_and_header_tokens() -> None:
    alert = make_alert("port_scan", destination=None)
    alert["rule"]["name"] = 'odd "rule" ]\\ with a very long name past thirty-two characters'
    alert["@timestamp"] = "not a time"
    raw = format_message(alert, facility=16, hostname="my host", procid=7)
    msg = parse(raw)
    assert msg.msgid == 'odd_"rule"_]\\_with_a_very_long_n'  # printable ASCII, cut to 32
    assert len(msg.msgid) == 32
    assert msg.hostname == "my_host"
    assert msg.timestamp == "-"
    assert msg.sd[SD_ID]["rule_name"] == [alert["rule"]["name"]]  # escaped, then unescaped
    assert "destination_ip" not in msg.sd[SD_ID]
    assert b"\n" not in raw


# ---------------------------------------------------------------- transports


def test_udp_one_datagram_per_alert() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(10)
    alerts = [
        make_alert(rule, seq=i)
        for i, rule in enumerate(("port_scan", "dns_tunnel", "beacon", "exfiltration"))
    ]
    sink = SyslogSink(
        "127.0.0.1", listener.getsockname()[1], transport="udp", hostname="sensor-1.example", policy=FAST
    )
    try:
        sink.write_alerts(alerts)
        got = [listener.recv(65535) for _ in alerts]
    finally:
        sink.close()
        listener.close()
    for raw, alert, pri in zip(got, alerts, (131, 130, 132, 133), strict=True):
        check_message(raw, alert, pri=pri)
    assert sink.stats() == {"sent": 4, "failed": 0, "dropped": 0, "retried": 0, "queued": 0}


def test_tcp_octet_counting_and_reconnect_after_server_restart(tcp_server: FramedServer) -> None:
    port = tcp_server.port
    sink = SyslogSink("127.0.0.1", port, transport="tcp", hostname="sensor-1.example", policy=FAST)
    first = [make_alert("port_scan", seq=i) for i in range(50)]
    sink.write_alerts(first)
    wait_for(lambda: len(tcp_server.received) == 50)
    for raw, alert in zip(tcp_server.received, first, strict=True):
        check_message(raw, alert, pri=131)
    assert len(tcp_server.connections) == 1
    # The server goes away; alerts written meanwhile are retried until it is back.
    tcp_server.stop()
    second = [make_alert("dns_tunnel", seq=i) for i in range(20)]
    start = time.monotonic()
    sink.write_alerts(second)
    assert time.monotonic() - start < 0.5  # queued, not sent in the caller's thread
    wait_for(lambda: sink.stats()["retried"] > 0)
    restarted = FramedServer(port)
    try:
        wait_for(lambda: len(restarted.received) == 20)
        for raw, alert in zip(restarted.received, second, strict=True):
            check_message(raw, alert, pri=130)
        sink.close()
    finally:
        restarted.stop()
    stats = sink.stats()
    assert (stats["sent"], stats["failed"], stats["dropped"], stats["queued"]) == (70, 0, 0, 0)


def test_tls_with_generated_ca(pki: Pki) -> None:
    server = FramedServer(tls=pki.server_context())
    alerts = [make_alert("beacon", seq=i) for i in range(10)]
    sink = SyslogSink(
        "127.0.0.1",
        server.port,
        transport="tls",
        hostname="sensor-1.example",
        tls=tls_context(str(pki.ca)),
        policy=FAST,
    )
    try:
        # Two batches with a pause between: the server's TLS 1.3 session tickets are waiting
        # on the socket by the second, and must not be taken for a close.
        sink.write_alerts(alerts[:5])
        wait_for(lambda: len(server.received) == 5)
        time.sleep(0.2)
        sink.write_alerts(alerts[5:])
        wait_for(lambda: len(server.received) == 10)
        sink.close()
    finally:
        server.stop()
    for raw, alert in zip(server.received, alerts, strict=True):
        check_message(raw, alert, pri=132)
    assert len(server.connections) == 1  # one stream kept open for all messages
    assert sink.stats()["sent"] == 10


def test_tls_untrusted_server_is_counted_failed_never_raised(pki: Pki, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other")  # a CA that did not sign the server's certificate
    server = FramedServer(tls=pki.server_context())
    policy = DeliveryPolicy(retry_seconds=0.3, backoff_initial=0.05, backoff_max=0.1, close_timeout=5.0)
    sink = SyslogSink(
        "127.0.0.1", server.port, transport="tls", tls=tls_context(str(other.ca)), policy=policy
    )
    try:
        sink.write_alerts([make_alert(), make_alert(seq=1)])
        wait_for(lambda: sink.stats()["failed"] == 2)
        sink.close()
    finally:
        server.stop()
    stats = sink.stats()
    assert server.received == []
    assert stats["sent"] == 0 and stats["retried"] >= 1 and stats["queued"] == 0


def test_an_alert_that_is_not_json_is_counted_failed(tcp_server: FramedServer) -> None:
    bad = make_alert(seq=1)
    bad["tunnelhound"]["alert"]["evidence"]["flow_count"] = {1}
    sink = SyslogSink("127.0.0.1", tcp_server.port, transport="tcp", hostname="sensor-1.example", policy=FAST)
    sink.write_alerts([bad, make_alert(seq=2)])
    wait_for(lambda: len(tcp_server.received) == 1)
    sink.close()
    check_message(tcp_server.received[0], make_alert(seq=2), pri=131)
    assert (sink.stats()["sent"], sink.stats()["failed"]) == (1, 1)


def test_full_queue_drops_are_counted() -> None:
    # Nothing listens on this port: every attempt fails, so the queue only fills.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    policy = DeliveryPolicy(
        queue_size=5, retry_seconds=60, backoff_initial=1.0, backoff_max=1.0, close_timeout=0.1
    )
    sink = SyslogSink("127.0.0.1", port, transport="tcp", policy=policy)
    start = time.monotonic()
    sink.write_alerts([make_alert(seq=i) for i in range(12)])
    assert time.monotonic() - start < 0.5
    assert sink.stats()["dropped"] == 7
    sink.close()
    stats = sink.stats()
    assert stats["dropped"] == 12 and stats["sent"] == 0 and stats["queued"] == 0
