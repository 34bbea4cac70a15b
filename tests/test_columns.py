"""Columns held as recipes (normalize/columns.py) render and read exactly as their strings.

The reference is the same frame with every text column read into its ``str`` object column
first: the encoder then takes the strings path it always had.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest

from replay import DATA
from tunnelhound.decode.decoder import Decoder
from tunnelhound.normalize import _kernels
from tunnelhound.normalize.columns import Columns, Text
from tunnelhound.normalize.ecs import Normalizer
from tunnelhound.normalize.frame import COLUMNS, FlowFrame, encode_bulk_block, encode_ndjson_block
from tunnelhound.normalize.rows import Rows, concat_rows, rows_equal
from tunnelhound.sources.files import iter_replay

CAPTURES = sorted(p.name for p in (DATA / "lab").glob("*.pcap"))
RECIPES = (
    "start_iso",
    "end_iso",
    "event_id",
    "src_ip",
    "dst_ip",
    "community_id",
    "flow_id",
    "observer",
    "netflow",
    "created",
)


def capture_frames(name: str) -> list[FlowFrame]:
    """One frame per merged group of the capture's batches (recipes as the normalizer makes them)."""
    decoder, normalizer = Decoder(), Normalizer()
    batches = [b for dg in iter_replay([str(DATA / "lab" / name)]) for b in decoder.decode(dg).flows]
    return [normalizer.frames([b]) for b in batches if b.count]


def read_all(frame: FlowFrame) -> FlowFrame:
    """A copy of ``frame`` with every column read as an array (no recipe left)."""
    copy = frame.take(slice(None))
    return FlowFrame(copy.n, {name: copy.cols[name] for name in copy.cols}, frame.namespace)


@pytest.mark.parametrize("capture", CAPTURES)
def test_recipes_render_as_their_strings(capture: str) -> None:
    frames = capture_frames(capture)
    assert frames and all(frame.columns.recipe(name) is not None for frame in frames for name in RECIPES)
    whole = FlowFrame.concat(frames)
    for frame in [*frames[:3], whole, whole.rows(1, whole.n - 1), whole.take(np.arange(whole.n)[::-2])]:
        plain = read_all(frame)
        assert encode_ndjson_block(frame) == encode_ndjson_block(plain)
        assert encode_bulk_block(frame, "flows") == encode_bulk_block(plain, "flows")
        assert frame.documents() == plain.documents()


def test_concat_keeps_recipes_built_alike_and_reads_the_rest() -> None:
    frames = capture_frames("ipfix.pcap")
    same = FlowFrame.concat(frames[:3])
    assert same.n == sum(f.n for f in frames[:3])
    assert all(same.columns.recipe(name) is not None for name in RECIPES)
    assert same.cols["src_ip"].tolist() == [ip for f in frames[:3] for ip in read_all(f).cols["src_ip"]]
    # A column read as an array in one part makes the joined column an array.
    frames = capture_frames("ipfix.pcap")[:2]
    _ = frames[0].cols["end_iso"]
    joined = FlowFrame.concat(frames)
    assert joined.columns.recipe("end_iso") is None and joined.columns.recipe("start_iso") is not None
    assert encode_ndjson_block(joined) == encode_ndjson_block(read_all(joined))


def test_reading_a_recipe_gives_the_object_column_and_drops_the_recipe() -> None:
    frame = capture_frames("ipfix.pcap")[0]
    assert list(frame.cols) == list(COLUMNS) and len(frame.cols) == len(COLUMNS)
    ips = frame.cols["src_ip"]
    assert ips.dtype == object and all(isinstance(ip, str) for ip in ips)
    assert frame.columns.recipe("src_ip") is None and frame.cols["src_ip"] is ips
    assert list(frame.cols) == list(COLUMNS)  # reading keeps the order
    ids = frame.cols["event_id"].tolist()
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids) and len(set(ids)) == len(ids)
    assert (
        frame.cols["start_iso"][0].endswith("Z") and frame.cols["observer"][0] == frame.cols["observer"][-1]
    )
    frame.cols["dst_ip"] = np.full(frame.n, "192.0.2.9", dtype=object)
    assert frame.columns.recipe("dst_ip") is None
    assert b'"destination":{"ip":"192.0.2.9"' in encode_ndjson_block(frame)
    del frame.cols["extra"]
    assert "extra" not in frame.cols and "src_ip" in frame.cols
    with pytest.raises(KeyError):
        _ = frame.cols["nothing"]


