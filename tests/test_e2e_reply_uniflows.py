"""Reply-only uniflows (what an exporter that sees one direction sends: NetFlow ``ingress``
on the WAN interface only, asymmetric routing) must not make the answering server a
scanner or a tunnel.

The stitcher emits a uniflow that finds no partner as the exporter oriented it (DESIGN §4:
"emitted alone, marked so"), so for a reply the *source* is the server.  The features read
every flow as if the source were the initiator: ``features/scan.py`` counts a flow whose
destination sent nothing as an unanswered probe (a reply's destination, the client, is not
seen sending), and ``features/app_tunnel.py`` takes ``destination.port`` as the service port
(a reply's is the client's ephemeral port).  These tests replay such replies, built as
IPFIX, through `tunnelhound replay`: ``features.values.replies`` tells a reply from a probe by
its service-port source (or, where the exporter sends ``initialTCPFlags``, by a SYN+ACK start)."""

from __future__ import annotations

import struct
from pathlib import Path

from ipfix_messages import FLOW_FIELDS, NAME_FIELDS, data_set, message, template, varlen
from lab_replay import replay_alerts

SERVER, CLIENT = 0xC6336401, 0x0A000001  # 198.51.100.1 (external), 10.0.0.1 (internal)
# Template 258: FLOW_FIELDS without the application, plus tcpControlBits (IE 6).
REPLY_FIELDS = [*FLOW_FIELDS[:-1], (6, 1)]
ACK_PSH_FIN = 0x19


def reply(i: int, proto: int, service: int, flags: int, every_ms: int) -> bytes:
    """Server:service -> client:(50000+i), 8 packets, 5000 bytes, one every ``every_ms``."""
    ms = 1_700_000_000_000 + i * every_ms
    return struct.pack("!IIHHBQQQQB", SERVER, CLIENT, service, 50000 + i, proto, 5000, 8, ms, ms + 300, flags)


def alerts_of(tmp_path: Path, sets: list[bytes]) -> list[tuple[str, str]]:
    export = tmp_path / "replies.dat"
    export.write_bytes(message(sets))
    return [(a["rule"]["name"], a["source"]["ip"]) for a in replay_alerts(tmp_path, export)]


def test_https_responses_to_one_client_are_not_a_port_scan(tmp_path: Path) -> None:
    # 20 HTTPS responses in 80 s: one browser fetching from one server.
    replies = data_set(258, [reply(i, 6, 443, ACK_PSH_FIN, 4000) for i in range(20)])
    assert alerts_of(tmp_path, [template(258, REPLY_FIELDS), replies]) == []


def test_dns_answers_to_one_client_are_not_a_port_scan(tmp_path: Path) -> None:
    # 30 answers of the resolver in 30 s, a new client port per lookup (as stub resolvers do).
    replies = data_set(258, [reply(i, 17, 53, 0, 1000) for i in range(30)])
    assert alerts_of(tmp_path, [template(258, REPLY_FIELDS), replies]) == []


def test_a_dpi_classified_answer_is_on_its_own_port(tmp_path: Path) -> None:
    # The resolver's answer, classified dns, from port 53 to the client's port 50000.
    answer = struct.pack(
        "!IIHHBQQQQ", SERVER, CLIENT, 53, 50000, 17, 120, 1, 1_700_000_000_000, 1_700_000_000_000
    )
    sets = [template(257, NAME_FIELDS), data_set(257, [answer + varlen(b"dns")])]
    assert alerts_of(tmp_path, sets) == []
