"""E-mail alert sink (issue 8): one message per alert, or a digest per interval, over SMTP.

* Security: ``starttls`` (submission, port 587), ``tls`` (implicit TLS, port 465) or ``none``
  (a relay on localhost); optional AUTH with a password from the environment.
* Routing: From and To per alert severity (:class:`Route`), falling back to the defaults.
* Rate limit: after a message for a rule and host (``rule.id``, ``source.ip``), further
  alerts for the same pair within ``rate_limit_seconds`` are not sent, counted
  ``rate_limited``; the window starts at the alert that was sent.
* Body: title, severity, rule, hosts, time, reason, ATT&CK ids and names, the evidence count
  and query; the alert document attached as ``alert-<event.id>.json`` (a digest lists every
  alert and attaches ``alerts.json``, a JSON array).
* Delivery: on a background thread with retries and backoff (:mod:`tunnelhound.sinks.delivery`):
  4xx answers and connection errors are retried, 5xx answers fail for good.
"""

from __future__ import annotations

import dataclasses
import email.policy
import smtplib
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import orjson

from tunnelhound.sinks import alertview
from tunnelhound.sinks.alertsink import SinkStats
from tunnelhound.sinks.delivery import Deliverer, DeliveryError, DeliveryPolicy
from tunnelhound.sinks.tls import tls_context

__all__ = ["Route", "SmtpServer", "SmtpSink", "render_body"]

_LEVELS = ("critical", "high", "medium", "low")
# Parts are encoded with the standard 78 columns (a long evidence query becomes quoted-printable
# lines of that width); the finished message is then written with headers up to RFC 5322's hard limit of 998,
# because Python folds a long subject onto a continuation line that parsers return with a
# leading blank.
_HEADER_POLICY = email.policy.SMTP.clone(max_line_length=998)


@dataclass(frozen=True, kw_only=True, slots=True)
class Route:
    """Sender and recipients of one severity's mail."""

    from_address: str
    to: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class SmtpServer:
    """Where and how to connect."""

    host: str
    port: int = 587
    security: str = "starttls"
    """``starttls``, ``tls`` (implicit) or ``none``."""
    username: str = ""
    password: str = ""
    tls: ssl.SSLContext | None = None
    """Verifies the server (None: the system CAs, with host name checks)."""
    timeout: float = 10.0
    local_hostname: str | None = None


@dataclass(slots=True)
class _Mail:
    """A queued message: built on the delivery thread (the email package is slow, ~2 ms), once,
    so a retry re-sends the same Message-ID."""

    route: Route
    alerts: list[Mapping[str, Any]]
    message: EmailMessage | None = None


def render_body(alert: Mapping[str, Any]) -> str:
    """The plain-text part of one alert's message."""
    lookup = alertview.lookup
    lines = [
        alertview.title(alert),
        "",
        f"Severity:   {alertview.severity_label(alert)} ({alertview.severity(alert)})",
        f"Rule:       {lookup(alert, 'rule.name') or '-'} ({lookup(alert, 'rule.id') or '-'})",
        f"Hosts:      {' -> '.join(alertview.hosts(alert)) or '-'}",
        f"Related:    {', '.join(map(str, lookup(alert, 'related.ip') or [])) or '-'}",
        f"Time:       {lookup(alert, 'event.start') or '-'} .. {lookup(alert, 'event.end') or '-'}",
        f"Reason:     {lookup(alert, 'event.reason') or '-'}",
        f"ATT&CK:     {', '.join(alertview.attack_ids(alert)) or '-'}",
        *(f"            {name}" for name in alertview.attack_names(alert)),
        f"Evidence:   {lookup(alert, 'tunnelhound.alert.evidence.flow_count') or 0} flows",
        "Evidence query (Kibana / Lucene):",
        f"  {lookup(alert, 'tunnelhound.alert.evidence.query') or '-'}",
        f"Alert id:   {lookup(alert, 'event.id') or '-'}",
    ]
    reference = lookup(alert, "rule.reference")
    if reference:
        lines.append(f"Reference:  {reference}")
    return "\n".join(lines) + "\n"


def _subject(alert: Mapping[str, Any]) -> str:
    hosts = alertview.hosts(alert)
    on = f" on {hosts[0]}" if hosts else ""
    return f"[Tunnelhound {alertview.severity_label(alert)}] {alertview.title(alert)}{on}"


def _one_line(text: str) -> str:
    # Header values must not carry line breaks (header injection, folding surprises).
    return " ".join(text.split())


