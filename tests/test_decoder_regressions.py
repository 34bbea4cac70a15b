"""Regressions found by fuzzing the decoder and the normalizer (tests/test_fuzz_decoder.py).

Each test feeds the exact (minimized) bytes that broke something and asserts the outcome
and the reason it was counted under, on the fast path and the reference path alike.
"""

from __future__ import annotations

import struct
import warnings
from typing import Any

import orjson
import pytest

from tunnelhound.decode.decoder import Decoded, Decoder
from tunnelhound.model import Datagram
from tunnelhound.normalize.ecs import Normalizer

IP, PORT = "192.0.2.1", 4444


def ipfix(*sets: bytes, seq: int = 0, domain: int = 1) -> bytes:
    """One IPFIX message holding ``sets`` (length computed)."""
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), 1_600_000_000, seq, domain) + body


def v9(*sets: bytes, seq: int = 0, source_id: int = 0) -> bytes:
    """One NetFlow v9 packet holding ``sets``."""
    return struct.pack("!HHIIII", 9, len(sets), 1000, 1_600_000_000, seq, source_id) + b"".join(sets)


def set_(set_id: int, body: bytes) -> bytes:
    """A set (flowset) header in front of ``body``."""
    return struct.pack("!HH", set_id, 4 + len(body)) + body


def template(tid: int, *fields: tuple[int, int]) -> bytes:
    """A template record: id, field count, (element id, length) pairs."""
    return struct.pack("!HH", tid, len(fields)) + b"".join(struct.pack("!HH", e, n) for e, n in fields)


def decode(decoder: Decoder, data: bytes, received: float = 1000.0) -> Decoded:
    """Decode one datagram from the test exporter."""
    return decoder.decode(Datagram(data, IP, PORT, received))


def errors(decoder: Decoder) -> dict[str, int]:
    """Errors by reason, as a plain dict (empty when there were none)."""
    return dict(decoder.stats.errors_by_reason())


@pytest.fixture(params=[True, False], ids=["fast", "reference"])
def decoder(request: pytest.FixtureRequest) -> Decoder:
    """A fresh decoder on each path."""
    return Decoder(fast_path=request.param)


# --------------------------------------------------------------------------- template sets

# sourceIPv4Address, destinationIPv4Address, octetDeltaCount(4)
TEMPLATE_256 = template(256, (8, 4), (12, 4), (1, 4))


def test_resent_template_is_counted_as_a_template_set(decoder: Decoder) -> None:
    message = ipfix(set_(2, TEMPLATE_256))
    for _ in range(2):
        out = decode(decoder, message)
        assert out.record_count == 0 and not out.options
    # The second copy changed nothing, yet it is accounted for: not a silent datagram.
    assert decoder.stats.template_sets[IP] == 2
    assert errors(decoder) == {}


def test_withdrawal_only_message_is_counted_as_a_template_set(decoder: Decoder) -> None:
    decode(decoder, ipfix(set_(2, TEMPLATE_256)))
    key = decoder.sessions.key(IP, PORT, 10, 1)
    assert decoder.sessions.template(key, 256) is not None
    decode(decoder, ipfix(set_(2, struct.pack("!HH", 256, 0)), seq=0))
    assert decoder.sessions.template(key, 256) is None
    assert decoder.stats.template_sets[IP] == 2
    assert errors(decoder) == {}


# --------------------------------------------------------------------------- reduced-size integers


def test_odd_width_integers_in_a_multi_record_set(decoder: Decoder) -> None:
    # ipt_NETFLOW-style reduced-size encoding: IN_BYTES in 3 octets, beside a 4-octet field,
    # two records.  The fast path used to fail re-viewing the strided 3-byte column.
    data = v9(
        set_(0, template(256, (1, 3), (2, 4))),
        set_(256, bytes.fromhex("0102030000000afffffe00000014")),
    )
    out = decode(decoder, data)
    assert errors(decoder) == {}
    assert [b.records() for b in out.flows] == [
        [
            {"octet_delta_count": 0x010203, "packet_delta_count": 10},
            {"octet_delta_count": 0xFFFFFE, "packet_delta_count": 20},
        ]
    ]


# --------------------------------------------------------------------------- set padding


def test_non_zero_padding_shorter_than_a_record_keeps_the_set(decoder: Decoder) -> None:
    # nProbe pads a 49-byte record with 3 leftover bytes (0d 00 01), Mikrotik with 2: padding
    # is whatever is shorter than a record (RFC 7011 §3.3.1 only recommends zeros).  The
    # reference path used to call the tail a truncated record and drop the whole set, so it
    # disagreed with the fast path on those vendor captures.
    data = v9(set_(0, template(256, (1, 4), (2, 4))), set_(256, bytes.fromhex("000000c8000000020d0001")))
    out = decode(decoder, data)
    assert errors(decoder) == {}
    assert [b.records() for b in out.flows] == [[{"octet_delta_count": 200, "packet_delta_count": 2}]]


