"""Tests for tunnelhound.sinks.ndjson: naming, rotation, pruning, stdout and line integrity."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import orjson
import pytest

import tunnelhound.sinks.ndjson as ndjson_module
from tunnelhound.normalize.frame import FlowFrame, encode_ndjson_block
from tunnelhound.normalize.records import FlowRecord, frame_from_records
from tunnelhound.sinks.ndjson import NdjsonSink

T0 = 1704067200.0  # 2024-01-01T00:00:00Z


class FakeClock:
    """A settable clock, so time rotation needs no sleeping."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def lines_of(directory: Path) -> list[bytes]:
    """All lines of the finished files, in file-name order."""
    out: list[bytes] = []
    for name in names(directory):
        if name.endswith(".ndjson"):
            out += (directory / name).read_bytes().splitlines()
    return out


def test_part_naming_and_rename_on_close(tmp_path: Path) -> None:
    sink = NdjsonSink(str(tmp_path / "out"), clock=FakeClock())
    # The directory is made up front, the file only for the first batch.
    assert names(tmp_path / "out") == []
    assert sink.current_path is None
    sink.write([b'{"a":1}', b'{"a":2}'])
    part = tmp_path / "out" / "flows-20240101T000000-000000.ndjson.part"
    assert sink.current_path == part
    assert names(tmp_path / "out") == ["flows-20240101T000000-000000.ndjson.part"]
    assert part.read_bytes() == b'{"a":1}\n{"a":2}\n'
    sink.close()
    assert sink.current_path is None
    assert names(tmp_path / "out") == ["flows-20240101T000000-000000.ndjson"]
    assert (tmp_path / "out" / "flows-20240101T000000-000000.ndjson").read_bytes() == b'{"a":1}\n{"a":2}\n'
    assert (sink.lines_written, sink.bytes_written, sink.files_rotated) == (2, 16, 0)


def test_prefix_and_utc_stamp(tmp_path: Path) -> None:
    with NdjsonSink(str(tmp_path), prefix="alerts", clock=FakeClock(T0 + 86399.9)) as sink:
        sink.write([b"{}"])
    assert names(tmp_path) == ["alerts-20240101T235959-000000.ndjson"]


def test_rotation_by_bytes(tmp_path: Path) -> None:
    line = b'{"n":"' + b"x" * 13 + b'"}'  # 21 bytes, 22 with its newline
    with NdjsonSink(str(tmp_path), rotate_bytes=50, clock=FakeClock()) as sink:
        sink.write([line])  # 22
        sink.write([line])  # 44: still under 50
        assert sink.files_rotated == 0
        sink.write([line, line])  # 88 >= 50: written whole, then the file is finished
        assert sink.files_rotated == 1
        assert sink.current_path is None
        sink.write([line])
        assert sink.current_path is not None
    assert names(tmp_path) == ["flows-20240101T000000-000000.ndjson", "flows-20240101T000000-000001.ndjson"]
    assert (tmp_path / "flows-20240101T000000-000000.ndjson").read_bytes() == (line + b"\n") * 4
    assert (tmp_path / "flows-20240101T000000-000001.ndjson").read_bytes() == line + b"\n"
    assert (sink.lines_written, sink.bytes_written, sink.files_rotated) == (5, 110, 1)


def test_rotation_by_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    with NdjsonSink(str(tmp_path), rotate_seconds=60, clock=clock) as sink:
        sink.write([b'{"t":0}'])
        clock.now += 59.5
        sink.write([b'{"t":59}'])
        assert sink.files_rotated == 0
        clock.now += 0.5
        # Due now: the next batch goes to a new file stamped with the current time.
        sink.write([b'{"t":60}'])
        assert sink.files_rotated == 1
        assert sink.current_path == tmp_path / "flows-20240101T000100-000001.ndjson.part"
    assert names(tmp_path) == ["flows-20240101T000000-000000.ndjson", "flows-20240101T000100-000001.ndjson"]
    assert (tmp_path / "flows-20240101T000000-000000.ndjson").read_bytes() == b'{"t":0}\n{"t":59}\n'
    assert (tmp_path / "flows-20240101T000100-000001.ndjson").read_bytes() == b'{"t":60}\n'


