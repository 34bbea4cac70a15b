"""E-mail alert sink against a real aiosmtpd server on 127.0.0.1 (issue 8, acceptance 1):
STARTTLS with a CA made in the test, AUTH, per-severity routing, the message parsed with
`email` (subject, recipients, body fields, attached JSON), the per rule-and-host rate limit,
digests, implicit TLS, permanent refusals, and a server that is down and comes back while
``write_alerts`` keeps returning at once."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sample_alerts import make_alert
from smtp_server import (
    PASSWORD,
    USER,
    Inbox,
    attachment,
    body_of,
    free_port,
    start_server,
    wait_for,
)
from tls_ca import Pki, make_pki
from tunnelhound.sinks.delivery import DeliveryPolicy
from tunnelhound.sinks.smtp import Route, SmtpServer, SmtpSink
from tunnelhound.sinks.tls import tls_context

FAST = DeliveryPolicy(
    queue_size=100, retry_seconds=60.0, backoff_initial=0.05, backoff_max=0.3, close_timeout=10.0
)
SOC = Route(from_address="tunnelhound@sensor.example", to=("soc@example.org",))
PAGER = Route(from_address="urgent@sensor.example", to=("pager@example.org", "lead@example.org"))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def server(pki: Pki) -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = start_server(pki, inbox, port)
    yield inbox, port
    controller.stop()


def make_sink(pki: Pki, port: int, **kw: Any) -> SmtpSink:
    options: dict[str, Any] = {"routes": {"critical": PAGER}, "policy": FAST, **kw}
    server = SmtpServer(
        host="127.0.0.1",
        port=port,
        security=options.pop("security", "starttls"),
        username=USER,
        password=PASSWORD,
        tls=tls_context(str(pki.ca)),
        timeout=options.pop("timeout", 5.0),
    )
    return SmtpSink(server, default=SOC, **options)


def test_one_message_per_alert_over_starttls_with_routing(pki: Pki, server: tuple[Inbox, int]) -> None:
    inbox, port = server
    scan = make_alert("port_scan", source="10.77.1.68")
    dns = make_alert("dns_tunnel", source="10.77.1.99", destination="198.18.7.7")
    sink = make_sink(pki, port)
    sink.write_alerts([scan, dns])
    wait_for(lambda: inbox.count() == 2)
    sink.close()
    first, second = inbox.mails
    # High severity: the default route.
    assert first.mail_from == "tunnelhound@sensor.example"
    assert first.rcpt_tos == ["soc@example.org"]
    msg = first.message
    assert msg["Subject"] == "[Tunnelhound high] Port scan: many unanswered destination ports on 10.77.1.68"
    assert msg["From"] == "tunnelhound@sensor.example"
    assert msg["To"] == "soc@example.org"
    body = body_of(msg)
    assert body.startswith("Port scan: many unanswered destination ports\n")
    assert "Severity:   high (73)\n" in body
    assert f"Rule:       port_scan ({scan['rule']['id']})\n" in body
    assert "Hosts:      10.77.1.68 -> 198.18.5.10\n" in body
    assert "ATT&CK:     TA0007, T1046\n" in body
    assert "T1046 Network Service Discovery" in body
    assert "Evidence:   212 flows\n" in body
    assert scan["tunnelhound"]["alert"]["evidence"]["query"] in body
    assert f"Reason:     {scan['event']['reason']}\n" in body
    name, attached = attachment(msg)
    assert name == f"alert-{scan['event']['id']}.json"
    assert attached == scan
    # Critical: the pager route, two recipients.
    assert second.mail_from == "urgent@sensor.example"
    assert second.rcpt_tos == ["pager@example.org", "lead@example.org"]
    assert second.message["To"] == "pager@example.org, lead@example.org"
    assert second.message["Subject"].startswith("[Tunnelhound critical] DNS tunnel")
    assert "ATT&CK:     TA0011, T1071, T1071.004\n" in body_of(second.message)
    assert attachment(second.message)[1] == dns
    assert sink.stats() == {
        "sent": 2,
        "failed": 0,
        "dropped": 0,
        "retried": 0,
        "rate_limited": 0,
        "refused_recipients": 0,
        "queued": 0,
    }


def test_long_evidence_query_is_encoded_within_line_limits(pki: Pki, server: tuple[Inbox, int]) -> None:
    inbox, port = server
    alert = make_alert()
    ids = [f"{i:040x}" for i in range(100)]  # the most evidence ids an alert carries
    alert["tunnelhound"]["alert"]["evidence"]["query"] = (
        "event.id:(" + " OR ".join(f'"{i}"' for i in ids) + ")"
    )
    alert["message"] = "A title long enough that subject line and host together pass seventy-eight columns"
    sink = make_sink(pki, port)
    sink.write_alerts([alert])
    wait_for(lambda: inbox.count() == 1)
    sink.close()
    message = inbox.mails[0].message
    assert message["Subject"] == f"[Tunnelhound high] {alert['message']} on 10.77.1.68"
    assert alert["tunnelhound"]["alert"]["evidence"]["query"] in body_of(message)
    # As received: the subject on one header line; body lines within RFC 5322's 78 columns
    # (quoted-printable, as Python wraps it), far below the 998 an MTA may refuse beyond.
    header, _, body = inbox.mails[0].raw.partition(b"\r\n\r\n")
    subject = [line for line in header.split(b"\r\n") if line.startswith(b"Subject:")]
    assert subject == [f"Subject: {message['Subject']}".encode()]
    assert max(len(line) for line in body.split(b"\r\n") if not line.startswith(b"Content-")) <= 78
    assert attachment(message)[1] == alert


def test_rate_limit_per_rule_and_host(pki: Pki, server: tuple[Inbox, int]) -> None:
    inbox, port = server
    now = [1000.0]
    sink = make_sink(pki, port, rate_limit_seconds=600.0, clock=lambda: now[0])
    sink.write_alerts(
        [
            make_alert("port_scan", source="10.0.0.1", seq=1),
            make_alert("port_scan", source="10.0.0.1", seq=2),  # same rule and host: not sent
            make_alert("port_scan", source="10.0.0.2", seq=3),  # other host
            make_alert("beacon", source="10.0.0.1", seq=4),  # other rule
        ]
    )
    now[0] += 599.0
    sink.write_alerts([make_alert("port_scan", source="10.0.0.1", seq=5)])  # still inside: not sent
    now[0] += 2.0
    sink.write_alerts([make_alert("port_scan", source="10.0.0.1", seq=6)])  # window over: sent
    wait_for(lambda: inbox.count() == 4)
    sink.close()
    sent = [
        (m.message["Subject"].split("] ")[1], attachment(m.message)[1]["event"]["id"]) for m in inbox.mails
    ]
    expected = [make_alert("port_scan", source="10.0.0.1", seq=s)["event"]["id"] for s in (1, 6)]
    assert [eid for _, eid in sent if eid in expected] == expected
    assert len(sent) == 4
    stats = sink.stats()
    assert (stats["sent"], stats["rate_limited"]) == (4, 2)


def test_server_down_alerts_retried_and_delivered_when_back(pki: Pki) -> None:
    port = free_port()
    # First a server that accepts connections and never answers (a hung MTA: the worst case,
    # each attempt waits for the timeout), then none at all (refused), then the real one.
    hung = socket.socket()
    hung.bind(("127.0.0.1", port))
    hung.listen(64)
    sink = make_sink(pki, port, timeout=0.5)
    alerts = [make_alert("port_scan", source=f"10.0.1.{i}") for i in range(1, 21)]
    start = time.monotonic()
    for alert in alerts[:10]:
        sink.write_alerts([alert])
    hung_writes = time.monotonic() - start
    wait_for(lambda: sink.stats()["retried"] >= 1)  # one attempt timed out
    hung.close()
    start = time.monotonic()
    for alert in alerts[10:]:
        sink.write_alerts([alert])
    down_writes = time.monotonic() - start
    # 10 writes each, where a single blocking send would take 0.5 s (hung) or fail.
    assert hung_writes < 0.25 and down_writes < 0.25, (hung_writes, down_writes)
    wait_for(lambda: sink.stats()["retried"] >= 3)
    assert sink.stats()["sent"] == 0 and sink.stats()["queued"] == 20
    inbox = Inbox()
    controller = start_server(pki, inbox, port)
    try:
        wait_for(lambda: inbox.count() == 20)
        sink.close()
    finally:
        controller.stop()
    assert [attachment(m.message)[1] for m in inbox.mails] == alerts
    stats = sink.stats()
    assert (stats["sent"], stats["failed"], stats["dropped"], stats["queued"]) == (20, 0, 0, 0)


def test_digest_per_interval(pki: Pki, server: tuple[Inbox, int]) -> None:
    inbox, port = server
    sink = make_sink(pki, port, digest_interval=0.5)
    batch = [make_alert("port_scan", source=f"10.0.2.{i}") for i in range(1, 4)]
    sink.write_alerts(batch[:2])
    sink.write_alerts(batch[2:])
    assert inbox.count() == 0
    wait_for(lambda: inbox.count() == 1)  # the delivery thread sends it when the interval is up
    sink.close()
    mail = inbox.mails[0]
    assert mail.rcpt_tos == ["soc@example.org"]
    assert (
        mail.message["Subject"]
        == "[Tunnelhound high] 3 alerts, highest: Port scan: many unanswered destination ports"
    )
    body = body_of(mail.message)
    assert [f"Hosts:      10.0.2.{i} -> 198.18.5.10" in body for i in (1, 2, 3)] == [True] * 3
    name, attached = attachment(mail.message)
    assert name == "alerts.json"
    assert attached == batch
    assert sink.stats()["sent"] == 3


def test_close_sends_a_pending_digest(pki: Pki, server: tuple[Inbox, int]) -> None:
    inbox, port = server
    sink = make_sink(pki, port, digest_interval=3600.0)
    sink.write_alerts([make_alert("beacon", source="10.0.3.1"), make_alert("dns_tunnel", source="10.0.3.2")])
    sink.close()
    # One digest per route: the beacon (medium) to SOC, the DNS tunnel (critical) to the pager.
    assert sorted(tuple(m.rcpt_tos) for m in inbox.mails) == [
        ("pager@example.org", "lead@example.org"),
        ("soc@example.org",),
    ]


# aiosmtpd warns about AUTH without STARTTLS; on an implicit-TLS port there is nothing else.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls(pki: Pki) -> None:
    inbox, port = Inbox(), free_port()
    controller = start_server(pki, inbox, port, implicit=True)
    try:
        sink = make_sink(pki, port, security="tls")
        sink.write_alerts([make_alert()])
        wait_for(lambda: inbox.count() == 1)
        sink.close()
    finally:
        controller.stop()
    assert attachment(inbox.mails[0].message)[1] == make_alert()


def test_permanent_refusal_is_failed_not_retried(pki: Pki) -> None:
    inbox, port = Inbox(refuse="550 5.1.1 mailbox unavailable"), free_port()
    controller = start_server(pki, inbox, port)
    try:
        sink = make_sink(pki, port)
        sink.write_alerts([make_alert()])
        wait_for(lambda: sink.stats()["failed"] == 1)
        sink.close()
    finally:
        controller.stop()
    assert inbox.count() == 0
    assert sink.stats()["retried"] == 0


def test_wrong_password_is_failed(pki: Pki, server: tuple[Inbox, int]) -> None:
    inbox, port = server
    bad = SmtpServer(
        host="127.0.0.1", port=port, username=USER, password="wrong", tls=tls_context(str(pki.ca))
    )
    sink = SmtpSink(bad, default=SOC, policy=FAST)
    sink.write_alerts([make_alert()])
    wait_for(lambda: sink.stats()["failed"] == 1)
    sink.close()
    assert inbox.count() == 0


def test_default_tls_verifies_the_server(pki: Pki, server: tuple[Inbox, int]) -> None:
    # No context given: the system CAs, which do not know the test CA, so nothing is sent.
    inbox, port = server
    policy = DeliveryPolicy(retry_seconds=0.2, backoff_initial=0.05, backoff_max=0.05, close_timeout=2.0)
    unverified = SmtpServer(host="127.0.0.1", port=port, username=USER, password=PASSWORD)
    sink = SmtpSink(unverified, default=SOC, policy=policy)
    sink.write_alerts([make_alert()])
    wait_for(lambda: sink.stats()["failed"] == 1)
    sink.close()
    assert inbox.count() == 0 and sink.stats()["retried"] >= 1
