"""The per-flow keys every normalized flow carries: Community ID and Filebeat's ``flow.id``.

Shared by the exporter normalizer (:mod:`~tunnelhound.normalize.ecs`) and the normalizer of
already-decoded records (:mod:`~tunnelhound.normalize.records`), so that one flow gets the
same keys whichever way it arrives.
"""

from __future__ import annotations

import numpy as np

from tunnelhound.normalize.community_id import community_id
from tunnelhound.normalize.flow_id import flow_id


def hashable_tuples(proto: np.ndarray, sport: np.ndarray, dport: np.ndarray) -> np.ndarray:
    """Which records have a protocol and ports that Community ID and flow.id can pack.

    A port or protocol element sent wider than its type (or garbage) can exceed 16/8 bits;
    such a record gets no ids rather than failing the whole batch.
    """
    return (
        (proto >= 0) & (proto <= 0xFF) & (sport >= 0) & (sport <= 0xFFFF) & (dport >= 0) & (dport <= 0xFFFF)
    )


def flow_keys(
    proto: list[int],
    src: list[bytes],
    dst: list[bytes],
    sport: list[int],
    dport: list[int],
    hashable: list[bool],
    seed: int,
) -> tuple[list[str | None], list[str | None]]:
    """Community IDs and flow ids of many flows (None where a record has no hashable tuple).

    ``src``/``dst`` are packed addresses; for ICMP ``sport``/``dport`` are type and code, as
    both specifications want; ``hashable`` comes from :func:`hashable_tuples`.  Community ID
    also needs both addresses of one family.
    """
    rows = list(zip(proto, src, dst, sport, dport, hashable, strict=True))
    community = [
        community_id(p, s, d, a, b, seed) if k and len(s) == len(d) else None for p, s, d, a, b, k in rows
    ]
    flows = [flow_id(s, d, a, b, p) if k else None for p, s, d, a, b, k in rows]
    return community, flows
