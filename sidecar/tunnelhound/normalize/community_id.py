"""Community ID v1 flow hash (corelight community-id-spec), as Zeek 6+ writes it to conn.log.

The hashed bytes are::

    seed (2, big-endian) | saddr | daddr | proto (1) | 0 (1) | sport (2) | dport (2)

with the endpoints in canonical order, so both directions of a conversation get the same id.
The ports are present only for TCP, UDP, SCTP, ICMP and ICMPv6; any other protocol is hashed
without them. For ICMP/ICMPv6, "ports" are the message type and code, mapped as Zeek does:
a type with a reply counterpart (echo request/reply, ...) hashes as ``(type, counterpart)``
and is ordered like a port pair; any other type hashes as ``(type, code)`` and is one-way,
which the spec never reorders.

:func:`community_id` is the specification in Python (one flow, tested against the published
vectors); the pipeline calls :func:`community_ids`, the same rules in C over whole columns
(``native/kernels.c``; tests/test_kernels.py holds the two equal).
"""

from __future__ import annotations

import binascii
import hashlib
import struct
from typing import Final

import numpy as np

from tunnelhound.normalize import _kernels
from tunnelhound.normalize.addresses import FlowTuples

__all__ = [
    "ICMP6_TYPE_PAIRS",
    "ICMP_TYPE_PAIRS",
    "PORT_PROTOCOLS",
    "community_id",
    "community_id_digests",
    "community_ids",
]

PROTO_ICMP: Final = 1
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
PROTO_ICMP6: Final = 58
PROTO_SCTP: Final = 132

PORT_PROTOCOLS: Final[frozenset[int]] = frozenset({PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMP6, PROTO_SCTP})
"""IANA protocol numbers whose Community ID includes ports (or ICMP type/code)."""

ICMP_TYPE_PAIRS: Final[dict[int, int]] = {
    8: 0,  # echo request -> echo reply
    0: 8,
    13: 14,  # timestamp -> timestamp reply
    14: 13,
    15: 16,  # information request -> information reply
    16: 15,
    10: 9,  # router solicitation -> router advertisement
    9: 10,
    17: 18,  # address mask request -> address mask reply
    18: 17,
}
"""ICMPv4 types with a two-way counterpart (the spec's table, which mirrors Zeek)."""

ICMP6_TYPE_PAIRS: Final[dict[int, int]] = {
    128: 129,  # echo request -> echo reply
    129: 128,
    130: 131,  # multicast listener query -> report
    131: 130,
    133: 134,  # router solicitation -> router advertisement
    134: 133,
    135: 136,  # neighbor solicitation -> neighbor advertisement
    136: 135,
    139: 140,  # node information (who-are-you) query -> reply
    140: 139,
    144: 145,  # home agent address discovery request -> reply
    145: 144,
}
"""ICMPv6 types with a two-way counterpart (the spec's table, which mirrors Zeek)."""

# One pack per flow: seed, both addresses, proto, the pad byte (``x``) and, where the
# protocol has them, both ports. Picked by address length, so no format is built per call.
_V4_PORTS: Final = struct.Struct("!H4s4sBxHH")
_V6_PORTS: Final = struct.Struct("!H16s16sBxHH")
_V4_NOPORTS: Final = struct.Struct("!H4s4sBx")
_V6_NOPORTS: Final = struct.Struct("!H16s16sBx")

# Port protocols that are not ICMP: their ports go into the hash as they are.
_PLAIN_PORTS: Final = frozenset({PROTO_TCP, PROTO_UDP, PROTO_SCTP})
_sha1: Final = hashlib.sha1
_b64: Final = binascii.b2a_base64