def test_flush_finishes_an_idle_file_when_its_time_is_up(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = NdjsonSink(str(tmp_path), rotate_seconds=10, clock=clock)
    sink.write([b"{}"])
    sink.flush()
    assert names(tmp_path) == ["flows-20240101T000000-000000.ndjson.part"]
    clock.now += 10
    sink.flush()
    assert names(tmp_path) == ["flows-20240101T000000-000000.ndjson"]
    assert sink.files_rotated == 1
    # Nothing open, so closing has nothing to rename and makes no empty file.
    sink.close()
    assert names(tmp_path) == ["flows-20240101T000000-000000.ndjson"]


def test_max_files_prunes_oldest_finished(tmp_path: Path) -> None:
    # Left by an earlier run (older stamp) and unrelated files that must survive.
    (tmp_path / "flows-20231231T000000-000000.ndjson").write_bytes(b"{}\n")
    (tmp_path / "flows-20231231T000000-000001.ndjson.part").write_bytes(b"{}\n")
    (tmp_path / "alerts-20231231T000000-000000.ndjson").write_bytes(b"{}\n")
    (tmp_path / "notes.txt").write_bytes(b"keep")
    clock = FakeClock()
    with NdjsonSink(str(tmp_path), rotate_bytes=1, max_files=2, clock=clock) as sink:
        for i in range(5):
            clock.now += 1
            sink.write([b'{"i":%d}' % i])
        assert sink.files_rotated == 5
    assert names(tmp_path) == [
        "alerts-20231231T000000-000000.ndjson",
        "flows-20231231T000000-000001.ndjson.part",
        "flows-20240101T000004-000003.ndjson",
        "flows-20240101T000005-000004.ndjson",
        "notes.txt",
    ]
    assert (tmp_path / "flows-20240101T000004-000003.ndjson").read_bytes() == b'{"i":3}\n'
    assert (tmp_path / "flows-20240101T000005-000004.ndjson").read_bytes() == b'{"i":4}\n'


def test_max_files_zero_keeps_all(tmp_path: Path) -> None:
    with NdjsonSink(str(tmp_path), rotate_bytes=1, clock=FakeClock()) as sink:
        for _ in range(4):
            sink.write([b"{}"])
    assert len(names(tmp_path)) == 4


def test_existing_names_are_skipped(tmp_path: Path) -> None:
    # A restart within the same second finds the previous run's files.
    (tmp_path / "flows-20240101T000000-000000.ndjson").write_bytes(b"old\n")
    (tmp_path / "flows-20240101T000000-000001.ndjson.part").write_bytes(b"old\n")
    with NdjsonSink(str(tmp_path), clock=FakeClock()) as sink:
        sink.write([b"{}"])
        assert sink.current_path == tmp_path / "flows-20240101T000000-000002.ndjson.part"
    assert (tmp_path / "flows-20240101T000000-000000.ndjson").read_bytes() == b"old\n"
    assert (tmp_path / "flows-20240101T000000-000002.ndjson").read_bytes() == b"{}\n"


def test_line_integrity_across_rotations(tmp_path: Path) -> None:
    docs = [{"i": i, "pad": "é" * (i % 7), "nested": {"s": "a\nb"}} for i in range(500)]
    with NdjsonSink(str(tmp_path), rotate_bytes=1024, clock=FakeClock()) as sink:
        for start in range(0, len(docs), 13):
            sink.write_docs(docs[start : start + 13])
    assert sink.files_rotated > 5
    for name in names(tmp_path):
        data = (tmp_path / name).read_bytes()
        assert data.endswith(b"\n")
        # Rotation is between batches: each file holds whole batches of 13 (the last may be short).
        assert data.count(b"\n") % 13 == 0 or name == names(tmp_path)[-1]
    assert [orjson.loads(line) for line in lines_of(tmp_path)] == docs
    assert sink.lines_written == 500
    assert sink.bytes_written == sum((tmp_path / n).stat().st_size for n in names(tmp_path))


def test_newline_inside_a_line_is_rejected(tmp_path: Path) -> None:
    with NdjsonSink(str(tmp_path), clock=FakeClock()) as sink:
        with pytest.raises(ValueError, match="a line contains a newline"):
            sink.write([b"{}", b'{\n"a": 1}'])
        assert sink.current_path is None
        assert (sink.lines_written, sink.bytes_written) == (0, 0)
    assert names(tmp_path) == []


def test_partial_batch_is_cut_on_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = NdjsonSink(str(tmp_path), clock=FakeClock())
    sink.write([b'{"ok":1}'])

    def disk_full(fd: int, data: bytes) -> None:
        os.write(fd, data[:5])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ndjson_module, "_write_all", disk_full)
    with pytest.raises(OSError, match="No space left"):
        sink.write([b'{"lost":2}'])
    monkeypatch.undo()
    sink.write([b'{"ok":3}'])
    sink.close()
    assert lines_of(tmp_path) == [b'{"ok":1}', b'{"ok":3}']
    assert (sink.lines_written, sink.bytes_written) == (2, 18)


