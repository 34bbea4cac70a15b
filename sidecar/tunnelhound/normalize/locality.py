"""Internal networks: ``source/destination/flow.locality`` and ``network.direction``.

The rules are the Elastic ``netflow`` integration's, so dashboards and queries built on it
keep working:

* ``source.locality`` / ``destination.locality``: ``internal`` when the address is in
  ``internal_networks``, else ``external`` (Filebeat's netflow input).
* ``flow.locality``: ``internal`` only when *both* ends are internal, else ``external``
  (Filebeat's ``getIPLocality(src, dst)``: the first external address wins).
* ``network.direction`` from the two localities (the integration's ingest pipeline, the same
  table as Elasticsearch's ``network_direction`` processor)::

      source    destination  direction
      internal  external     outbound
      external  internal     inbound
      internal  internal     internal
      external  external     external

  A flow with a missing address has no locality on that side; the pipeline then writes
  ``unknown`` (:data:`DIRECTION_UNKNOWN`), which callers emit themselves.

Differences from Filebeat kept on purpose: Filebeat also treats 0.0.0.0, ::,
255.255.255.255 and link-local/interface-local multicast as internal whatever
``internal_networks`` says; here only the listed networks count (add those CIDRs to get the
same result). IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``) match IPv4 networks, as Go's
``net.IPNet.Contains`` (which Filebeat uses) does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_INTERNAL_NETWORKS",
    "DIRECTION_UNKNOWN",
    "Direction",
    "Locality",
    "Networks",
    "direction",
    "direction_array",
    "flow_locality",
    "flow_locality_array",
    "locality",
    "locality_array",
]

Locality = Literal["internal", "external"]
Direction = Literal["inbound", "outbound", "internal", "external"]

DIRECTION_UNKNOWN: Final = "unknown"
"""``network.direction`` when a side has no address (the integration's fallback)."""

DEFAULT_INTERNAL_NETWORKS: Final[tuple[str, ...]] = (
    "10.0.0.0/8",  # RFC 1918
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",  # RFC 4193 unique local
    "127.0.0.0/8",  # loopback
    "::1/128",
    "169.254.0.0/16",  # link-local
    "fe80::/10",
)
"""Default ``internal_networks``: RFC 1918, RFC 4193, loopback and link-local."""

_U64: Final = (1 << 64) - 1
# ::ffff:0:0/96 as the top 96 bits of a 128-bit value: hi word 0, lo word's top half 0xffff.
_MAPPED_HI: Final = 0
_MAPPED_LO_TOP: Final = 0x0000_FFFF


class Networks:
    """A set of internal networks (IPv4 and IPv6 CIDRs) with scalar and numpy membership tests.

    ``Networks()`` uses :data:`DEFAULT_INTERNAL_NETWORKS`. Host bits in a CIDR are masked
    (``10.1.2.3/8`` means ``10.0.0.0/8``), as Go's ``net.ParseCIDR`` in Filebeat does; a bare
    address means a single host. A string that is not an address or CIDR raises
    ``ValueError`` naming it.
    """

    __slots__ = ("_cidrs", "_v4", "_v4_mask", "_v4_net", "_v6", "_v6_words")

    def __init__(self, cidrs: Iterable[str] = DEFAULT_INTERNAL_NETWORKS) -> None:
        """Parse ``cidrs``; raise ``ValueError`` naming the first invalid one."""
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        names: list[str] = []
        for cidr in cidrs:
            if not isinstance(cidr, str):
                raise ValueError(f"invalid internal network {cidr!r}: expected a CIDR string")
            try:
                net = ipaddress.ip_network(cidr.strip(), strict=False)
            except ValueError as exc:
                raise ValueError(f"invalid internal network {cidr!r}: {exc}") from exc
            entry = (int(net.network_address), int(net.netmask))
            (v4 if net.version == 4 else v6).append(entry)
            names.append(str(net))
        self._cidrs: tuple[str, ...] = tuple(names)
        self._v4: tuple[tuple[int, int], ...] = tuple(v4)
        self._v6: tuple[tuple[int, int], ...] = tuple(v6)
        self._v4_net = np.array([n for n, _ in v4], dtype=np.uint32)
        self._v4_mask = np.array([m for _, m in v4], dtype=np.uint32)
        # Each IPv6 network as (net_hi, net_lo, mask_hi, mask_lo) 64-bit words, for S16 arrays.
        self._v6_words: tuple[tuple[int, int, int, int], ...] = tuple(
            (n >> 64, n & _U64, m >> 64, m & _U64) for n, m in v6
        )

    @property
    def cidrs(self) -> tuple[str, ...]:
        """The networks in normalized CIDR form, in the order given."""
        return self._cidrs

    def __repr__(self) -> str:
        """Show the networks."""
        return f"Networks({list(self._cidrs)!r})"

    def __eq__(self, other: object) -> bool:
        """Equal when built from the same normalized networks in the same order."""
        if not isinstance(other, Networks):
            return NotImplemented
        return self._cidrs == other._cidrs

    def __hash__(self) -> int:
        """Hash of the normalized networks."""
        return hash(self._cidrs)

    def contains(self, addr: bytes) -> bool:
        """Return whether a packed 4- or 16-byte address is in any network."""
        value = int.from_bytes(addr, "big")
        if len(addr) == 4:
            return self._contains_v4_int(value)
        if len(addr) != 16:
            raise ValueError(f"address must be 4 or 16 bytes, got {len(addr)}")
        for net, mask in self._v6:
            if value & mask == net:
                return True
        # IPv4-mapped IPv6: also try the IPv4 networks (Go's IPNet.Contains does To4()).
        if value >> 32 == 0xFFFF:
            return self._contains_v4_int(value & 0xFFFF_FFFF)
        return False

    def _contains_v4_int(self, value: int) -> bool:
        """Return whether an IPv4 address given as an integer is in any IPv4 network."""
        # A plain loop, not any(<generator>): no generator object per address.
        for net, mask in self._v4:  # noqa: SIM110
            if value & mask == net:
                return True
        return False

    def contains_v4(self, values: npt.NDArray[np.integer]) -> npt.NDArray[np.bool_]:
        """Return a bool array: which IPv4 addresses (uint32 host-order values) are internal."""
        values = np.asarray(values, dtype=np.uint32)
        out = np.zeros(values.shape, dtype=np.bool_)
        scratch = np.empty(values.shape, dtype=np.uint32)
        hit = np.empty(values.shape, dtype=np.bool_)
        # Mask-and-compare per network into reused buffers: a handful of networks over a
        # large batch, so no per-network temporaries.
        for net, mask in zip(self._v4_net, self._v4_mask, strict=True):
            np.bitwise_and(values, mask, out=scratch)
            np.equal(scratch, net, out=hit)
            out |= hit
        return out

    def contains_v6(self, values: npt.NDArray[np.bytes_]) -> npt.NDArray[np.bool_]:
        """Return a bool array: which IPv6 addresses (an ``S16`` array of packed bytes) are internal.

        IPv4-mapped addresses (``::ffff:a.b.c.d``) are tested against the IPv4 networks too.
        """
        arr = np.ascontiguousarray(values)
        if arr.dtype != np.dtype("S16"):
            raise ValueError(f"contains_v6 expects an S16 array, got {arr.dtype}")
        # Two big-endian 64-bit words per address, made native once for the comparisons.
        words = arr.reshape(-1).view(">u8").reshape(-1, 2).astype(np.uint64)
        hi = words[:, 0]
        lo = words[:, 1]
        out = np.zeros(hi.shape, dtype=np.bool_)
        for net_hi, net_lo, mask_hi, mask_lo in self._v6_words:
            out |= ((hi & np.uint64(mask_hi)) == np.uint64(net_hi)) & (
                (lo & np.uint64(mask_lo)) == np.uint64(net_lo)
            )
        if self._v4:
            mapped = (hi == np.uint64(_MAPPED_HI)) & ((lo >> np.uint64(32)) == np.uint64(_MAPPED_LO_TOP))
            if mapped.any():
                v4 = (lo[mapped] & np.uint64(0xFFFF_FFFF)).astype(np.uint32)
                out[mapped] |= self.contains_v4(v4)
        return out.reshape(arr.shape)


def locality(is_internal: bool) -> Locality:
    """Return ``source.locality``/``destination.locality`` for one address."""
    return "internal" if is_internal else "external"


def flow_locality(src_internal: bool, dst_internal: bool) -> Locality:
    """Return ``flow.locality``: ``internal`` only when both ends are internal."""
    return "internal" if src_internal and dst_internal else "external"


def direction(src_internal: bool, dst_internal: bool) -> Direction:
    """Return ``network.direction`` from the two ends' locality (the integration's table)."""
    if src_internal:
        return "internal" if dst_internal else "outbound"
    return "inbound" if dst_internal else "external"


_LOCALITIES: Final = np.array(["external", "internal"], dtype=object)
# Indexed by src_internal * 2 + dst_internal.
_DIRECTIONS: Final = np.array(["external", "inbound", "outbound", "internal"], dtype=object)


def locality_array(is_internal: npt.NDArray[np.bool_]) -> npt.NDArray[np.object_]:
    """Vectorized :func:`locality`: an object array of ``"internal"``/``"external"``."""
    return _LOCALITIES[np.asarray(is_internal, dtype=np.bool_).astype(np.intp)]


def flow_locality_array(
    src_internal: npt.NDArray[np.bool_], dst_internal: npt.NDArray[np.bool_]
) -> npt.NDArray[np.object_]:
    """Vectorized :func:`flow_locality` over two bool arrays."""
    both = np.logical_and(np.asarray(src_internal, dtype=np.bool_), np.asarray(dst_internal, dtype=np.bool_))
    return _LOCALITIES[both.astype(np.intp)]


def direction_array(
    src_internal: npt.NDArray[np.bool_], dst_internal: npt.NDArray[np.bool_]
) -> npt.NDArray[np.object_]:
    """Vectorized :func:`direction` over two bool arrays: an object array of direction strings."""
    idx = np.asarray(src_internal, dtype=np.bool_).astype(np.intp) * 2 + np.asarray(
        dst_internal, dtype=np.bool_
    )
    return _DIRECTIONS[idx]
