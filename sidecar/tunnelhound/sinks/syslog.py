"""Syslog alert sink: one RFC 5424 message per alert over UDP (RFC 5426), TCP (RFC 6587
octet counting) or TLS (RFC 5425).

A message::

    <163>1 2026-11-23T13:40:12.345Z sensor1 tunnelhound 4242 port_scan
      [tunnelhound@32473 event_id="5f0c…" rule_id="0b8d…" rule_name="port_scan" severity="73"
       level="high" risk_score="73.0" source_ip="10.77.1.68" destination_ip="198.18.5.10"
       attack="TA0007" attack="T1046"] {"@timestamp":…the whole alert document…}

* PRI = facility * 8 + a syslog severity from ``event.severity``: critical (99) → 2 Critical,
  high (73) → 3 Error, medium (47) → 4 Warning, low (21) → 5 Notice.
* TIMESTAMP is the alert's ``@timestamp`` (already RFC 3339 UTC); HOSTNAME the configured name
  or this host's FQDN; PROCID our pid; MSGID the rule name (``event.action``), cut to 32 chars.
* STRUCTURED-DATA carries what a syslog server can filter on without parsing JSON.  The SD-ID
  uses 32473, the private enterprise number RFC 5612 reserves for documentation, because the
  project has none of its own.
* MSG is the alert document as compact JSON (no BOM, so it is RFC 5424 ``MSG-ANY``): a
  receiver gets every field, e.g. Elastic Agent's syslog input decodes it as it is, and the
  human title is its ``message`` field.  One line: JSON escapes every newline.

Sends happen on a background thread (:mod:`tunnelhound.sinks.delivery`); a TCP or TLS
connection is kept open and re-opened after an error.
"""

from __future__ import annotations

import os
import re
import select
import socket
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from tunnelhound.sinks import alertview
from tunnelhound.sinks.alertsink import SinkStats
from tunnelhound.sinks.delivery import Deliverer, DeliveryError, DeliveryPolicy
from tunnelhound.sinks.tls import tls_context

__all__ = ["SD_ID", "SyslogSink", "format_message"]

SD_ID = "tunnelhound@32473"
APP_NAME = "tunnelhound"
# Syslog severity codes (RFC 5424 table 2) for our four levels.
_SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5}
# RFC 5424 TIMESTAMP: FULL-DATE "T" FULL-TIME, at most 6 fraction digits.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")
# The largest UDP payload over IPv4; a bigger message can never be sent as one datagram.
_MAX_UDP = 65507


