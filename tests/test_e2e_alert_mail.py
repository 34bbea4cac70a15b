"""Issue 8, acceptance 1, end to end: the alerts of a lab replay (`tunnelhound replay` of the
NetFlow v9 export, the SMTP sink configured in YAML) arrive at a real aiosmtpd server on
127.0.0.1 with STARTTLS and AUTH required.  Each message is parsed: subject, envelope and
header recipients per severity, the body's fields, and the attached JSON, which must equal
the document the NDJSON alert sink wrote.  A second alert of one rule for one host inside the
rate-limit window is not mailed; with the server hung and then down during the replay, the
replay runs in its normal time and every mail arrives once the server is back.  With a
digest interval, one message per route carries the same alerts."""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import tunnelhound.runtime
from lab_replay import ndjson_alerts, replay_alerts, replay_args
from smtp_server import PASSWORD, USER, Inbox, Mail, attachment, body_of, free_port, start_server, wait_for
from tls_ca import Pki, make_pki
from tunnelhound.cli import main
from tunnelhound.config import Config
from tunnelhound.sinks.alerts import AlertFanOut
from tunnelhound.sinks.alertsink import AlertSink

LEVELS = {21: "low", 47: "medium", 73: "high", 99: "critical"}
SOC = ["soc@example.org"]
PAGER = ["pager@example.org", "lead@example.org"]
SMTP_TIMEOUT = 3.0  # what one attempt against a hung server costs


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@dataclass
class OpenedSinks:
    """The alert fan-outs `tunnelhound replay` opened, and when each was closed: by then the
    replay has decoded, normalized and judged every flow and queued every alert."""

    fanouts: list[AlertFanOut] = field(default_factory=list)
    closed_at: list[float] = field(default_factory=list)

    def smtp(self) -> AlertSink:
        (sink,) = [s for s in self.fanouts[-1].sinks if s.name == "smtp"]
        return sink


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> OpenedSinks:
    """Watch the real alert sinks of replays in this test (their counters, their close)."""
    record = OpenedSinks()
    real_open = tunnelhound.runtime.open_alert_sinks

    def watched_open(config: Config, **kwargs: Any) -> AlertFanOut:
        fanout = real_open(config, **kwargs)
        real_close = fanout.close

        def close() -> None:
            record.closed_at.append(time.monotonic())
            real_close()

        fanout.close = close  # type: ignore[method-assign]
        record.fanouts.append(fanout)
        return fanout

    monkeypatch.setattr(tunnelhound.runtime, "open_alert_sinks", watched_open)
    monkeypatch.setenv("E2E_SMTP_PASSWORD", PASSWORD)
    return record


def smtp_config(pki: Pki, port: int, rate_limit: float = 3600.0, digest: float = 0.0) -> dict[str, Any]:
    """STARTTLS with the test CA and AUTH; high alerts page two people, the rest go to the SOC."""
    return {
        "alerts": {
            "smtp": {
                "host": "127.0.0.1",
                "port": port,
                "security": "starttls",
                "username": USER,
                "password_env": "E2E_SMTP_PASSWORD",
                "ca_certs": str(pki.ca),
                "timeout": SMTP_TIMEOUT,
                "from_address": "tunnelhound@sensor.example",
                "to": SOC,
                "severity": {"high": {"from_address": "urgent@sensor.example", "to": PAGER}},
                "rate_limit_seconds": rate_limit,
                "digest_interval": digest,
            },
            "delivery": {"backoff_initial": 0.05, "backoff_max": 0.3, "close_timeout": 30.0},
        }
    }


