"""The per-flow keys every normalized flow carries: Community ID and Filebeat's ``flow.id``.

Shared by the exporter normalizer (:mod:`~tunnelhound.normalize.ecs`) and the normalizer of
already-decoded records (:mod:`~tunnelhound.normalize.records`), so that one flow gets the
same keys whichever way it arrives. Both are computed over whole columns in C
(:func:`~tunnelhound.normalize.community_id.community_ids`, :func:`~tunnelhound.normalize.flow_id.flow_ids`).
"""

from __future__ import annotations

import numpy as np

from tunnelhound.normalize.addresses import FlowTuples
from tunnelhound.normalize.columns import Text
from tunnelhound.normalize.community_id import community_id_digests, community_ids
from tunnelhound.normalize.flow_id import flow_id_digests, flow_ids
from tunnelhound.normalize.rows import Rows


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
    tuples = FlowTuples(proto, sport, dport, hashable_tuples(proto, sport, dport), src, src_v6, dst, dst_v6)
    return community_ids(tuples, seed), flow_ids(tuples)


def flow_key_texts(tuples: FlowTuples, seed: int) -> tuple[Text, Text]:
    """:func:`flow_keys` as recipes: the digests, rendered (``"1:"`` + base64, base64url) only
    when written or read (see :mod:`~tunnelhound.normalize.columns`). ``tuples.ok`` must be
    :func:`hashable_tuples`."""
    n = len(tuples.proto)
    community, has_community = community_id_digests(tuples, seed)
    flow, has_flow = flow_id_digests(tuples)
    return (
        Text(Rows(n).base64(community, before="1:", mask=has_community), has_community),
        Text(Rows(n).base64(flow, url=True, mask=has_flow), has_flow),
    )
