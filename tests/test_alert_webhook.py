"""Webhook alert sink against a real http.server on 127.0.0.1: JSON bodies, headers, retries
after 503 (with Retry-After), permanent refusals, and a bounded queue that never blocks."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from sample_alerts import make_alert
from tunnelhound.sinks.delivery import DeliveryPolicy
from tunnelhound.sinks.webhook import WebhookSink

FAST = DeliveryPolicy(
    queue_size=100, retry_seconds=30.0, backoff_initial=0.05, backoff_max=0.2, close_timeout=5.0
)


class Receiver(http.server.ThreadingHTTPServer):
    """Answers each POST with the next status of ``script`` (then 200), recording what came."""

    daemon_threads = True

    def __init__(self, script: list[int] | None = None, *, delay: float = 0.0, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.script = list(script or [])
        self.delay = delay
        self.lock = threading.Lock()
        self.requests: list[tuple[int, dict[str, str], Any]] = []  # (status answered, headers, body)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def accepted(self) -> list[Any]:
        with self.lock:
            return [body for status, _, body in self.requests if status == 200]

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.server.delay)
        with self.server.lock:
            status = self.server.script.pop(0) if self.server.script else 200
            self.server.requests.append((status, dict(self.headers.items()), orjson.loads(body)))
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_each_alert_is_posted_as_json_with_headers(receiver: Receiver) -> None:
    alerts = [make_alert(rule, seq=i) for i, rule in enumerate(("port_scan", "dns_tunnel", "beacon"))]
    sink = WebhookSink(receiver.url, headers={"Authorization": "Bearer s3cret", "X-Team": "soc"}, policy=FAST)
    sink.write_alerts(alerts)
    sink.close()
    assert receiver.accepted() == alerts
    _, headers, _ = receiver.requests[0]
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["X-Team"] == "soc"
    assert headers["User-Agent"].startswith("tunnelhound/")
    assert sink.stats() == {"sent": 3, "failed": 0, "dropped": 0, "retried": 0, "queued": 0}


def test_503_then_success_is_retried_in_order() -> None:
    server = Receiver([503, 503, 503])
    try:
        alerts = [make_alert(seq=i) for i in range(3)]
        sink = WebhookSink(server.url, policy=FAST)
        sink.write_alerts(alerts)
        wait_for(lambda: len(server.accepted()) == 3)
        sink.close()
    finally:
        server.stop()
    statuses = [status for status, _, _ in server.requests]
    assert statuses == [503, 503, 503, 200, 200, 200]
    # The first alert was refused three times and then accepted; order is kept.
    assert [body for _, _, body in server.requests[:4]] == [alerts[0]] * 4
    assert server.accepted() == alerts
    stats = sink.stats()
    assert (stats["sent"], stats["retried"], stats["failed"], stats["dropped"]) == (3, 3, 0, 0)


def test_endpoint_down_then_up_delivers_everything() -> None:
    server = Receiver()
    port = server.server_address[1]
    server.stop()  # connection refused from now on
    sink = WebhookSink(f"http://127.0.0.1:{port}/hook", policy=FAST)
    alerts = [make_alert(seq=i) for i in range(5)]
    start = time.monotonic()
    sink.write_alerts(alerts)
    assert time.monotonic() - start < 0.2
    wait_for(lambda: sink.stats()["retried"] >= 2)
    back = Receiver(port=port)
    try:
        wait_for(lambda: len(back.accepted()) == 5)
        sink.close()
    finally:
        back.stop()
    assert back.accepted() == alerts
    assert sink.stats()["sent"] == 5 and sink.stats()["failed"] == 0


def test_client_error_fails_without_retry(receiver: Receiver) -> None:
    receiver.script = [400]
    sink = WebhookSink(receiver.url, policy=FAST)
    sink.write_alerts([make_alert(seq=1), make_alert(seq=2)])
    sink.close()
    assert [status for status, _, _ in receiver.requests] == [400, 200]
    stats = sink.stats()
    assert (stats["sent"], stats["failed"], stats["retried"]) == (1, 1, 0)


def test_retry_time_exhausted_counts_failed() -> None:
    server = Receiver([503] * 1000)
    policy = DeliveryPolicy(retry_seconds=0.3, backoff_initial=0.05, backoff_max=0.05, close_timeout=2.0)
    try:
        sink = WebhookSink(server.url, policy=policy)
        sink.write_alerts([make_alert()])
        wait_for(lambda: sink.stats()["failed"] == 1)
        sink.close()
    finally:
        server.stop()
    stats = sink.stats()
    assert stats["sent"] == 0 and stats["retried"] >= 2
    assert len(server.requests) == stats["retried"] + 1


def test_slow_endpoint_never_blocks_and_full_queue_drops() -> None:
    server = Receiver(delay=0.5)
    policy = DeliveryPolicy(
        queue_size=10, retry_seconds=30, backoff_initial=0.05, backoff_max=0.1, close_timeout=0.2
    )
    try:
        sink = WebhookSink(server.url, policy=policy)
        start = time.monotonic()
        for i in range(50):
            sink.write_alerts([make_alert(seq=i)])
        elapsed = time.monotonic() - start
        stats = sink.stats()
        sink.close()
    finally:
        server.stop()
    assert elapsed < 1.0  # 50 writes against an endpoint needing 0.5 s per request: 25 s if blocking
    assert stats["dropped"] == 40
    final = sink.stats()
    # Everything was accounted for: delivered, or dropped (full queue, or still queued at close).
    assert final["sent"] + final["dropped"] + final["failed"] == 50
    assert final["queued"] == 0


def test_an_alert_that_is_not_json_is_counted_failed(receiver: Receiver) -> None:
    bad = make_alert(seq=1)
    bad["event"]["severity"] = object()
    sink = WebhookSink(receiver.url, policy=FAST)
    sink.write_alerts([bad, make_alert(seq=2)])
    sink.close()
    assert receiver.accepted() == [make_alert(seq=2)]
    assert (sink.stats()["sent"], sink.stats()["failed"]) == (1, 1)
