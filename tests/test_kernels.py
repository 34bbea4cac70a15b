"""The C kernels (tunnelhound.normalize._kernels) equal their Python specifications.

Community ID and flow.id against the pure-Python functions (which test_flow_ids.py holds to
the published vectors); the text pieces against the functions the encoder used before they
moved to C: numpy's ISO formatting, ``socket.inet_ntoa``/``inet_ntop``, ``str(int)`` and
``xxhash.xxh3_128_hexdigest``.
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import subprocess
import sys

import numpy as np
import orjson
import pytest
import xxhash

from replay import DATA
from tunnelhound.normalize.addresses import FlowTuples, packed4, packed6
from tunnelhound.normalize.community_id import community_id, community_id_digests, community_ids
from tunnelhound.normalize.flow_id import flow_id, flow_id_digests, flow_ids
from tunnelhound.normalize.rows import Rows

RNG = random.Random(20261123)
PROTOS = [1, 6, 17, 58, 132, 47, 50, 0, 255]


def _tuples(rows: list[tuple[int, bytes, bytes, int, int]]) -> FlowTuples:
    """FlowTuples from (proto, saddr, daddr, sport, dport) with 4- or 16-byte addresses."""

    def side(addrs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        v6 = np.array([len(a) == 16 for a in addrs])
        packed = np.zeros((len(addrs), 16), dtype=np.uint8)
        for i, a in enumerate(addrs):
            packed[i, : len(a)] = np.frombuffer(a, dtype=np.uint8)
        return packed, v6

    proto, sport, dport = (np.array([r[k] for r in rows], dtype=np.int64) for k in (0, 3, 4))
    src, src_v6 = side([r[1] for r in rows])
    dst, dst_v6 = side([r[2] for r in rows])
    ok = np.ones(len(rows), dtype=bool)
    return FlowTuples(proto, sport, dport, ok, src, src_v6, dst, dst_v6)


def _random_rows(count: int) -> list[tuple[int, bytes, bytes, int, int]]:
    rows = []
    pool4 = [RNG.randbytes(4) for _ in range(20)]
    pool6 = [RNG.randbytes(16) for _ in range(20)]
    for _ in range(count):
        proto = RNG.choice(PROTOS)
        pool = pool6 if RNG.random() < 0.4 else pool4
        a = RNG.choice(pool)
        b = a if RNG.random() < 0.1 else RNG.choice(pool)  # equal addresses: ordered by port
        if RNG.random() < 0.05:
            b = RNG.choice(pool4 if pool is pool6 else pool6)  # mixed families
        if proto in (1, 58):
            sport, dport = RNG.choice([0, 3, 8, 11, 13, 128, 129, 135, 136, 144, 200]), RNG.randrange(256)
        else:
            sport = RNG.choice([0, 53, 443, 8080, 65535, RNG.randrange(65536)])
            dport = sport if RNG.random() < 0.1 else RNG.randrange(65536)
        rows.append((proto, a, b, sport, dport))
    return rows


@pytest.mark.parametrize("seed", [0, 1, 65535])
def test_community_ids_equal_the_python_function(seed: int) -> None:
    rows = _random_rows(5000)
    expected = [community_id(p, a, b, sp, dp, seed) if len(a) == len(b) else None for p, a, b, sp, dp in rows]
    assert community_ids(_tuples(rows), seed) == expected
    assert sum(e is None for e in expected) > 50


def test_community_ids_reproduce_the_spec_vectors() -> None:
    vectors = json.loads((DATA / "vectors" / "community_id_default.json").read_text())
    vectors = vectors["vectors"]
    rows, expected = [], []
    for v in vectors:
        a, b = (
            socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
            for ip in (v["saddr"], v["daddr"])
        )
        rows.append((v["proto"], a, b, v.get("sport") or 0, v.get("dport") or 0))
        expected.append(v["communityid"])
    assert community_ids(_tuples(rows)) == expected


def test_community_ids_none_where_not_hashable() -> None:
    t = _tuples(_random_rows(10))
    ok = np.arange(10) % 2 == 0
    got = community_ids(FlowTuples(t.proto, t.sport, t.dport, ok, t.src, t.src_v6, t.dst, t.dst_v6))
    assert [g is None for g in got] == (~ok | (t.src_v6 != t.dst_v6)).tolist()
    with pytest.raises(ValueError, match="seed"):
        community_ids(t, 70000)


def test_flow_ids_equal_the_python_function() -> None:
    rows = _random_rows(5000)
    assert flow_ids(_tuples(rows)) == [flow_id(a, b, sp, dp, p) for p, a, b, sp, dp in rows]


def test_packed_addresses() -> None:
    v4 = np.array([0x0A000001, 0xFFFFFFFF], dtype=np.uint32)
    assert packed4(v4)[:, :4].tobytes() == b"\x0a\0\0\x01\xff\xff\xff\xff"
    assert not packed4(v4)[:, 4:].any()
    raw = RNG.randbytes(32)
    assert packed6(np.frombuffer(raw, dtype="V16")).tobytes() == raw


def test_integers_bools_and_masks() -> None:
    i64 = np.array([0, -1, 7, 2**63 - 1, -(2**63), 10**12], dtype=np.int64)
    u64 = np.array([0, 1, 9, 2**64 - 1, 2**63, 10**19], dtype=np.uint64)
    flags = np.array([True, False] * 3)
    got = Rows(6).integer(i64).lit("|").integer(u64).lit("|").integer(flags).strings()
    assert got == [
        f"{a}|{b}|{'true' if f else 'false'}"
        for a, b, f in zip(i64.tolist(), u64.tolist(), flags.tolist(), strict=True)
    ]
    masked = Rows(6).lit("<").integer(i64, before="[", after="]", absent="-", mask=flags).lit(">").strings()
    assert masked == [f"<[{a}]>" if f else "<->" for a, f in zip(i64.tolist(), flags.tolist(), strict=True)]
    narrow = (
        Rows(2)
        .integer(np.array([-5, 100], dtype=np.int8))
        .lit(",")
        .integer(np.array([200, 7], dtype=np.uint8))
    )
    assert narrow.strings() == ["-5,200", "100,7"]


def test_iso_times_equal_numpy() -> None:
    ns = np.array(
        [
            0,
            1,
            -1,
            999_999,
            1_000_000,
            -1_000_001,
            1_700_000_000_123_456_789,
            2**63 - 1,
            -(2**63) + 1,
            -(2**63),
        ]
        + [RNG.randrange(-(2**63), 2**63) for _ in range(20000)],
        dtype=np.int64,
    )
    expected = np.datetime_as_string(ns.astype("datetime64[ns]").astype("datetime64[ms]"), timezone="UTC")
    assert Rows(len(ns)).iso(ns).strings() == expected.tolist()


def test_addresses_equal_the_socket_functions() -> None:
    v4 = np.array(
        [0, 1, 0x7F000001, 0xFFFFFFFF] + [RNG.randrange(2**32) for _ in range(5000)], dtype=np.uint32
    )
    assert Rows(len(v4)).ipv4(v4).strings() == [
        socket.inet_ntoa(int(a).to_bytes(4, "big")) for a in v4.tolist()
    ]
    special = [
        bytes(16),
        bytes(15) + b"\1",
        bytes(10) + b"\xff\xff\x0a\0\0\1",
        b"\x20\x01\x0d\xb8" + bytes(12),
    ]
    raw = (
        special + [RNG.randbytes(16) for _ in range(2000)] + [RNG.randbytes(8) + bytes(8) for _ in range(500)]
    )
    v6 = np.frombuffer(b"".join(raw), dtype="V16")
    assert Rows(len(raw)).ipv6(v6).strings() == [socket.inet_ntop(socket.AF_INET6, a) for a in raw]


def test_text_columns_none_and_unicode() -> None:
    values = ["a", None, "é ü", "", None, "x" * 300]
    got = Rows(6).lit("{").text(values, before='"', after='"', absent="null").lit("}").strings()
    assert got == ['{"a"}', "{null}", '{"é ü"}', '{""}', "{null}", '{"' + "x" * 300 + '"}']
    mask = np.array([True, True, False, True, True, False])
    assert Rows(6).text(values, before="+", mask=mask).strings() == ["+a", "", "", "+", "", ""]
    with pytest.raises(TypeError, match="non-str"):
        Rows(2).text(["a", b"b"]).strings()  # type: ignore[list-item]
    with pytest.raises(ValueError, match="rows"):
        Rows(3).integer(np.arange(2)).strings()


def test_pick_and_render_modes() -> None:
    codes = np.array([2, 0, 1, 2])
    rows = Rows(4).lit("k=").pick(codes, ["zero", "one", "two"]).lit(";")
    assert rows.strings() == ["k=two;", "k=zero;", "k=one;", "k=two;"]
    assert rows.lines() == [s.encode() for s in rows.strings()]
    assert rows.block() == b"k=two;k=zero;k=one;k=two;"
    with pytest.raises(IndexError):
        Rows(1).pick(np.array([3]), ["a"]).strings()
    assert Rows(0).lit("x").block() == b"" and Rows(0).lit("x").strings() == []


def test_big_blocks_grow_past_the_first_row_estimate() -> None:
    # The block is sized from the first row; later, longer rows must still fit.
    values = ["a"] + ["b" * 10_000] * 50
    assert Rows(51).text(values).lit("\n").block() == "".join(v + "\n" for v in values).encode()


def test_xxh3_128_of_rows_equals_xxhash() -> None:
    texts = ["", "a", "192.0.2.1|4444|9|0|256|1700000000|7|24|3|10.0.0.1", "é" * 100, "x" * 1000]
    nums = np.arange(len(texts), dtype=np.int64) * 1_000_003
    got = Rows(len(texts)).text(texts).lit("|").integer(nums).xxh3_128()
    assert got == [
        xxhash.xxh3_128_hexdigest(f"{t}|{n}".encode()) for t, n in zip(texts, nums.tolist(), strict=True)
    ]
    digests = Rows(len(texts)).text(texts).lit("|").integer(nums).xxh3_128_digests()
    assert digests.shape == (len(texts), 16) and digests.dtype == np.uint8
    assert [bytes(d) for d in digests] == [
        xxhash.xxh3_128_digest(f"{t}|{n}".encode()) for t, n in zip(texts, nums.tolist(), strict=True)
    ]
    assert Rows(len(texts)).hex(digests).strings() == got
    assert Rows(0).xxh3_128_digests().shape == (0, 16)


def test_base64_of_bytes_equals_the_base64_module() -> None:
    rng = np.random.default_rng(8)
    for width in (0, 1, 2, 3, 8, 20, 48):
        values = rng.integers(0, 256, size=(40, width), dtype=np.uint8)
        mask = rng.random(40) < 0.7
        plain = Rows(40).base64(values, before="1:", mask=mask).strings()
        url = Rows(40).base64(values, url=True).strings()
        assert plain == [
            f"1:{base64.b64encode(bytes(v)).decode()}" if m else "" for v, m in zip(values, mask, strict=True)
        ]
        assert url == [base64.urlsafe_b64encode(bytes(v)).rstrip(b"=").decode() for v in values]


def test_raw_digests_render_as_the_ids() -> None:
    tuples = _tuples(_random_rows(400))
    digests, present = community_id_digests(tuples, 7)
    want = community_ids(tuples, 7)
    assert present.tolist() == [i is not None for i in want]
    got = Rows(len(want)).base64(digests, before="1:", mask=present).strings()
    assert got == [i or "" for i in want]
    digests, present = flow_id_digests(tuples)
    want = flow_ids(tuples)
    assert present.tolist() == [i is not None for i in want]
    assert Rows(len(want)).base64(digests, url=True, mask=present).strings() == [i or "" for i in want]


def test_hex_of_bytes_equals_bytes_hex() -> None:
    rng = np.random.default_rng(7)
    for width in (0, 1, 6, 16, 20):
        values = rng.integers(0, 256, size=(50, width), dtype=np.uint8)
        mask = rng.random(50) < 0.7
        got = Rows(50).hex(values, before="<", after=">", mask=mask).strings()
        assert got == [f"<{bytes(v).hex()}>" if m else "" for v, m in zip(values, mask, strict=True)]


def test_json_strings_equal_orjson() -> None:
    alphabet = [chr(c) for c in range(0x30)] + ['"', "\\", "/", "\x7f", "é", "\u2028", "😀", "a", "Z"]
    values: list[str | None] = ["", None, "plain"] + [
        "".join(RNG.choice(alphabet) for _ in range(RNG.randrange(12))) for _ in range(3000)
    ]
    got = Rows(len(values)).lit("[").json(values, absent="null").lit("]").strings()
    assert got == [f"[{orjson.dumps(v).decode()}]" for v in values]


def test_block_into_reuses_one_buffer() -> None:
    buffer = bytearray()
    big = Rows(3).text(["x" * 5000, "y", "z"]).lit("\n")
    assert big.block_into(buffer) == 5005 and bytes(buffer[:5005]) == big.block()
    capacity = len(buffer)
    small = Rows(2).text(["a", "b"]).lit("\n")
    assert small.block_into(buffer) == 4 and bytes(buffer[:4]) == b"a\nb\n"
    assert len(buffer) == capacity  # never shrunk
    assert Rows(0).lit("x").block_into(buffer) == 0


def test_rows_render_in_pieces_as_whole() -> None:
    n = 1000
    rows = (
        Rows(n)
        .lit("{")
        .integer(np.arange(n) * 7919)
        .text([f"é{i}" if i % 3 else None for i in range(n)], before=",")
    )
    rows.ipv4(np.arange(n, dtype=np.uint32), before=",", mask=np.arange(n) % 2 == 0).lit("}\n")
    whole, buffer, pieces = rows.block(), bytearray(), []
    for start in range(0, n, 64 * 3 + 5):  # pieces that cross the C loop's 64-row tiles
        size = rows.block_into(buffer, start, min(start + 197, n))
        pieces.append(bytes(buffer[:size]))
    assert b"".join(pieces) == whole
    assert rows.block_into(buffer, n, n) == 0
    for start, stop in ((-1, 5), (5, 4), (0, n + 1)):
        with pytest.raises(ValueError, match="out of range"):
            rows.block_into(buffer, start, stop)


def test_portable_sha1_gives_the_same_ids() -> None:
    # The SHA-NI block function is picked at import when the CPU has it; the portable one
    # must give the same ids (run in a fresh interpreter with the switch set).
    script = (
        "import json, sys, numpy as np\n"
        "from tunnelhound.normalize import _kernels\n"
        "from tunnelhound.normalize.addresses import FlowTuples\n"
        "from tunnelhound.normalize.community_id import community_ids\n"
        "a = np.array(json.load(sys.stdin), dtype=np.int64)\n"
        "src = np.zeros((len(a), 16), np.uint8); src[:, :4] = a[:, 3:7]\n"
        "dst = np.zeros((len(a), 16), np.uint8); dst[:, :4] = a[:, 7:11]\n"
        "v6 = np.zeros(len(a), bool)\n"
        "t = FlowTuples(a[:, 0], a[:, 1], a[:, 2], np.ones(len(a), bool), src, v6, dst, v6)\n"
        "print(json.dumps([_kernels.SHA1, community_ids(t)]))\n"
    )
    rows = [
        [RNG.choice(PROTOS), RNG.randrange(256), RNG.randrange(65536)]
        + [RNG.randrange(256) for _ in range(8)]
        for _ in range(500)
    ]
    results = {}
    for flag in ("0", "1"):
        proc = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(rows),
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "TUNNELHOUND_NO_SHA_NI": flag},
        )
        results[flag] = json.loads(proc.stdout)
    assert results["1"][0] == "portable"
    assert results["0"][1] == results["1"][1]
    expected = [community_id(r[0], bytes(r[3:7]), bytes(r[7:11]), r[1], r[2]) for r in rows]
    assert results["1"][1] == expected


def test_count_newlines() -> None:
    from tunnelhound.normalize._kernels import count_newlines

    data = bytes(RNG.choice(b"ab\n") for _ in range(100_000))
    assert count_newlines(data) == data.count(b"\n")
    assert count_newlines(b"") == 0 and count_newlines(bytearray(b"\n\n")) == 2
    assert count_newlines(memoryview(data)[10:500]) == data[10:500].count(b"\n")
