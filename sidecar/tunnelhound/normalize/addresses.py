"""Address columns in the packed form the flow hashes take, a batch at a time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_A = np.ndarray
KernelTuples = tuple[int, _A, _A, _A, _A, _A, _A, _A, _A]
"""``n``, proto, sport, dport, ok, src, src_v6, dst, dst_v6 (see :class:`FlowTuples`)."""


@dataclass(frozen=True, slots=True)
class FlowTuples:
    """The 5-tuples of ``n`` flows, as :func:`community_ids` and :func:`flow_ids` take them."""

    proto: np.ndarray
    """int64; like the ports, meaningful only where ``ok``."""
    sport: np.ndarray
    """int64; ICMP/ICMPv6: the message type."""
    dport: np.ndarray
    """int64; ICMP/ICMPv6: the message code."""
    ok: np.ndarray
    """bool: protocol and ports are in range (8 and 16 bits); other rows get no ids."""
    src: np.ndarray
    """(n, 16) uint8: IPv6 addresses, or IPv4 ones in the first 4 bytes (see :func:`packed4`)."""
    src_v6: np.ndarray
    dst: np.ndarray
    dst_v6: np.ndarray

    def arrays(self) -> KernelTuples:
        """``n`` and the columns, contiguous and of the types the C kernels read."""
        i8, b = np.int64, np.bool_
        return (
            len(self.proto),
            np.ascontiguousarray(self.proto, dtype=i8),
            np.ascontiguousarray(self.sport, dtype=i8),
            np.ascontiguousarray(self.dport, dtype=i8),
            np.ascontiguousarray(self.ok, dtype=b),
            np.ascontiguousarray(self.src, dtype=np.uint8),
            np.ascontiguousarray(self.src_v6, dtype=b),
            np.ascontiguousarray(self.dst, dtype=np.uint8),
            np.ascontiguousarray(self.dst_v6, dtype=b),
        )


def packed4(v4: np.ndarray) -> np.ndarray:
    """Host-order integer IPv4 addresses → (n, 16) uint8, network order in the first 4 bytes."""
    out = np.zeros((len(v4), 16), dtype=np.uint8)
    out[:, :4] = v4.astype(">u4").view(np.uint8).reshape(-1, 4)
    return out


def packed_bytes(addresses: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """4- or 16-byte packed addresses → (n, 16) uint8 as :func:`packed4`/:func:`packed6` make
    them, and which are IPv6."""
    v6 = np.fromiter((len(a) == 16 for a in addresses), dtype=bool, count=len(addresses))
    padded = b"".join([a.ljust(16, b"\0") for a in addresses])
    return np.frombuffer(padded, dtype=np.uint8).reshape(-1, 16), v6


def packed6(v6: np.ndarray) -> np.ndarray:
    """16-byte (``V16``) IPv6 addresses → (n, 16) uint8."""
    return np.ascontiguousarray(v6).view(np.uint8).reshape(-1, 16)


def mac_text(values: np.ndarray, *, ecs: bool) -> list[str]:
    """MAC addresses: ECS form ``00-50-56-C0-00-01`` or colon-lowercase for raw fields."""
    sep = "-" if ecs else ":"
    out = [b.hex(sep) for b in values.tolist()]
    return [m.upper() for m in out] if ecs else out