def _token(text: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, 1..limit chars, ``-`` if empty."""
    cleaned = "".join(ch if 33 <= ord(ch) <= 126 else "_" for ch in text)[:limit]
    return cleaned or "-"


def _param_value(value: object) -> str:
    # RFC 5424 §6.3.3: '"', '\' and ']' are escaped with a backslash inside PARAM-VALUE.
    return re.sub(r'(["\\\]])', r"\\\1", str(value))


def _structured_data(alert: Mapping[str, Any]) -> str:
    params: list[tuple[str, object]] = [
        ("event_id", alertview.lookup(alert, "event.id")),
        ("rule_id", alertview.lookup(alert, "rule.id")),
        ("rule_name", alertview.lookup(alert, "rule.name")),
        ("severity", alertview.severity(alert)),
        ("level", alertview.severity_label(alert)),
        ("risk_score", alertview.lookup(alert, "event.risk_score")),
        ("source_ip", alertview.lookup(alert, "source.ip")),
        ("destination_ip", alertview.lookup(alert, "destination.ip")),
        *(("attack", attack) for attack in alertview.attack_ids(alert)),
    ]
    body = " ".join(f'{name}="{_param_value(value)}"' for name, value in params if value not in (None, ""))
    return f"[{SD_ID} {body}]"


def format_message(alert: Mapping[str, Any], *, facility: int, hostname: str, procid: int) -> bytes:
    """One RFC 5424 message (without transport framing) for one alert."""
    pri = facility * 8 + _SYSLOG_SEVERITY[alertview.severity_label(alert)]
    stamp = str(alertview.lookup(alert, "@timestamp") or "")
    if not _TIMESTAMP.fullmatch(stamp):
        stamp = "-"  # NILVALUE: the receiver stamps it
    rule = str(alertview.lookup(alert, "rule.name") or alertview.lookup(alert, "event.action") or "")
    header = (
        f"<{pri}>1 {stamp} {_token(hostname, 255)} {APP_NAME} {_token(str(procid), 128)} {_token(rule, 32)}"
    )
    return f"{header} {_structured_data(alert)} ".encode() + orjson.dumps(alert)


class _Connection:
    """One UDP socket, or one TCP/TLS stream kept open across messages."""

    def __init__(
        self, transport: str, host: str, port: int, timeout: float, tls: ssl.SSLContext | None
    ) -> None:
        self.transport = transport
        self.address = (host, port)
        self.timeout = timeout
        self.tls = tls
        self._sock: socket.socket | None = None

    def send(self, message: bytes) -> None:
        if self.transport == "udp":
            if len(message) > _MAX_UDP:
                raise DeliveryError(
                    f"message of {len(message)} bytes exceeds one UDP datagram", permanent=True
                )
            data = message
        else:
            # RFC 6587 §3.4.1 / RFC 5425 §4.3: MSG-LEN SP SYSLOG-MSG.
            data = b"%d " % len(message) + message
        sock = self._connected()
        try:
            sock.sendall(data)
        except OSError:
            self.close()
            raise

    def _connected(self) -> socket.socket:
        if self._sock is not None and self.transport != "udp" and _peer_closed(self._sock, self.timeout):
            self.close()
        if self._sock is None:
            if self.transport == "udp":
                family = socket.getaddrinfo(*self.address, type=socket.SOCK_DGRAM)[0]
                sock = socket.socket(family[0], socket.SOCK_DGRAM)
                # connect() so an ICMP port-unreachable surfaces as an error on a later send.
                sock.connect(family[4])
            else:
                sock = socket.create_connection(self.address, timeout=self.timeout)
                if self.tls is not None:
                    try:
                        sock = self.tls.wrap_socket(sock, server_hostname=self.address[0])
                    except OSError:
                        sock.close()
                        raise
            sock.settimeout(self.timeout)
            self._sock = sock
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _peer_closed(sock: socket.socket, timeout: float) -> bool:
    """True when the server has closed the stream.

    A send on a half-closed TCP connection succeeds once and is lost; checking first means a
    server restart costs no alert.  Syslog servers never send application data, so anything
    readable is a close, or TLS records (TLS 1.3 session tickets, close_notify) that a
    non-blocking read processes.
    """
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        if not isinstance(sock, ssl.SSLSocket):
            return sock.recv(1, socket.MSG_PEEK) == b""
        sock.setblocking(False)
        try:
            return sock.recv(1) == b""
        except ssl.SSLWantReadError:
            return False  # only handshake records (session tickets): still open
        finally:
            sock.settimeout(timeout)
    except (OSError, ValueError):
        return True


class SyslogSink:
    """Send each alert as an RFC 5424 message to ``host:port`` over ``transport``."""

    name = "syslog"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        transport: str = "udp",
        facility: int = 16,
        hostname: str = "",
        tls: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        policy: DeliveryPolicy | None = None,
    ) -> None:
        if transport not in ("udp", "tcp", "tls"):
            raise ValueError(f"transport must be udp, tcp or tls, not {transport!r}")
        if not 0 <= facility <= 23:
            raise ValueError(f"facility must be 0..23, got {facility}")
        if transport == "tls" and tls is None:
            tls = tls_context()
        self.facility = facility
        self.hostname = hostname or socket.getfqdn()
        self._stats = SinkStats()
        self._conn = _Connection(transport, host, port, timeout, tls if transport == "tls" else None)
        self._deliverer: Deliverer[bytes] = Deliverer(
            f"syslog {transport}://{host}:{port}", self._conn.send, self._stats, policy or DeliveryPolicy()
        )

    def write_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Format and queue one message per alert."""
        pid = os.getpid()
        for alert in alerts:
            try:
                message = format_message(alert, facility=self.facility, hostname=self.hostname, procid=pid)
            except TypeError:  # orjson: a value that is not JSON (the producer's bug)
                self._stats.add("failed")
                continue
            self._deliverer.put(message)

    def close(self) -> None:
        """Send what is queued (bounded by the close timeout), then close the connection."""
        self._deliverer.close()
        self._conn.close()

    def stats(self) -> dict[str, int]:
        """sent/failed/dropped/retried and the queue length."""
        return {**self._stats.snapshot(), "queued": self._deliverer.queued}
