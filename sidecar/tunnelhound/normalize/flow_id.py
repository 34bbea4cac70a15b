"""Filebeat-compatible ``flow.id``: xxhash64 of the 5-tuple, base64url without padding.

The hashed bytes are::

    addr_hi | port_hi (2, big-endian) | addr_lo | port_lo (2, big-endian) | proto (1)

where ``hi`` is the endpoint with the higher port. Addresses are hashed at their packed
length (4 bytes for IPv4, 16 for IPv6), as Filebeat's netflow input writes its ``net.IP``
values. The 8-byte digest is taken big-endian (Go's ``Sum`` and xxhash's canonical form).

Tie-break (equal ports): Filebeat's ``flowID`` (x-pack/filebeat/input/netflow/convert.go)
tests ``srcPort >= dstPort``, so on equal ports the *source as given* goes first and the
addresses are not compared. Both directions of an equal-port conversation (e.g. NTP 123<->123,
IKE 500<->500, ICMP with both ports 0) therefore get *different* ids. We keep that rule on
purpose: the point of this field is that our ``flow.id`` equals the one Filebeat/Elastic Agent
stored for the same flow; for a direction-free key use ``network.community_id``.

:func:`flow_id` is the rule in Python (one flow, tested against Filebeat's values); the
pipeline calls :func:`flow_ids`, the same rule in C over whole columns (``native/kernels.c``;
tests/test_kernels.py holds the two equal).
"""

from __future__ import annotations

import binascii
import struct
from typing import Final

import numpy as np
import xxhash

from tunnelhound.normalize import _kernels
from tunnelhound.normalize.addresses import FlowTuples

__all__ = ["flow_id", "flow_id_digests", "flow_ids"]

# Precompiled per address length: one pack per flow, no format parsing on the hot path.
_V4: Final = struct.Struct("!4sH4sHB")
_V6: Final = struct.Struct("!16sH16sHB")
_PORT: Final = struct.Struct("!H")
_PROTO: Final = struct.Struct("!B")

# base64url is standard base64 with "+/" swapped for "-_"; an 8-byte digest encodes to
# 11 characters plus one "=", which RawURLEncoding drops.
_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")
_digest = xxhash.xxh64_digest
_b64 = binascii.b2a_base64


def flow_id(saddr: bytes, daddr: bytes, sport: int, dport: int, proto: int) -> str:
    """Return Filebeat's ``flow.id`` for one flow (11 characters of base64url).

    ``saddr``/``daddr`` are packed 4- or 16-byte addresses (Filebeat hashes 0.0.0.0 as 4
    bytes when an address is missing). The endpoint with the higher port goes first; on
    equal ports the source goes first, so such flows are not direction-free (see module doc).
    Raises ``ValueError`` for bad address lengths or out-of-range ports/protocol.
    """
    if sport < dport:
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    n = len(saddr)
    try:
        if n == len(daddr) and (n == 4 or n == 16):
            data = (_V4 if n == 4 else _V6).pack(saddr, sport, daddr, dport, proto)
        elif len(saddr) in (4, 16) and len(daddr) in (4, 16):
            # Mixed families: Filebeat hashes whatever it has, so do the same.
            data = saddr + _PORT.pack(sport) + daddr + _PORT.pack(dport) + _PROTO.pack(proto)
        else:
            raise ValueError(f"flow_id: addresses must be 4 or 16 bytes, got {len(saddr)} and {len(daddr)}")
    except struct.error as exc:
        raise ValueError(f"flow_id: bad tuple (ports={sport},{dport}, proto={proto}): {exc}") from exc
    return _b64(_digest(data), newline=False)[:11].translate(_URLSAFE).decode("ascii")


def flow_ids(tuples: FlowTuples) -> list[str | None]:
    """:func:`flow_id` of every flow of ``tuples`` (None where a tuple is not hashable)."""
    ids: list[str | None] = _kernels.flow_ids(*tuples.arrays())
    return ids


def flow_id_digests(tuples: FlowTuples) -> tuple[np.ndarray, np.ndarray]:
    """The xxh64 digests of :func:`flow_ids` ((n, 8) uint8, big-endian; the id is their
    base64url without padding) and where there is an id (bool)."""
    digests, present = _kernels.flow_ids(*tuples.arrays(), True)
    return np.frombuffer(digests, dtype=np.uint8).reshape(-1, 8), np.frombuffer(present, dtype=bool)