def mixed_addresses(v4: list[int], v6: list[bytes]) -> Rows:
    """As the normalizer's mixed templates: a zero IPv4 address means the row is IPv6."""
    a4 = np.array(v4, dtype=np.uint32)
    a6 = np.frombuffer(b"".join(v6), dtype="V16")
    use6 = a4 == 0
    return Rows(len(v4)).ipv6(a6, mask=use6).ipv4(a4, mask=~use6)


def test_text_equal_from_the_numbers() -> None:
    six = [socket.inet_pton(socket.AF_INET6, a) for a in ("2001:db8::1", "2001:db8::2", "::1", "::1")]
    src = mixed_addresses([0, 0x0A000001, 0, 0x0A000001], six)
    dst = mixed_addresses([0, 0x0A000001, 0, 0x0A000002], [six[1], six[0], six[3], six[0]])
    cols = Columns({"a": src, "b": dst})
    assert rows_equal(src, dst) is not None
    assert cols.text_equal("a", "b").tolist() == [False, True, True, False]
    assert (cols["a"] == cols["b"]).tolist() == [False, True, True, False]
    # Times are not told from the numbers (milliseconds drop digits): the strings decide.
    ns = np.array([1_000_000_001, 1_000_000_002])
    times = Columns({"a": Rows(2).iso(ns), "b": Rows(2).iso(ns + 1)})
    assert rows_equal(Rows(2).iso(ns), Rows(2).iso(ns + 1)) is None
    assert times.text_equal("a", "b").tolist() == [True, True]


def test_splice_with_a_mask_writes_the_recipe_only_where_it_holds() -> None:
    recipe = Rows(3).lit("<").integer(np.array([1, 2, 3]), after=">", mask=np.array([True, False, True]))
    recipe.lit("!").text(["a", None, "c"], before="[", after="]", absent="-")
    mask = np.array([True, True, False])
    got = Rows(3).lit("x").splice(recipe, before="(", after=")", mask=mask).lit("y").strings()
    want = [f"x({s})y" if keep else "xy" for s, keep in zip(recipe.strings(), mask, strict=True)]
    assert got == want == ["x(<1>![a])y", "x(<!-)y", "xy"]
    assert Rows(3).splice(recipe).strings() == recipe.strings()


def test_take_and_concat_of_recipes() -> None:
    a = Rows(3).ipv4(np.array([1, 2, 3], dtype=np.uint32), mask=np.array([True, False, True])).lit("|")
    a.text(["x", None, "z"], absent="-").hex(np.arange(6, dtype=np.uint8).reshape(3, 2))
    text = a.strings()
    assert a.take(np.array([2, 0])).strings() == [text[2], text[0]]
    assert a.take(np.array([False, True, True])).strings() == text[1:]
    assert a.take(slice(1, 3)).strings() == text[1:]
    joined = concat_rows([a, a.take(slice(0, 1))])
    assert joined.strings() == [*text, text[0]]
    assert len(joined.parts) == len(a.parts)  # built alike: joined part by part