def community_id(proto: int, saddr: bytes, daddr: bytes, sport: int, dport: int, seed: int = 0) -> str:
    """Return the Community ID v1 string (``"1:" + base64(sha1)``) of one flow.

    ``saddr``/``daddr`` are packed addresses, both 4 or both 16 bytes. For ICMP (1) and
    ICMPv6 (58) ``sport`` is the message type and ``dport`` the code. For protocols without
    ports the port arguments are ignored. Raises ``ValueError`` on mismatched or bad address
    lengths and on ports, protocol or seed out of range.
    """
    # TCP/UDP first and inline: they are nearly every flow, and a helper call per flow costs
    # about a sixth of the whole function.
    if proto not in _PLAIN_PORTS:
        if proto in (PROTO_ICMP, PROTO_ICMP6):
            counterpart = (ICMP_TYPE_PAIRS if proto == PROTO_ICMP else ICMP6_TYPE_PAIRS).get(sport)
            if counterpart is None:
                # One-way message (e.g. time exceeded): ports stay (type, code) and the spec
                # treats the tuple as already ordered, so neither side is swapped.
                return _pack_and_hash(proto, saddr, daddr, sport, dport, seed)
            dport = counterpart
        else:
            # No ports in the hash: order by address alone.
            if saddr > daddr:
                saddr, daddr = daddr, saddr
            return _pack_and_hash(proto, saddr, daddr, -1, -1, seed)
    # Canonical order: the smaller (address, port) endpoint first, addresses compared as
    # network-order bytes, which is exactly what bytes comparison does.
    if saddr > daddr or (saddr == daddr and sport > dport):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    n = len(saddr)
    try:
        # struct's "Ns" silently pads or truncates, so the lengths are checked here.
        if n == 4 and len(daddr) == 4:
            data = _V4_PORTS.pack(seed, saddr, daddr, proto, sport, dport)
        elif n == 16 and len(daddr) == 16:
            data = _V6_PORTS.pack(seed, saddr, daddr, proto, sport, dport)
        else:
            raise _bad_lengths(saddr, daddr)
    except struct.error as exc:
        raise _bad_tuple(proto, sport, dport, seed, exc) from exc
    # binascii is what base64.b64encode calls underneath; calling it directly skips a wrapper.
    return "1:" + _b64(_sha1(data).digest(), newline=False).decode("ascii")


def community_ids(tuples: FlowTuples, seed: int = 0) -> list[str | None]:
    """:func:`community_id` of every flow of ``tuples`` (None where a tuple is not hashable or
    its two addresses are of different families)."""
    ids: list[str | None] = _kernels.community_ids(*tuples.arrays(), seed)
    return ids


def community_id_digests(tuples: FlowTuples, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The SHA-1 digests of :func:`community_ids` ((n, 20) uint8; the id is ``"1:"`` and their
    base64) and where there is an id (bool)."""
    digests, present = _kernels.community_ids(*tuples.arrays(), seed, True)
    return np.frombuffer(digests, dtype=np.uint8).reshape(-1, 20), np.frombuffer(present, dtype=bool)


def _pack_and_hash(proto: int, a: bytes, b: bytes, aport: int, bport: int, seed: int) -> str:
    """Hash an already ordered tuple; ports ``-1`` mean a protocol without ports."""
    n = len(a)
    try:
        if n != len(b) or (n != 4 and n != 16):
            raise _bad_lengths(a, b)
        if aport < 0:
            data = (_V4_NOPORTS if n == 4 else _V6_NOPORTS).pack(seed, a, b, proto)
        else:
            data = (_V4_PORTS if n == 4 else _V6_PORTS).pack(seed, a, b, proto, aport, bport)
    except struct.error as exc:
        raise _bad_tuple(proto, aport, bport, seed, exc) from exc
    return "1:" + _b64(_sha1(data).digest(), newline=False).decode("ascii")


def _bad_lengths(a: bytes, b: bytes) -> ValueError:
    """Build the error for addresses that are not both 4 or both 16 bytes."""
    return ValueError(f"community_id: addresses must both be 4 or 16 bytes, got {len(a)} and {len(b)}")


def _bad_tuple(proto: int, sport: int, dport: int, seed: int, exc: struct.error) -> ValueError:
    """Build the error for values that do not fit their fields."""
    return ValueError(f"community_id: bad tuple (proto={proto}, ports={sport},{dport}, seed={seed}): {exc}")
