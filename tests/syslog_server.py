"""Syslog receivers for the alert tests: a strict RFC 5424 parser (a regex on the ABNF of the
header and structured data) and a TCP/TLS listener for octet-counted frames (RFC 6587)."""

from __future__ import annotations

import contextlib
import re
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass
from typing import Any

import orjson

from tunnelhound.sinks.syslog import SD_ID

# ---------------------------------------------------------------- a strict RFC 5424 parser

_PRINT = r"[\x21-\x7e]"
_SD_NAME = r'[\x21-\x7e](?<![= \]"])' + r'(?:[\x21-\x7e](?<![= \]"])){0,31}'
_PARAM_VALUE = r'(?:[^"\\\]]|\\["\\\]])*'
_SD_ELEMENT = rf'\[{_SD_NAME}(?: {_SD_NAME}="{_PARAM_VALUE}")*\]'
_TIMESTAMP = (
    r"-|\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:(?:[0-5]\d|60)"
    r"(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
)
RFC5424 = re.compile(
    rf"<(?P<pri>\d{{1,3}})>(?P<version>[1-9]\d{{0,2}}) (?P<timestamp>{_TIMESTAMP}) "
    rf"(?P<hostname>-|{_PRINT}{{1,255}}) (?P<app>-|{_PRINT}{{1,48}}) (?P<procid>-|{_PRINT}{{1,128}}) "
    rf"(?P<msgid>-|{_PRINT}{{1,32}}) (?P<sd>-|(?:{_SD_ELEMENT})+)(?: (?P<msg>.*))?",
    re.DOTALL,
)
_PARAM = re.compile(rf'({_SD_NAME})="({_PARAM_VALUE})"')


@dataclass
class Syslog:
    pri: int
    timestamp: str
    hostname: str
    app: str
    procid: str
    msgid: str
    sd: dict[str, dict[str, list[str]]]
    msg: bytes


def parse(raw: bytes) -> Syslog:
    """Parse one RFC 5424 message or fail the test."""
    text = raw.decode("utf-8")
    m = RFC5424.fullmatch(text)
    assert m, f"not RFC 5424: {text[:200]!r}"
    pri = int(m["pri"])
    assert 0 <= pri <= 191 and str(pri) == m["pri"]  # no leading zeros
    assert m["version"] == "1"
    sd: dict[str, dict[str, list[str]]] = {}
    if m["sd"] != "-":
        for element in re.findall(rf"{_SD_ELEMENT}", m["sd"]):
            sd_id = re.match(_SD_NAME, element[1:])
            assert sd_id
            params: dict[str, list[str]] = {}
            for name, value in _PARAM.findall(element[1 + sd_id.end() :]):
                params.setdefault(name, []).append(re.sub(r"\\([\"\\\]])", r"\1", value))
            sd[sd_id.group()] = params
    return Syslog(
        pri, m["timestamp"], m["hostname"], m["app"], m["procid"], m["msgid"], sd, (m["msg"] or "").encode()
    )


# ---------------------------------------------------------------- listeners


class _FramedHandler(socketserver.BaseRequestHandler):
    """Reads octet-counted frames (MSG-LEN SP SYSLOG-MSG) until the client closes."""

    def handle(self) -> None:
        server: FramedServer = self.server  # type: ignore[assignment]
        sock = self.request
        with server.lock:
            server.connections.append(sock)
        if server.tls is not None:
            sock = server.tls.wrap_socket(sock, server_side=True)
        stream = sock.makefile("rb")
        while True:
            length = b""
            while (ch := stream.read(1)) not in (b" ", b""):
                assert ch.isdigit(), f"bad frame length byte {ch!r}"
                length += ch
            if not length:
                return
            data = stream.read(int(length))
            assert len(data) == int(length)
            with server.lock:
                server.received.append(data)


class FramedServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", port), _FramedHandler)
        self.tls = tls
        self.lock = threading.Lock()
        self.received: list[bytes] = []
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def stop(self) -> None:
        """Stop listening and close the open connections too, as a server going down does."""
        self.shutdown()
        self.server_close()
        with self.lock:
            for sock in self.connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def check_message(raw: bytes, alert: dict[str, Any], *, pri: int) -> Syslog:
    """One received message against the alert it carries (sent with hostname sensor-1.example)."""
    msg = parse(raw)
    assert msg.pri == pri
    assert msg.timestamp == alert["@timestamp"]
    assert msg.app == "tunnelhound"
    assert msg.hostname == "sensor-1.example"
    assert msg.msgid == alert["rule"]["name"]
    params = msg.sd[SD_ID]
    assert params["rule_id"] == [alert["rule"]["id"]]
    assert params["rule_name"] == [alert["rule"]["name"]]
    assert params["severity"] == [str(alert["event"]["severity"])]
    assert params["event_id"] == [alert["event"]["id"]]
    assert params["source_ip"] == [alert["source"]["ip"]]
    assert orjson.loads(msg.msg) == alert
    return msg