def first_per_rule_and_host(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a per (rule, source host) rate limit lets through, in order."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for alert in alerts:
        key = (alert["rule"]["id"], alert["source"]["ip"])
        if key not in seen:
            seen.add(key)
            kept.append(alert)
    return kept


def body_fields(body: str) -> dict[str, list[str]]:
    """The body's ``Name:   value`` lines (continuation lines appended to the field before)."""
    fields: dict[str, list[str]] = {}
    name = ""
    for line in body.splitlines()[2:]:
        match = re.fullmatch(r"([A-Za-z&' ()/]+):(?: +(.*))?", line)
        if match and not line.startswith(" "):
            name = match[1]
            fields[name] = [match[2]] if match[2] is not None else []
        else:
            fields[name].append(line.strip())
    return fields


def check_route(mail: Mail, level: str) -> None:
    """Envelope and header sender and recipients of a ``level`` message."""
    sender, recipients = (
        ("urgent@sensor.example", PAGER) if level == "high" else ("tunnelhound@sensor.example", SOC)
    )
    assert (mail.mail_from, mail.rcpt_tos) == (sender, recipients)
    assert (mail.message["From"], mail.message["To"]) == (sender, ", ".join(recipients))


def check_mail(mail: Mail, alert: dict[str, Any]) -> None:
    """One received message against the alert document the NDJSON sink wrote."""
    level = LEVELS[alert["event"]["severity"]]
    check_route(mail, level)
    msg = mail.message
    assert msg["Subject"] == f"[Tunnelhound {level}] {alert['message']} on {alert['source']['ip']}"
    check_body(body_of(msg), alert)
    name, attached = attachment(msg)
    assert name == f"alert-{alert['event']['id']}.json"
    assert attached == alert


def check_body(body: str, alert: dict[str, Any]) -> None:
    """The body's title and fields against the alert document."""
    level = LEVELS[alert["event"]["severity"]]
    source, destination = alert["source"]["ip"], alert["destination"]["ip"]
    assert body.splitlines()[0] == alert["message"]  # the title
    fields = body_fields(body)
    threat = alert["threat"]
    ids = threat["tactic"]["id"] + threat["technique"]["id"] + threat["technique"]["subtechnique"]["id"]
    sub = threat["technique"]["subtechnique"]
    names = [
        f"{i} {n}"
        for i, n in zip(
            ids, threat["tactic"]["name"] + threat["technique"]["name"] + sub["name"], strict=True
        )
    ]
    evidence = alert["tunnelhound"]["alert"]["evidence"]
    assert fields["Severity"] == [f"{level} ({alert['event']['severity']})"]
    assert fields["Rule"] == [f"{alert['rule']['name']} ({alert['rule']['id']})"]
    assert fields["Hosts"] == [f"{source} -> {destination}"]
    assert fields["Related"] == [", ".join(alert["related"]["ip"])]
    assert fields["Time"] == [f"{alert['event']['start']} .. {alert['event']['end']}"]
    assert fields["Reason"] == [alert["event"]["reason"]]
    assert fields["ATT&CK"][0] == ", ".join(ids) and ids
    assert fields["ATT&CK"][1:] == names
    assert fields["Evidence"] == [f"{evidence['flow_count']} flows"]
    assert fields["Evidence query (Kibana / Lucene)"] == [evidence["query"]]
    assert fields["Alert id"] == [alert["event"]["id"]]


def test_lab_replay_alerts_are_mailed_once_per_rule_and_host(
    pki: Pki, tmp_path: Path, opened: OpenedSinks
) -> None:
    inbox, port = Inbox(), free_port()
    controller = start_server(pki, inbox, port)
    try:
        alerts = replay_alerts(tmp_path, config=smtp_config(pki, port))
        limited = opened.smtp().stats()
        # A second replay with the rate limit off: every alert is mailed.
        unlimited = replay_alerts(tmp_path, run="all", config=smtp_config(pki, port, 0.0), state="state2")
    finally:
        controller.stop()
    assert len(alerts) == 13
    mailed = first_per_rule_and_host(alerts)
    # The lab's port scanner hits two hosts and its tunnel client two ports: one mail each.
    assert sorted((a["rule"]["name"], a["source"]["ip"]) for a in alerts if a not in mailed) == [
        ("app_tunnel_flow", "10.77.1.70"),
        ("port_scan_vertical", "10.77.1.68"),
    ]
    first, rest = inbox.mails[: len(mailed)], inbox.mails[len(mailed) :]
    assert len(first) == 11
    for mail, alert in zip(first, mailed, strict=True):  # close() waited: all there, in order
        check_mail(mail, alert)
    assert {LEVELS[a["event"]["severity"]] for a in mailed} == {"high", "medium"}  # both routes used
    # Rate limit 0: every alert of the second replay is mailed.
    assert [attachment(m.message)[1]["event"]["id"] for m in rest] == [a["event"]["id"] for a in unlimited]
    assert len(rest) == 13
    assert (limited["sent"], limited["rate_limited"], limited["failed"], limited["queued"]) == (11, 2, 0, 0)
    assert (opened.smtp().stats()["sent"], opened.smtp().stats()["rate_limited"]) == (13, 0)


def test_lab_replay_digest_per_route(pki: Pki, tmp_path: Path, opened: OpenedSinks) -> None:
    inbox, port = Inbox(), free_port()
    controller = start_server(pki, inbox, port)
    try:
        # An hour's digest: sent when the replay closes its sinks, one message per route.
        alerts = replay_alerts(tmp_path, config=smtp_config(pki, port, digest=3600.0))
    finally:
        controller.stop()
    mailed = first_per_rule_and_host(alerts)
    by_level = {
        level: [a for a in mailed if LEVELS[a["event"]["severity"]] == level] for level in ("high", "medium")
    }
    assert sorted(m.message["Subject"].split("]")[0] for m in inbox.mails) == [
        "[Tunnelhound high",
        "[Tunnelhound medium",
    ]
    for mail in inbox.mails:
        level = mail.message["Subject"].split("]")[0].split()[1]
        digest = by_level[level]
        check_route(mail, level)
        assert mail.message["Subject"] == (
            f"[Tunnelhound {level}] {len(digest)} alerts, highest: {digest[0]['message']}"
        )
        sections = body_of(mail.message).split("\n" + "-" * 72 + "\n\n")
        for section, alert in zip(sections, digest, strict=True):
            check_body(section, alert)
        assert attachment(mail.message) == ("alerts.json", digest)
    assert (opened.smtp().stats()["sent"], opened.smtp().stats()["rate_limited"]) == (11, 2)


def test_server_down_during_the_replay_does_not_slow_it_and_mail_arrives_later(
    pki: Pki, tmp_path: Path, opened: OpenedSinks
) -> None:
    # Reference: the same replay with no mail server configured.
    start = time.monotonic()
    reference = replay_alerts(tmp_path, run="reference", state="reference-state")
    normal = opened.closed_at[-1] - start

    # A hung server (accepts, never answers: each attempt waits SMTP_TIMEOUT), later none.
    port = free_port()
    hung = socket.socket()
    hung.bind(("127.0.0.1", port))
    hung.listen(64)
    done: list[int] = []
    args = replay_args(tmp_path, config=smtp_config(pki, port))
    replay = threading.Thread(target=lambda: done.append(main(args)))
    start = time.monotonic()
    replay.start()
    inbox = Inbox()
    try:
        wait_for(lambda: len(opened.closed_at) == 2, timeout=20)
        down = opened.closed_at[-1] - start
        smtp = opened.smtp()
        wait_for(lambda: smtp.stats()["retried"] >= 1)  # an attempt timed out
        hung.close()
        retried = smtp.stats()["retried"]
        wait_for(lambda: smtp.stats()["retried"] > retried)  # refused, retried again
        stats = smtp.stats()
        assert (stats["sent"], stats["queued"], stats["rate_limited"]) == (0, 11, 2)
        controller = start_server(pki, inbox, port)
        try:
            replay.join(timeout=30)  # close() delivers what is queued, then returns
        finally:
            controller.stop()
    finally:
        hung.close()
    assert done == [0]
    # Flow processing ran at its normal pace: a sink that sent in the pipeline's thread would
    # have waited at least one SMTP timeout (3 s) per mailed alert.
    print(f"replay to all alerts queued: {normal:.2f} s normally, {down:.2f} s with SMTP hung")
    assert down < normal + SMTP_TIMEOUT - 1.0, (down, normal)
    alerts = ndjson_alerts(tmp_path / "out")
    assert [a["rule"]["name"] for a in alerts] == [a["rule"]["name"] for a in reference]
    mailed = first_per_rule_and_host(alerts)
    assert len(inbox.mails) == len(mailed) == 11
    for mail, alert in zip(inbox.mails, mailed, strict=True):  # retried in order, each once
        check_mail(mail, alert)
    stats = smtp.stats()
    assert (stats["sent"], stats["failed"], stats["dropped"], stats["queued"]) == (11, 0, 0, 0)
    assert stats["retried"] >= 2