def test_recipes_built_differently_join_as_one_switch_part_that_takes_and_joins_again() -> None:
    a = Rows(3).ipv4(np.array([1, 2, 3], dtype=np.uint32), mask=np.array([True, False, True])).lit("|")
    a.text(["x", None, "é"], absent="-").hex(np.arange(6, dtype=np.uint8).reshape(3, 2))
    b = Rows(2).lit('"').json(['q"', None], absent="null").lit('"')
    c = Rows(1).integer(np.array([-7]))
    texts = [*a.strings(), *b.strings(), *c.strings()]
    joined = concat_rows([a, b])
    assert len(joined.parts) == 1 and joined.parts[0][0] == _kernels.ROWS
    again = concat_rows([joined, c])  # a switch lends its sub-recipes: still one level
    assert len(again.parts[0][1][2]) == 3
    assert again.strings() == texts
    assert again.block() == "".join(texts).encode()
    assert again.lines() == [t.encode() for t in texts]
    assert again.xxh3_128() == Rows(6).text(texts).xxh3_128()
    order = np.array([5, 3, 0, 3, 2])
    taken = again.take(order)
    assert taken.strings() == [texts[i] for i in order.tolist()]
    assert [n for _, n in taken.parts[0][1][2]] == [3, 2, 1]  # most rows kept: subs shared
    one = again.take(np.array([4]))  # under a quarter of the rows: subs cut to the rows used
    assert [n for _, n in one.parts[0][1][2]] == [1] and one.strings() == [texts[4]]
    assert again.take(np.zeros(6, dtype=bool)).strings() == []
    # Spliced into a document with a mask, and joined with a switch of the same shape.
    doc = Rows(6).lit("<").splice(again, before="[", after="]", mask=np.array([1, 0, 1, 1, 0, 1], dtype=bool))
    assert doc.lit(">").strings() == [f"<[{t}]>" if k in (0, 2, 3, 5) else "<>" for k, t in enumerate(texts)]
    both = concat_rows([again, again.take(slice(4, 6))])
    assert both.strings() == [*texts, *texts[4:]]


def test_concat_joins_the_texts_of_picks_and_constants() -> None:
    a = Rows(2).constant("192.0.2.1").lit("|").pick(np.array([1, 0]), ("x", "y"))
    b = Rows(1).constant("192.0.2.2").lit("|").pick(np.array([0]), ("z",))
    joined = concat_rows([a, b])
    assert joined.strings() == ["192.0.2.1|y", "192.0.2.1|x", "192.0.2.2|z"]


def test_recipes_absent_on_some_rows_read_as_none_and_render_their_absence() -> None:
    ids = Text(
        Rows(4).base64(np.arange(32, dtype=np.uint8).reshape(4, 8), url=True), np.array([1, 0, 1, 0], bool)
    )
    cols = Columns({"flow_id": ids})
    lab = capture_frames("ipfix.pcap")[0].rows(0, 4)
    columns = {name: lab.columns.recipe(name) or lab.cols[name] for name in lab.cols}
    frame = FlowFrame(4, Columns({**columns, "flow_id": ids}))
    lines = encode_ndjson_block(frame).splitlines()
    assert [b'"flow":{"id":null' in line for line in lines] == [False, True, False, True]
    assert encode_ndjson_block(frame) == encode_ndjson_block(read_all(frame))
    assert cols["flow_id"].tolist() == ["AAECAwQFBgc", None, "EBESExQVFhc", None]
    assert (
        Text.concat([ids, Text(Rows(1).base64(np.zeros((1, 8), np.uint8), url=True))]).strings()[-1]
        == "AAAAAAAAAAA"
    )


def test_digests_are_of_the_text_whatever_form_the_column_has() -> None:
    six = [socket.inet_pton(socket.AF_INET6, a) for a in ("2001:db8::1", "::1", "::1")]
    recipe = mixed_addresses([0, 0x0A000001, 0], six)
    texts = ["2001:db8::1", "10.0.0.1", "::1"]
    cols = Columns({"recipe": recipe, "strings": np.array(texts, dtype=object)})
    cols.put(
        "absent", Text(Rows(3).ipv4(np.array([1, 2, 3], dtype=np.uint32)), np.array([True, False, True]))
    )
    cols["odd"] = np.array(["", None, "0.0.0.3"], dtype=object)
    digests = cols.digests("recipe")
    assert digests.shape == (3, 16) and digests.dtype == np.uint8
    assert cols.recipe("recipe") is not None  # read from the numbers, not turned into strings
    assert (digests == cols.digests("strings")).all()
    assert len({row.tobytes() for row in digests}) == 3
    # None differs from "" and from every text; present rows equal their strings' digests.
    absent, odd = cols.digests("absent"), cols.digests("odd")
    assert (
        absent[[0, 2]] == Columns({"x": np.array(["0.0.0.1", "0.0.0.3"], dtype=object)}).digests("x")
    ).all()
    assert not (absent[1] == odd[0]).all() and (absent[1] == odd[1]).all()
    assert (absent[2] == odd[2]).all()


