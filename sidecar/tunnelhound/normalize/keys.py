"""The per-flow keys every normalized flow carries: Community ID and Filebeat's ``flow.id``.

Shared by the exporter normalizer (:mod:`~tunnelhound.normalize.ecs`) and the normalizer of
already-decoded records (:mod:`~tunnelhound.normalize.records`), so that one flow gets the
same keys whichever way it arrives. Both are computed over whole columns in C
(:func:`~tunnelhound.normalize.community_id.community_ids`, :func:`~tunnelhound.normalize.flow_id.flow_ids`).
"""

from __future__ import annotations

import numpy as np

from tunnelhound.normalize.addresses import FlowTuples
from tunnelhound.normalize.community_id import community_ids
from tunnelhound.normalize.flow_id import flow_ids


def hashable_tuples(proto: np.ndarray, sport: np.ndarray, dport: np.ndarray) -> np.ndarray:
    """Which records have a protocol and ports that Community ID and flow.id can pack.

    A port or protocol element sent wider than its type (or garbage) can exceed 16/8 bits;
    such a record gets no ids rather than failing the whole batch.
    """
    return (
        (proto >= 0) & (proto <= 0xFF) & (sport >= 0) & (sport <= 0xFFFF) & (dport >= 0) & (dport <= 0xFFFF)
    )


def flow_keys(
    proto: np.ndarray,
    sport: np.ndarray,
    dport: np.ndarray,
    src: np.ndarray,
    src_v6: np.ndarray,
    dst: np.ndarray,
    dst_v6: np.ndarray,
    seed: int,
) -> tuple[list[str | None], list[str | None]]:
    """Community IDs and flow ids of many flows (None where a record has no hashable tuple).

    ``proto``, ``sport``, ``dport`` are int64 columns; for ICMP the ports are type and code,
    as both specifications want. ``src``/``dst`` are packed addresses, (n, 16) uint8 as
    :class:`FlowTuples` holds them, with their is-IPv6 masks. Community ID also needs both
    addresses of one family.
    """
    ok = hashable_tuples(proto, sport, dport)
    tuples = FlowTuples(proto, sport, dport, ok, src, src_v6, dst, dst_v6)
    return community_ids(tuples, seed), flow_ids(tuples)