# --------------------------------------------------------------------------- messages and sets with nothing in them


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("000a0010d06f7b996b5f55b9cfc8053b"),  # IPFIX header, length 16
        bytes.fromhex("0009d9a06deca79af9a095dd2ed44a9f49261cc8"),  # v9 header
        bytes.fromhex("000900090000b0145616be3e0000000100000000") + bytes(108),  # v9 header, zero tail
    ],
    ids=["ipfix-header", "v9-header", "v9-zero-padding"],
)
def test_message_without_sets_is_counted(decoder: Decoder, data: bytes) -> None:
    # Used to leave no trace at all: no records, no template, no error.
    out = decode(decoder, data)
    assert out.record_count == 0 and not out.options
    assert errors(decoder) == {"empty_message": 1}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (bytes.fromhex("0d0001"), "truncated_record"),  # fast path: silently nothing
        (bytes(4), "empty_set"),
        (b"", "empty_set"),
    ],
    ids=["short-non-zero", "zeros", "empty"],
)
def test_data_set_without_a_whole_record_is_counted(decoder: Decoder, body: bytes, reason: str) -> None:
    decode(decoder, v9(set_(0, template(256, (1, 4), (2, 4)))))
    out = decode(decoder, v9(set_(256, body), seq=1))
    assert out.record_count == 0
    assert errors(decoder) == {reason: 1}


@pytest.mark.parametrize(
    "data",
    [
        v9(set_(0, bytes(4))),  # template flowset holding only padding
        v9(set_(1, b"")),  # empty options template flowset
        ipfix(set_(2, b"")),
        ipfix(set_(3, bytes(4))),
    ],
    ids=["v9-padding", "v9-options-empty", "ipfix-empty", "ipfix-options-padding"],
)
def test_template_set_without_a_template_is_counted(decoder: Decoder, data: bytes) -> None:
    decode(decoder, data)
    assert decoder.stats.template_sets[IP] == 0
    assert errors(decoder) == {"empty_set": 1}


# --------------------------------------------------------------------------- normalizer on odd widths


def normalized(decoder: Decoder, data: bytes) -> list[dict[str, Any]]:
    """Decode ``data`` and normalize every batch; the documents must serialize."""
    out = decode(decoder, data)
    assert errors(decoder) == {}
    docs = [doc for batch in out.flows for doc in Normalizer().normalize(batch)]
    orjson.dumps(docs)
    return docs


def test_addresses_of_impossible_width_are_no_addresses(decoder: Decoder) -> None:
    # IPV4_SRC_ADDR in 3 octets and IPV6_DST_ADDR in 4 arrive as raw bytes; the normalizer
    # used to feed them to inet_ntoa/inet_ntop and fail the batch.
    data = v9(
        set_(0, template(256, (8, 3), (28, 4), (4, 1))),
        set_(256, bytes.fromhex("0a000020010db8060b000020010db911")),
    )
    docs = normalized(decoder, data)
    assert [(d["source"]["ip"], d["destination"]["ip"]) for d in docs] == [("0.0.0.0", "0.0.0.0")] * 2


def test_ports_and_protocol_too_wide_for_the_ids(decoder: Decoder) -> None:
    # L4_SRC_PORT in 4 octets (0x00123456) and PROTOCOL in 2 (300): Community ID and
    # flow.id cannot pack them; they used to raise out of normalize().
    data = v9(
        set_(0, template(256, (8, 4), (12, 4), (7, 4), (11, 2), (4, 2))),
        set_(256, bytes.fromhex("0a0000010a000002001234560035012c")),
    )
    (doc,) = normalized(decoder, data)
    assert doc["source"]["port"] == 0x123456
    assert doc["network"]["community_id"] is None
    assert doc["flow"]["id"] is None


def test_time_elements_of_impossible_width_fall_back_to_export_time(decoder: Decoder) -> None:
    # FIRST_SWITCHED in 9 octets and LAST_SWITCHED variable-length arrive as raw bytes;
    # flow_times used to cast them to integers and fail the batch.
    data = v9(
        set_(0, template(256, (8, 4), (22, 9), (21, 0xFFFF))),
        set_(256, bytes.fromhex("0a00000100000000000000000103000001")),
    )
    (doc,) = normalized(decoder, data)
    assert doc["event"]["start"] == doc["event"]["end"] == "2020-09-13T12:26:40.000Z"


def test_sampled_counter_beyond_int64_saturates(decoder: Decoder) -> None:
    # A fuzzed options record set SAMPLING_INTERVAL 1000 and a flow carried IN_BYTES
    # 0xffffffffffffffff: scaled, it passed int64 and the cast gave INT64_MIN with a
    # RuntimeWarning ("invalid value encountered in cast").
    options = set_(1, struct.pack("!HHH", 257, 4, 4) + struct.pack("!HHHH", 1, 4, 34, 4))
    flows = set_(0, template(256, (8, 4), (12, 4), (1, 8)))
    decode(decoder, v9(options, flows, set_(257, struct.pack("!II", 0, 1000))))
    data = v9(set_(256, bytes.fromhex("0a0000010a000002ffffffffffffffff")), seq=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (doc,) = normalized(decoder, data)
    assert doc["source"]["bytes"] == 2**63 - 1024
    assert doc["tunnelhound"]["sampling_rate"] == 1000.0