def test_frames_of_different_templates_join_with_every_recipe_kept() -> None:
    v9, ipfix = capture_frames("netflow_v9.pcap")[:2], capture_frames("ipfix.pcap")[:2]
    mixed = [v9[0], ipfix[0], v9[1], ipfix[1]]
    joined = FlowFrame.concat(mixed)
    assert joined.n == sum(f.n for f in mixed)
    assert all(joined.columns.recipe(name) is not None for name in RECIPES)
    netflow = joined.columns.recipe("netflow")
    assert netflow is not None and netflow.rows.parts[0][0] == _kernels.ROWS  # the templates differ
    assert encode_ndjson_block(joined) == encode_ndjson_block(read_all(joined))
    assert encode_ndjson_block(joined) == b"".join(encode_ndjson_block(f) for f in mixed)
    taken = joined.take(np.arange(joined.n)[::-3])
    assert encode_ndjson_block(taken) == encode_ndjson_block(read_all(taken))


def test_text_at_reads_one_row_and_leaves_the_recipe() -> None:
    cols = Columns({"ip": Rows(3).ipv4(np.array([1, 2, 3], dtype=np.uint32))})
    cols.put("id", Text(Rows(2).constant("x").take(np.array([0, 0, 0])), np.array([True, False, True])))
    assert [cols.text_at("ip", r) for r in range(3)] == ["0.0.0.1", "0.0.0.2", "0.0.0.3"]
    assert [cols.text_at("id", r) for r in range(3)] == ["x", None, "x"]
    assert cols.recipe("ip") is not None and cols.recipe("id") is not None
    cols["plain"] = np.array(["a", None], dtype=object)
    assert cols.text_at("plain", 1) is None and cols.text_at("plain", 0) == "a"


def test_spans_point_into_one_text_and_take_and_join() -> None:
    text = b"[1.5,-2e-7,300.0]"
    a = Rows(4).spans(text, np.array([1, 0, 5, 11]), np.array([4, 0, 10, 16]), before="<", after=">",
                      mask=np.array([True, False, True, True]))  # fmt: skip
    assert a.strings() == ["<1.5>", "", "<-2e-7>", "<300.0>"]
    assert a.take(np.array([3, 0])).strings() == ["<300.0>", "<1.5>"]
    b = Rows(1).spans(b"[7.25]", np.array([1]), np.array([5]), before="<", after=">", mask=np.array([True]))
    joined = concat_rows([a, b])
    assert len(joined.parts) == len(a.parts)  # one span part over the two texts
    assert joined.strings() == ["<1.5>", "", "<-2e-7>", "<300.0>", "<7.25>"]
    bad = Rows(1).spans(b"[1]", np.array([2]), np.array([9]))
    with pytest.raises(IndexError, match="span"):
        bad.strings()


def test_a_switch_keeps_one_sub_recipe_per_shape_however_often_it_is_joined() -> None:
    def v4(values: list[int]) -> Rows:
        return Rows(len(values)).lit("<").ipv4(np.array(values, dtype=np.uint32)).lit(">")

    def num(values: list[int]) -> Rows:
        return Rows(len(values)).integer(np.array(values))

    rounds = [concat_rows([v4([k, k + 1]), num([k])]) for k in range(10)]
    joined = concat_rows(rounds)
    texts = [t for r in rounds for t in r.strings()]
    assert len(joined.parts[0][1][2]) == 2  # two shapes, not twenty sub-recipes
    assert joined.strings() == texts
    again = concat_rows([joined.take(np.arange(0, 30, 2)), joined.take(np.arange(1, 30, 2))])
    assert len(again.parts[0][1][2]) == 2
    assert again.strings() == texts[0::2] + texts[1::2]
