"""The disk spool: durable batches, found again after a crash, deleted only on ack, bounded."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from tunnelhound.sinks.spool import Spool, SpoolFullError

HEADER = 24


def test_append_then_reopen_finds_pending_batches_oldest_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    first = spool.append(b"a\nb\n", items=1)
    second = spool.append(b"c\nd\ne\nf\n", items=2)
    assert (first, second) == (1, 2)
    assert spool.batches == 2
    assert spool.bytes == 2 * HEADER + 4 + 8

    # A new Spool on the same directory is what a restart after kill -9 sees.
    reopened = Spool(tmp_path, max_bytes=10_000)
    assert [(b.batch_id, b.items, b.size) for b in reopened.pending()] == [
        (1, 1, HEADER + 4),
        (2, 2, HEADER + 8),
    ]
    assert reopened.read(1) == b"a\nb\n"
    assert reopened.read(2) == b"c\nd\ne\nf\n"
    # Ids keep increasing after a restart, so age order survives it.
    assert reopened.append(b"g\nh\n", items=1) == 3


def test_ack_deletes_only_that_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    one = spool.append(b"1\n", items=1)
    two = spool.append(b"2\n", items=1)
    spool.ack(one)
    assert [b.batch_id for b in spool.pending()] == [two]
    assert sorted(os.listdir(tmp_path)) == [f"{two:020d}.batch"]
    assert spool.read(one) is None
    spool.ack(one)  # a second ack (a retried sender) is harmless
    assert spool.bytes == HEADER + 2
    assert [b.batch_id for b in Spool(tmp_path).pending()] == [two]


def test_torn_last_write_is_skipped_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(b"whole\n" * 10, items=5)
    torn_id = spool.append(b"torn\n" * 10, items=5)
    path = tmp_path / f"{torn_id:020d}.batch"
    # Cut the last batch in the middle of its payload, as a torn write leaves it.
    with open(path, "r+b") as fh:
        fh.truncate(HEADER + 7)
    (tmp_path / f"{torn_id + 1:020d}.tmp").write_bytes(b"THSP")  # a crash before the rename

    reopened = Spool(tmp_path)
    assert reopened.torn == 1
    assert [b.batch_id for b in reopened.pending()] == [1]
    assert reopened.read(1) == b"whole\n" * 10
    assert sorted(os.listdir(tmp_path)) == [f"{1:020d}.batch", f"{torn_id:020d}.torn"]
    # Neither the torn file's id nor the crashed write's is reused: the next batch sorts after both.
    assert reopened.append(b"next\n", items=1) == torn_id + 2


def test_corrupted_payload_is_detected_on_read(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    batch_id = spool.append(b"0123456789\n", items=1)
    path = tmp_path / f"{batch_id:020d}.batch"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # same length, wrong CRC
    path.write_bytes(bytes(data))
    assert spool.read(batch_id) is None
    assert (spool.torn, spool.batches, spool.bytes) == (1, 0, 0)


def test_drop_oldest_deletes_and_counts(tmp_path: Path) -> None:
    payload = b"x" * 76  # 100 bytes a batch with the header
    spool = Spool(tmp_path, max_bytes=300, full_policy="drop_oldest")
    ids = [spool.append(payload, items=7) for _ in range(5)]
    assert [b.batch_id for b in spool.pending()] == ids[2:]
    assert (spool.dropped, spool.dropped_items, spool.bytes, spool.batches) == (2, 14, 300, 3)


def test_block_times_out_with_a_clear_error(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=200, full_policy="block", block_timeout=0.2)
    spool.append(b"x" * 76, items=1)
    spool.append(b"x" * 76, items=1)
    start = time.monotonic()
    with pytest.raises(SpoolFullError, match=r"spool .* full: 200 of 200 bytes pending for 0.2 s"):
        spool.append(b"x" * 76, items=1)
    assert 0.15 < time.monotonic() - start < 2.0
    assert (spool.batches, spool.dropped) == (2, 0)


def test_block_resumes_when_an_ack_frees_room(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=200, full_policy="block", block_timeout=5.0)
    first = spool.append(b"x" * 76, items=1)
    spool.append(b"x" * 76, items=1)
    timer = threading.Timer(0.2, spool.ack, args=(first,))
    timer.start()
    try:
        start = time.monotonic()
        third = spool.append(b"y" * 76, items=1)
        waited = time.monotonic() - start
    finally:
        timer.join(5)
    assert third == 3
    assert 0.1 < waited < 4.0
    assert [b.batch_id for b in spool.pending()] == [2, 3]
    assert spool.blocked_seconds > 0.1


def test_an_oversized_batch_fits_an_empty_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=50, full_policy="block", block_timeout=0)
    batch_id = spool.append(b"z" * 100, items=1)
    assert spool.read(batch_id) == b"z" * 100
    with pytest.raises(SpoolFullError):
        spool.append(b"z", items=1)


def test_bad_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="full_policy must be one of block, drop_oldest"):
        Spool(tmp_path, full_policy="drop_newest")
    with pytest.raises(ValueError, match="max_bytes must be >= 1"):
        Spool(tmp_path, max_bytes=0)


def test_drop_oldest_never_drops_a_batch_in_flight(tmp_path: Path) -> None:
    payload = b"x" * 76  # 100 bytes a batch with the header
    spool = Spool(tmp_path, max_bytes=300, full_policy="drop_oldest")
    for _ in range(3):
        spool.append(payload, items=7)
    sending = spool.claim()
    assert sending is not None and sending.batch_id == 1 and spool.in_flight == 1
    # Full: the oldest batch is being sent, so the next oldest goes.
    assert spool.append(payload, items=7) == 4
    assert [b.batch_id for b in spool.pending()] == [1, 3, 4]
    assert (spool.dropped, spool.dropped_items, spool.bytes) == (1, 7, 300)
    assert spool.read(1) == payload  # the sender can still read what it holds

    # Every batch in flight: nothing may be dropped, the new one goes beyond the bound.
    assert [spool.claim().batch_id for _ in range(2)] == [3, 4]  # type: ignore[union-attr]
    assert spool.claim() is None
    assert spool.append(payload, items=7) == 5
    assert (spool.dropped, spool.dropped_items, spool.bytes, spool.batches) == (1, 7, 400, 4)

    # An acked batch frees its room; a released one is claimable and droppable again.
    spool.ack(4)
    spool.release(1)
    assert spool.in_flight == 1  # 3
    assert spool.append(payload, items=7) == 6  # 1, 3, 5 pending: 300 + 100 -> drop 1
    assert [b.batch_id for b in spool.pending()] == [3, 5, 6]
    assert (spool.dropped, spool.dropped_items, spool.bytes) == (2, 14, 300)
    claimed = spool.claim()
    assert claimed is not None and claimed.batch_id == 5  # 3 is still held
    assert sorted(os.listdir(tmp_path)) == [f"{i:020d}.batch" for i in (3, 5, 6)]


def test_drop_oldest_skips_the_batches_sink_senders_hold(tmp_path: Path) -> None:
    """The sink's senders claim through the spool: against a port that refuses connections
    each sender holds one batch for good, and drop_oldest drops the others, counted."""
    from tunnelhound.sinks.elasticsearch import ElasticsearchSink

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = sock.getsockname()[1]
        pair = b'{"create":{"_index":"logs-tunnelhound.flow-x","_id":"%03d"}}\n{"a":1}\n'
        size = HEADER + len(pair % 0) * 10
        sink = ElasticsearchSink(
            f"http://127.0.0.1:{port}",
            spool_dir=tmp_path,
            spool_max_bytes=4 * size,
            full_policy="drop_oldest",
            batch_docs=10,
            senders=2,
            probe_timeout=1.0,
            backoff_initial=5.0,
            backoff_max=5.0,
        )
        try:
            sink.write_pairs([pair % i for i in range(20)])  # batches 1 and 2
            deadline = time.monotonic() + 10
            while sink.spool.in_flight < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert sink.spool.in_flight == 2
            sink.write_pairs([pair % i for i in range(20, 80)])  # batches 3 to 8
            m = sink.metrics()
            assert [b.batch_id for b in sink.spool.pending()] == [1, 2, 7, 8]
            assert (m["spool_dropped"], m["spool_dropped_docs"], m["spool_batches"]) == (4, 40, 4)
            assert (m["docs_written"], m["docs_acked"]) == (80, 0)
        finally:
            sink.close(timeout=0)


def test_cache_hands_senders_the_appended_payload_only_once_it_is_durable(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000, cache_bytes=250)
    seen_on_disk: list[bool] = []
    write_file = spool._write_file

    def checking_write(batch_id: int, header: bytes, payload: bytes) -> None:
        write_file(batch_id, header, payload)
        # The file is whole (renamed, directory synced) before a sender can claim the batch
        # and before its payload is in the cache.
        seen_on_disk.append(spool.claim() is None and batch_id not in spool._cache)

    spool._write_file = checking_write  # type: ignore[method-assign]
    payload = b"p" * 100
    first = spool.append(payload, items=1)
    assert seen_on_disk == [True]
    spool._write_file = write_file  # type: ignore[method-assign]
    assert spool.read(first) is payload  # from memory: no read back, no second CRC
    assert (tmp_path / f"{first:020d}.batch").read_bytes()[HEADER:] == payload
    second = spool.append(b"q" * 100, items=1)
    third = spool.append(b"r" * 100, items=1)  # over cache_bytes: not cached, read from disk
    assert spool.read(second) == b"q" * 100 and spool.read(third) == b"r" * 100
    assert set(spool._cache) == {first, second} and spool._cached == 200
    spool.ack(first)
    assert set(spool._cache) == {second} and spool._cached == 100
    # A fresh spool (a restart) reads everything from disk, CRC checked.
    reopened = Spool(tmp_path, max_bytes=10_000, cache_bytes=250)
    assert reopened.read(second) == b"q" * 100 and not reopened._cache


def test_cache_entries_leave_with_dropped_batches(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=2 * (HEADER + 76), full_policy="drop_oldest", cache_bytes=10_000)
    first = spool.append(b"x" * 76, items=1)
    spool.append(b"x" * 76, items=1)
    spool.append(b"y" * 76, items=1)
    assert spool.dropped == 1 and first not in spool._cache and spool._cached == 2 * 76
    assert spool.read(first) is None


def test_a_multi_megabyte_batch_is_written_whole(tmp_path: Path) -> None:
    payload = os.urandom(9 * 1024 * 1024 + 7)
    spool = Spool(tmp_path, max_bytes=64 * 1024 * 1024)
    batch_id = spool.append(payload, items=3)
    assert (tmp_path / f"{batch_id:020d}.batch").stat().st_size == HEADER + len(payload)
    assert Spool(tmp_path).read(batch_id) == payload
