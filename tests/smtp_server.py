"""A real SMTP server for the e-mail alert tests: aiosmtpd on 127.0.0.1 with STARTTLS (or
implicit TLS) and AUTH required, keeping every message it accepts, parsed with ``email``."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import orjson
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from tls_ca import Pki

USER, PASSWORD = "tunnelhound", "correct horse"


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes


class Inbox:
    """aiosmtpd handler keeping every accepted message; ``refuse`` answers RCPT with a code."""

    def __init__(self, refuse: str | None = None) -> None:
        self.lock = threading.Lock()
        self.mails: list[Mail] = []
        self.refuse = refuse

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refuse:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.mails.append(
                Mail(str(envelope.mail_from), list(envelope.rcpt_tos), parsed, envelope.content)
            )
        return "250 Message accepted"

    def count(self) -> int:
        with self.lock:
            return len(self.mails)


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        getattr(auth_data, "login", b"") == USER.encode()
        and getattr(auth_data, "password", b"") == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(pki: Pki, inbox: Inbox, port: int, *, implicit: bool = False) -> Controller:
    """STARTTLS required (or implicit TLS), AUTH required, on 127.0.0.1:port."""
    tls = pki.server_context()
    kwargs: dict[str, Any] = {"authenticator": authenticator, "auth_required": True}
    if implicit:
        # aiosmtpd only counts STARTTLS as TLS for AUTH; with implicit TLS every byte is TLS.
        kwargs.update(ssl_context=tls, auth_require_tls=False)
    else:
        kwargs.update(tls_context=tls, require_starttls=True)
    controller = Controller(inbox, hostname="127.0.0.1", port=port, server_hostname="127.0.0.1", **kwargs)
    controller.start()
    return controller


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def attachment(message: EmailMessage) -> tuple[str, Any]:
    """The one attachment of ``message``: its file name and its JSON content."""
    parts = list(message.iter_attachments())
    assert len(parts) == 1
    part = parts[0]
    assert part.get_content_type() == "application/json"
    return str(part.get_filename()), orjson.loads(part.get_payload(decode=True))


def body_of(message: EmailMessage) -> str:
    """The plain-text body with LF line ends."""
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")  # SMTP carries CRLF