class SmtpSink:
    """Send alerts by e-mail; see the module docstring for what is sent when."""

    name = "smtp"

    def __init__(
        self,
        server: SmtpServer,
        *,
        default: Route,
        routes: Mapping[str, Route] | None = None,
        digest_interval: float = 0.0,
        rate_limit_seconds: float = 3600.0,
        policy: DeliveryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if server.security not in ("starttls", "tls", "none"):
            raise ValueError(f"security must be starttls, tls or none, not {server.security!r}")
        if server.security != "none" and server.tls is None:
            # smtplib's own default context verifies nothing: never fall back to it.
            server = dataclasses.replace(server, tls=tls_context())
        self.server = server
        self.default = default
        self.routes = dict(routes or {})
        for level, route in [("default", default), *self.routes.items()]:
            if level != "default" and level not in _LEVELS:
                raise ValueError(f"unknown severity {level!r}; expected one of {', '.join(_LEVELS)}")
            if not route.from_address or not route.to:
                raise ValueError(f"route {level}: from_address and at least one recipient are needed")
        self.digest_interval = digest_interval
        self.rate_limit_seconds = rate_limit_seconds
        self.policy = policy or DeliveryPolicy()
        self._clock = clock
        self._stats = SinkStats("rate_limited", "refused_recipients")
        # (rule, host) -> when its last mail was queued; insertion order is time order.
        self._last_sent: OrderedDict[tuple[str, str], float] = OrderedDict()
        # Digest mode: alerts waiting per route, and when the oldest arrived.
        self._digest: dict[Route, list[Mapping[str, Any]]] = {}
        self._digest_since = 0.0
        self._lock = threading.Lock()
        self._deliverer: Deliverer[_Mail] = Deliverer(
            f"smtp {server.host}:{server.port}",
            self._send,
            self._stats,
            self.policy,
            on_idle=self._flush_due_digest if digest_interval > 0 else None,
        )

    # ------------------------------------------------------------------ intake

    def write_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Rate-limit, then queue a message per alert or add it to the digest."""
        with self._lock:
            for alert in alerts:
                if not self._admit(alert):
                    continue
                route = self.routes.get(alertview.severity_label(alert), self.default)
                if self.digest_interval > 0:
                    self._add_to_digest(route, alert)
                else:
                    self._deliverer.put(_Mail(route, [alert]))
        if self.digest_interval > 0:
            self._flush_due_digest()

    def _admit(self, alert: Mapping[str, Any]) -> bool:
        if self.rate_limit_seconds <= 0:
            return True
        now = self._clock()
        # Forget pairs whose window has passed, oldest first: memory stays bounded by the
        # number of distinct (rule, host) pairs seen in one window.
        while self._last_sent:
            key, since = next(iter(self._last_sent.items()))
            if now - since < self.rate_limit_seconds:
                break
            del self._last_sent[key]
        key = alertview.rule_key(alert)
        if key in self._last_sent:
            self._stats.add("rate_limited")
            return False
        self._last_sent[key] = now
        return True

    def _add_to_digest(self, route: Route, alert: Mapping[str, Any]) -> None:
        pending = sum(len(v) for v in self._digest.values())
        if pending >= self.policy.queue_size:
            self._stats.add("dropped")
            return
        if not pending:
            self._digest_since = self._clock()
        self._digest.setdefault(route, []).append(alert)

    def _flush_due_digest(self, force: bool = False) -> None:
        with self._lock:
            if not self._digest:
                return
            if not force and self._clock() - self._digest_since < self.digest_interval:
                return
            digests, self._digest = self._digest, {}
        for route, alerts in digests.items():
            self._deliverer.put(_Mail(route, alerts), alerts=len(alerts))

    # ------------------------------------------------------------------ messages

    def _message(self, route: Route, alerts: Sequence[Mapping[str, Any]]) -> EmailMessage:
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = route.from_address
        msg["To"] = ", ".join(route.to)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=route.from_address.rpartition("@")[2] or None)
        if len(alerts) == 1:
            alert = alerts[0]
            msg["Subject"] = _one_line(_subject(alert))
            msg.set_content(render_body(alert))
            name = f"alert-{alertview.lookup(alert, 'event.id') or 'unknown'}.json"
            attachment = orjson.dumps(alert, option=orjson.OPT_INDENT_2)
        else:
            worst = max(alerts, key=alertview.severity)
            msg["Subject"] = _one_line(
                f"[Tunnelhound {alertview.severity_label(worst)}] {len(alerts)} alerts, "
                f"highest: {alertview.title(worst)}"
            )
            msg.set_content(("\n" + "-" * 72 + "\n\n").join(render_body(a) for a in alerts))
            name = "alerts.json"
            attachment = orjson.dumps(list(alerts), option=orjson.OPT_INDENT_2)
        msg.add_attachment(attachment, maintype="application", subtype="json", filename=name)
        msg.policy = _HEADER_POLICY
        return msg

    def _send(self, mail: _Mail) -> None:
        if mail.message is None:
            mail.message = self._message(mail.route, mail.alerts)
        msg = mail.message
        s = self.server
        try:
            client: smtplib.SMTP
            if s.security == "tls":
                client = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, context=s.tls, local_hostname=s.local_hostname
                )
            else:
                client = smtplib.SMTP(s.host, s.port, timeout=s.timeout, local_hostname=s.local_hostname)
            with client:
                if s.security == "starttls":
                    client.starttls(context=s.tls)
                if s.username:
                    client.login(s.username, s.password)
                refused = client.send_message(msg)
                # Some recipients refused: the others have it; re-sending would duplicate.
                if refused:
                    self._stats.add("refused_recipients", len(refused))
        except smtplib.SMTPRecipientsRefused as err:
            codes = [code for code, _ in err.recipients.values()]
            raise DeliveryError(f"all recipients refused: {codes}", permanent=min(codes) >= 500) from None
        except smtplib.SMTPResponseException as err:
            reply = (
                err.smtp_error.decode("utf-8", "replace")
                if isinstance(err.smtp_error, bytes)
                else err.smtp_error
            )
            raise DeliveryError(f"SMTP {err.smtp_code} {reply}", permanent=err.smtp_code >= 500) from None
        except smtplib.SMTPNotSupportedError as err:
            # STARTTLS or AUTH not offered: a configuration mismatch that retrying cannot fix.
            raise DeliveryError(str(err), permanent=True) from None
        except smtplib.SMTPException as err:
            raise DeliveryError(f"{type(err).__name__}: {err}") from None

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Queue the pending digest now, then send what is queued (bounded by the close timeout)."""
        self._flush_due_digest(force=True)
        self._deliverer.close()

    def stats(self) -> dict[str, int]:
        """sent/failed/dropped/retried/rate_limited and the queue length (digest included)."""
        with self._lock:
            pending = sum(len(v) for v in self._digest.values())
        return {**self._stats.snapshot(), "queued": self._deliverer.queued + pending}
