"""The NDJSON encoder writes exactly the documents FlowFrame.documents() describes."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest

from exports import SPECS, export
from replay import DATA
from tunnelhound.decode.decoder import Decoder
from tunnelhound.model import Datagram
from tunnelhound.normalize.biflow import BiflowStitcher
from tunnelhound.normalize.ecs import Normalizer
from tunnelhound.normalize.frame import (
    FlowFrame,
    encode_bulk_block,
    encode_ndjson,
    encode_ndjson_block,
    ndjson_rows,
)
from tunnelhound.sources.files import iter_replay

__all__ = ["export"]
CASES = json.loads((DATA / "vendors" / "expectations.json").read_text())


def assert_encoded_equals_documents(frame: FlowFrame) -> None:
    lines = encode_ndjson(frame)
    assert len(lines) == frame.n
    assert [orjson.loads(line) for line in lines] == frame.documents()


def stitched(frame: FlowFrame) -> FlowFrame:
    stitcher = BiflowStitcher()
    return FlowFrame.concat([stitcher.push(frame), stitcher.flush()])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_vendor_cases(case: dict[str, Any]) -> None:
    decoder, normalizer = Decoder(), Normalizer()
    batches = []
    for i, name in enumerate(case["files"]):
        data = (DATA / "vendors" / "dat" / name).read_bytes()
        batches += decoder.decode(Datagram(data, "192.0.2.1", 4444, float(i))).flows
    frame = normalizer.frames(batches)
    assert_encoded_equals_documents(frame)
    assert_encoded_equals_documents(stitched(frame))


@pytest.mark.parametrize("capture", ["netflow_v5.pcap", "netflow_v9.pcap", "ipfix.pcap"])
def test_lab_captures_stitched(capture: str) -> None:
    decoder, normalizer = Decoder(), Normalizer()
    batches = [b for dg in iter_replay([str(DATA / "lab" / capture)]) for b in decoder.decode(dg).flows]
    frame = stitched(normalizer.frames(batches))
    assert frame.n == 1919
    assert_encoded_equals_documents(frame)


@pytest.mark.real_exporter
@pytest.mark.parametrize("name", list(SPECS))
def test_softflowd_exports(export: Any, name: str) -> None:
    decoder, normalizer = Decoder(), Normalizer()
    run = export(name)
    batches = [
        b for data, at in run.datagrams for b in decoder.decode(Datagram(data, "127.0.0.1", 9995, at)).flows
    ]
    assert_encoded_equals_documents(stitched(normalizer.frames(batches)))


def test_empty_frame() -> None:
    assert encode_ndjson(FlowFrame.empty()) == [] and FlowFrame.empty().documents() == []


def test_block_encoding_is_the_lines_with_newlines() -> None:
    decoder, normalizer = Decoder(), Normalizer()
    batches = [b for dg in iter_replay([str(DATA / "lab" / "ipfix.pcap")]) for b in decoder.decode(dg).flows]
    frame = normalizer.frames(batches)
    assert encode_ndjson_block(frame) == b"".join(line + b"\n" for line in encode_ndjson(frame))
    assert encode_ndjson_block(FlowFrame.empty()) == b""
    buffer = bytearray()  # one buffer for frames of any size, as NdjsonSink uses it
    for part in (frame, frame.rows(0, 5), frame.rows(5, frame.n)):
        size = ndjson_rows(part).block_into(buffer)
        assert bytes(buffer[:size]) == encode_ndjson_block(part)
    rows, pieces = ndjson_rows(frame), []
    for start in range(0, frame.n, 1000):  # a range of rows at a time, as NdjsonSink writes them
        size = rows.block_into(buffer, start, min(start + 1000, frame.n))
        pieces.append(bytes(buffer[:size]))
    assert b"".join(pieces) == encode_ndjson_block(frame)


def per_row_bulk(frame: FlowFrame, index: str) -> bytes:
    """The ``_bulk`` body built a row at a time: orjson action line + the encode_ndjson line."""
    return b"".join(
        orjson.dumps({"create": {"_index": index, "_id": eid}}) + b"\n" + doc + b"\n"
        for eid, doc in zip(frame.cols["event_id"].tolist(), encode_ndjson(frame), strict=True)
    )


@pytest.mark.parametrize("capture", ["netflow_v5.pcap", "netflow_v9.pcap", "ipfix.pcap"])
def test_bulk_block_is_the_per_row_actions_and_lines(capture: str) -> None:
    decoder, normalizer = Decoder(), Normalizer()
    batches = [b for dg in iter_replay([str(DATA / "lab" / capture)]) for b in decoder.decode(dg).flows]
    index = "logs-tunnelhound.flow-default"
    for frame in (normalizer.frames(batches), stitched(normalizer.frames(batches))):
        assert frame.n
        block = encode_bulk_block(frame, index)
        assert block == per_row_bulk(frame, index)
        lines = block.split(b"\n")
        assert len(lines) == 2 * frame.n + 1 and lines[-1] == b""
        # a slice of a frame encodes to the same rows
        part = frame.take(np.arange(5, 17))
        assert encode_bulk_block(part, index) == b"".join(line + b"\n" for line in lines[10:34])
    assert encode_bulk_block(FlowFrame.empty(), index) == b""


def lab_frame() -> FlowFrame:
    decoder, normalizer = Decoder(), Normalizer()
    capture = str(DATA / "lab" / "ipfix.pcap")
    return normalizer.frames([b for dg in iter_replay([capture]) for b in decoder.decode(dg).flows])


def test_features_render_nested_under_tunnelhound_and_absent_values_are_left_out() -> None:
    frame = lab_frame().rows(0, 4)
    frame.features["bpp.source"] = np.array([84.0, np.nan, 1.5, np.inf])
    frame.features["dns.anomaly"] = np.array([True, False, True, False])
    frame.features["dns.count"] = np.array([3, -1, 0, 7])
    frame.features["host"] = np.array(["10.0.0.1", None, 'q"uote', None], dtype=object)
    assert_encoded_equals_documents(frame)
    docs = frame.documents()
    th = [d["tunnelhound"] for d in docs]
    assert th[0]["bpp"] == {"source": 84.0} and th[0]["dns"] == {"anomaly": True, "count": 3}
    assert "bpp" not in th[1] and th[1]["dns"] == {"anomaly": False} and "host" not in th[1]
    assert th[2]["host"] == 'q"uote' and th[2]["dns"]["count"] == 0
    assert "bpp" not in th[3]  # inf is not JSON: treated as absent
    assert all(d["tunnelhound"]["biflow"] == "uniflow" for d in docs)


def test_features_survive_take_rows_and_concat() -> None:
    frame = lab_frame().rows(0, 3)
    frame.features["score"] = np.array([0.1, 0.2, 0.3])
    plain = lab_frame().rows(3, 5)
    both = FlowFrame.concat([frame, plain])
    assert both.n == 5
    assert both.features["score"][:3].tolist() == [0.1, 0.2, 0.3]
    assert np.isnan(both.features["score"][3:]).all()
    assert both.take(np.array([2, 4])).features["score"][0] == 0.3
    assert_encoded_equals_documents(both)


def test_observer_type_extra_members_and_missing_netflow_object() -> None:
    frame = lab_frame().rows(0, 2)
    frame.cols["observer_type"] = np.array(["zeek", None], dtype=object)
    frame.cols["extra"] = np.array(['"zeek":{"session_id":"C1x"}', None], dtype=object)
    frame.cols["netflow"] = np.array([None, frame.cols["netflow"][1]], dtype=object)
    assert_encoded_equals_documents(frame)
    first, second = frame.documents()
    assert first["observer"]["type"] == "zeek" and first["zeek"] == {"session_id": "C1x"}
    assert "netflow" not in first and "type" not in second["observer"]
    assert second["netflow"]["exporter"]["version"] == 10


def reference_members(features: dict[str, np.ndarray], n: int) -> list[str]:
    """Per row, the ``tunnelhound.*`` feature members as JSON text, built per row in Python
    (the renderer before the columnar one): nested objects only where a member is present."""
    tree: dict[str, Any] = {}
    for name, col in features.items():
        node = tree
        *parents, leaf = name.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = col

    def text(col: np.ndarray, i: int) -> str | None:
        v = col[i].item() if col.dtype.kind != "O" else col[i]
        if col.dtype.kind == "f" and not np.isfinite(v):
            return None
        if col.dtype.kind in "iu" and v == -1:
            return None
        return None if v is None else orjson.dumps(v).decode()

    def members(node: dict[str, Any], i: int) -> str:
        out = []
        for key, child in node.items():
            if isinstance(child, dict):
                inner = members(child, i)
                value = f"{{{inner}}}" if inner else None
            else:
                value = text(child, i)
            if value is not None:
                out.append(f'"{key}":{value}')
        return ",".join(out)

    return [members(tree, i) for i in range(n)]


def test_feature_members_are_the_per_row_reference_byte_for_byte() -> None:
    rng = np.random.default_rng(11)
    frame = lab_frame().rows(0, 300)
    plain = encode_ndjson(frame)
    n = frame.n
    floats = rng.normal(size=n) * 10.0 ** rng.integers(-12, 20, size=n)
    floats[rng.random(n) < 0.3] = np.nan
    floats[rng.random(n) < 0.05] = np.inf
    mixed = np.empty(n, dtype=object)
    mixed[:] = [None if r < 0.4 else ('h"é\n\x01' if r < 0.7 else 3) for r in rng.random(n)]
    texts = np.empty(n, dtype=object)
    texts[:] = [None if r < 0.5 else f"s{r:.3f}" for r in rng.random(n)]
    frame.features.update(
        {
            "bpp.source": floats,
            "bpp.dest": rng.random(n).astype(np.float32),
            "dns.count": rng.integers(-1, 5, size=n),
            "dns.anomaly": rng.random(n) < 0.5,
            "dns.deep.x": np.where(rng.random(n) < 0.2, 7, -1),
            "host": mixed,
            "scan.target": texts,
            "never": np.full(n, np.nan),
        }
    )
    want = [
        line[:-2] + (f",{m}".encode() if m else b"") + b"}}"
        for line, m in zip(plain, reference_members(frame.features, n), strict=True)
    ]
    assert encode_ndjson(frame) == want
    assert any(b'"deep":{"x":7}' in line for line in want) and not any(b'"deep":{}' in line for line in want)
    assert not any(b'"never"' in line or b"{," in line or b",," in line for line in want)
    assert_encoded_equals_documents(frame)
