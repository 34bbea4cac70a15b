"""Read raw ``.dat`` files: export payloads saved without any capture framing.

A ``.dat`` file is taken as ONE datagram, whatever it holds: the decoder already walks several
v5 packets or IPFIX messages packed into one buffer, and splitting here would need a second
copy of the decoder's length rules.  The exporter address is not in the file, so the caller
names it (``192.0.2.1:4444`` by default, the address the vendor test expectations assume).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Final

from tunnelhound.errors import SourceError
from tunnelhound.model import Datagram

__all__ = ["DEFAULT_EXPORTER", "canonical_ip", "parse_exporter", "read_dat"]

DEFAULT_EXPORTER: Final = ("192.0.2.1", 4444)
"""Exporter address given to .dat payloads when the caller names none (TEST-NET-1)."""


def canonical_ip(text: str) -> str:
    """Return ``text`` as an IP address in the form sockets and captures print it.

    Raises ValueError when ``text`` is not an IPv4 or IPv6 literal.
    """
    address = ipaddress.ip_address(text)
    if address.version == 4:
        return str(address)
    # inet_ntop, not str(): it is what recvfrom and the capture reader produce, and the two
    # disagree on IPv4-mapped addresses (``::ffff:1.2.3.4`` vs ``::ffff:102:304``).
    return socket.inet_ntop(socket.AF_INET6, address.packed)


def parse_exporter(text: str) -> tuple[str, int]:
    """Parse ``IP:PORT`` or ``[IPv6]:PORT`` into ``(ip, port)``; raise ValueError if malformed."""
    usage = f"exporter {text!r}: expected IPv4:PORT or [IPv6]:PORT, e.g. 192.0.2.1:4444 or [2001:db8::1]:4444"
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(usage)
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(usage)
        if ":" in host:
            # Without brackets the last colon of an IPv6 address cannot be told from the port's.
            raise ValueError(f"{usage} (IPv6 addresses need brackets)")
    if not port_text.isdigit() or not port_text.isascii():
        raise ValueError(f"exporter {text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"exporter {text!r}: port {port} is out of range 0-65535")
    try:
        ip = canonical_ip(host)
    except ValueError:
        raise ValueError(f"exporter {text!r}: {host!r} is not an IP address") from None
    return ip, port


def read_dat(
    path: str | os.PathLike[str],
    exporter_ip: str = DEFAULT_EXPORTER[0],
    exporter_port: int = DEFAULT_EXPORTER[1],
    received: float | None = None,
) -> Iterator[Datagram]:
    """Yield the whole file as one Datagram; ``received`` defaults to the file's mtime.

    An empty file yields nothing.  Unreadable files raise SourceError, a bad exporter address
    ValueError, both before the first datagram.
    """
    ip = canonical_ip(exporter_ip)
    if not 0 <= exporter_port <= 65535:
        raise ValueError(f"exporter port {exporter_port} is out of range 0-65535")
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            mtime = os.fstat(handle.fileno()).st_mtime
            data = handle.read()
    except OSError as exc:
        raise SourceError(f"{name}: cannot read .dat file: {exc.strerror or exc}") from exc
    return _single(data, ip, exporter_port, mtime if received is None else received)


def _single(data: bytes, ip: str, port: int, received: float) -> Iterator[Datagram]:
    # A separate generator so read_dat itself runs eagerly and its errors surface at the call.
    if data:
        yield Datagram(data=data, exporter_ip=ip, exporter_port=port, received=received)
