"""What a worker sends the analysis process: the analysis columns and features, intact."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import flowframes
import tunnelhound
from tunnelhound.config import Config
from tunnelhound.detection import DetectionStage
from tunnelhound.normalize.frame import COLUMNS, FlowFrame
from tunnelhound.pipeline import FlowPipeline
from tunnelhound.service import wire
from tunnelhound.sources.files import iter_replay

DEMO = Path(tunnelhound.__file__).parent / "data" / "demo" / "lab_netflow_v9.pcap"


class FrameSink:
    """Keeps the frames a pipeline writes, features on (as a worker forwards them)."""

    def __init__(self) -> None:
        self.frames: list[FlowFrame] = []

    def write_frame(self, frame: FlowFrame) -> None:
        self.frames.append(frame)

    def close(self) -> None:
        pass


def _worker_frames(state: Path) -> list[FlowFrame]:
    sink = FrameSink()
    pipeline = FlowPipeline(Config(state_dir=str(state)), sink)
    pipeline.feed(iter_replay([str(DEMO)]))
    pipeline.close()
    assert sum(f.n for f in sink.frames) > 1000
    return sink.frames


@pytest.fixture(scope="module")
def lab_frames(tmp_path_factory: pytest.TempPathFactory) -> list[FlowFrame]:
    """The bundled lab capture, decoded, stitched and with features, as the worker has it."""
    return _worker_frames(tmp_path_factory.mktemp("state"))


def test_columns_held_as_recipes_travel_as_recipes_and_read_the_same(tmp_path: Path) -> None:
    frames = _worker_frames(tmp_path)  # fresh: nothing has read their text columns yet
    for frame in frames:
        recipes = [name for name in wire.ANALYSIS_COLUMNS if frame.columns.recipe(name) is not None]
        assert {"event_id", "community_id", "flow_id"} <= set(recipes)
        back = wire.decode(wire.encode(frame))
        assert [name for name in wire.ANALYSIS_COLUMNS if back.columns.recipe(name) is not None] == recipes
        for name in recipes:
            assert back.cols[name].tolist() == frame.cols[name].tolist(), name


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    if a.dtype.kind == "O":
        left, right = a.tolist(), b.tolist()
        return all(x == y or (_nan(x) and _nan(y)) for x, y in zip(left, right, strict=True))
    return bool(np.array_equal(a, b))


def _nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def test_round_trip_keeps_every_analysis_column_and_feature(lab_frames: list[FlowFrame]) -> None:
    for frame in lab_frames:
        back = wire.decode(wire.encode(frame))
        assert (back.n, back.namespace) == (frame.n, frame.namespace)
        assert list(back.cols) == list(wire.ANALYSIS_COLUMNS)
        for name in wire.ANALYSIS_COLUMNS:
            assert _same(back.cols[name], frame.cols[name]), name
        assert list(back.features) == list(frame.features)
        assert frame.features  # the worker computed features before sending
        for name, values in frame.features.items():
            assert _same(back.features[name], values), name


def test_render_only_columns_stay_behind_and_the_rest_is_every_other_column() -> None:
    assert set(wire.ANALYSIS_COLUMNS) | wire.RENDER_ONLY_COLUMNS == set(COLUMNS)
    assert not set(wire.ANALYSIS_COLUMNS) & wire.RENDER_ONLY_COLUMNS
    assert {"start_iso", "netflow", "created"} <= wire.RENDER_ONLY_COLUMNS
    assert {"src_ip", "dst_port", "end_ns", "event_id", "community_id"} <= set(wire.ANALYSIS_COLUMNS)


def _read(frame: FlowFrame) -> FlowFrame:
    """A copy of ``frame`` with every column an array (as a frame without recipes pickles)."""
    copy = frame.take(np.arange(frame.n))
    return FlowFrame(copy.n, {name: copy.cols[name] for name in copy.cols}, copy.namespace, copy.features)


def test_a_sent_flow_costs_well_under_half_of_the_whole_frame(lab_frames: list[FlowFrame]) -> None:
    rows = sum(f.n for f in lab_frames)
    sent = sum(len(wire.encode(f)) for f in lab_frames) / rows
    whole = sum(len(pickle.dumps(_read(f), protocol=pickle.HIGHEST_PROTOCOL)) for f in lab_frames) / rows
    assert sent < 0.5 * whole, (sent, whole)


def _alerts(frames: list[FlowFrame], state: Path) -> list[dict[str, Any]]:
    stage = DetectionStage(Config(state_dir=str(state)), state_dir=state, finish_on_close=True)
    alerts = [a for frame in frames for a in stage.process(frame)] + stage.finish()
    for alert in alerts:  # stamped when raised
        del alert["@timestamp"], alert["event"]["ingested"]
    return alerts


def test_rules_raise_the_same_alerts_on_sent_frames_as_on_whole_ones(
    lab_frames: list[FlowFrame], tmp_path: Path
) -> None:
    whole = _alerts(lab_frames, tmp_path / "whole")
    sent = _alerts([wire.decode(wire.encode(f)) for f in lab_frames], tmp_path / "sent")
    assert len(whole) >= 5
    assert sent == whole


def test_text_columns_with_none_odd_values_and_empty_frames_round_trip() -> None:
    rows = [
        flowframes.flow(application="ssh", src_mac="00:11:22:33:44:55", observer="192.0.2.1"),
        flowframes.flow(application=None, src_mac="", observer="192.0.2.1"),  # "" is a value, not None
        flowframes.flow(
            application="a\x00b", observer="192.0.2.2"
        ),  # holds the separator: pickled as objects
        flowframes.flow(application=None, observer="192.0.2.2"),
    ]
    sent = flowframes.frame(*rows)
    sent.features["exfil.host"] = np.array([None, "10.0.0.5", None, "10.0.0.6"], dtype=object)
    sent.features["odd"] = np.array([1, "x", None, 2.5], dtype=object)  # not all text
    back = wire.decode(wire.encode(sent))
    assert back.cols["application"].tolist() == ["ssh", None, "a\x00b", None]
    assert back.cols["src_mac"].tolist() == ["00:11:22:33:44:55", "", None, None]
    assert back.cols["dst_mac"].tolist() == [None] * 4
    assert back.cols["observer"].tolist() == ["192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.2"]
    assert back.features["exfil.host"].tolist() == [None, "10.0.0.5", None, "10.0.0.6"]
    assert back.features["odd"].tolist() == [1, "x", None, 2.5]
    assert all(back.cols[name].dtype == object for name in ("application", "src_mac", "observer"))
    empty = wire.decode(wire.encode(FlowFrame.empty("ns")))
    assert (empty.n, empty.namespace, len(empty.cols["src_ip"])) == (0, "ns", 0)


def test_a_message_head_rides_in_the_same_pickle(lab_frames: list[FlowFrame]) -> None:
    frame = lab_frames[0]
    message = pickle.loads(wire.encode(frame, "frame", 3))
    assert message[:2] == ("frame", 3)
    back = wire.frame_of(message)
    assert back.n == frame.n and back.cols["dst_port"].tolist() == frame.cols["dst_port"].tolist()
    assert len(wire.encode(frame, "frame", 3)) < len(wire.encode(frame)) + 40
