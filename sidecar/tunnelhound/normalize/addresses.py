"""Address columns to packed bytes and text, a batch at a time."""

from __future__ import annotations

import socket

import numpy as np

_INET6 = socket.AF_INET6


def ipv4_packed(values: np.ndarray) -> list[bytes]:
    """uint32 host-order values → 4-byte network-order addresses."""
    return values.astype(">u4").view("V4").tolist()


def ipv4_text(packed: list[bytes]) -> list[str]:
    """Dotted quads (``inet_ntoa`` is C and beats any numpy string assembly here)."""
    ntoa = socket.inet_ntoa
    return [ntoa(p) for p in packed]


def ipv6_text(packed: list[bytes]) -> list[str]:
    """RFC 5952 text of 16-byte addresses."""
    ntop = socket.inet_ntop
    return [ntop(_INET6, p) for p in packed]


def mac_text(values: np.ndarray, *, ecs: bool) -> list[str]:
    """MAC addresses: ECS form ``00-50-56-C0-00-01`` or colon-lowercase for raw fields."""
    sep = "-" if ecs else ":"
    out = [b.hex(sep) for b in values.tolist()]
    return [m.upper() for m in out] if ecs else out