def flows(n: int, extra: dict[int, str] | None = None) -> FlowFrame:
    """``n`` flows (a frame the sink writes in several pieces when ``n`` > 512)."""
    records = [
        FlowRecord(
            start_ns=i * 1_000_000,
            end_ns=i * 1_000_000 + 5,
            src_ip=f"10.0.{i // 256 % 256}.{i % 256}",
            dst_ip="192.0.2.1",
            src_port=40000 + i % 1000,
            dst_port=443,
            proto=6,
            src_bytes=i,
            src_packets=1,
            observer_ip="192.0.2.9",
            identity=f"test|{i}",
            extra=(extra or {}).get(i),
        )
        for i in range(n)
    ]
    return frame_from_records(records)


def test_frame_is_written_in_pieces_whole_or_not_at_all(tmp_path: Path) -> None:
    big, small = flows(1300), flows(3)
    with NdjsonSink(str(tmp_path), clock=FakeClock()) as sink:
        sink.write_frame(small)
        # A newline in row 1100 (the third 512-row piece): the pieces before it were written,
        # and are cut off again.
        with pytest.raises(ValueError, match="a line contains a newline"):
            sink.write_frame(flows(1300, extra={1100: '"x":"a\nb"'}))
        assert (sink.lines_written, sink.bytes_written) == (3, len(encode_ndjson_block(small)))
        sink.write_frame(big)  # the buffer is free again (no view of it left behind)
        assert sink.lines_written == 1303
    assert b"".join(line + b"\n" for line in lines_of(tmp_path)) == encode_ndjson_block(
        small
    ) + encode_ndjson_block(big)


def test_write_docs_serializes_numpy_and_unicode(tmp_path: Path) -> None:
    with NdjsonSink(str(tmp_path), clock=FakeClock()) as sink:
        sink.write_docs([{"bytes": np.uint64(2**63), "rate": np.float64(0.5), "name": "zürich"}])
    assert lines_of(tmp_path) == ['{"bytes":9223372036854775808,"rate":0.5,"name":"zürich"}'.encode()]


def test_empty_batch_creates_nothing(tmp_path: Path) -> None:
    with NdjsonSink(str(tmp_path), clock=FakeClock()) as sink:
        sink.write([])
        sink.write_docs([])
    assert names(tmp_path) == []
    assert (sink.lines_written, sink.bytes_written) == (0, 0)


def test_closed_sink_refuses_writes(tmp_path: Path) -> None:
    sink = NdjsonSink(str(tmp_path), clock=FakeClock())
    sink.close()
    sink.close()  # idempotent
    sink.flush()  # harmless
    with pytest.raises(ValueError, match="write to a closed NdjsonSink"):
        sink.write([b"{}"])


def test_stdout_mode(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    clock = FakeClock()
    with NdjsonSink("-", rotate_bytes=1, rotate_seconds=1, max_files=1, clock=clock) as sink:
        sink.write([b'{"a":1}'])
        clock.now += 10
        sink.write_docs([{"b": 2}, {"c": "é"}])
        sink.flush()
        assert sink.current_path is None
    captured = capsysbinary.readouterr()
    assert captured.out == '{"a":1}\n{"b":2}\n{"c":"é"}\n'.encode()
    assert captured.err == b""
    # No rotation and no files on stdout.
    assert (sink.lines_written, sink.bytes_written, sink.files_rotated) == (3, 27, 0)
    assert names(tmp_path) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rotate_bytes": 0}, "rotate_bytes must be >= 1, got 0"),
        ({"rotate_seconds": 0}, "rotate_seconds must be > 0, got 0"),
        ({"max_files": -1}, "max_files must be >= 0, got -1"),
        ({"prefix": "a/b"}, "prefix must be a non-empty file name part, got 'a/b'"),
        ({"prefix": ""}, "prefix must be a non-empty file name part, got ''"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        NdjsonSink(str(tmp_path), **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message
