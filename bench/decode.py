"""Decode and decode + normalize throughput on a v9 and an IPFIX stream (DESIGN §11).

Run from the repository root::

    PYTHONPATH=sidecar python bench/decode.py                 # 1 M records a stream, table
    PYTHONPATH=sidecar python bench/decode.py --json          # one JSON object on stdout
    PYTHONPATH=sidecar python bench/decode.py --profile       # + where normalize spends its time

Figures, records per second, best of ``--repeat`` runs after a warm-up, one process, one core:

* ``decode_fast``: :class:`Decoder` with the numpy fast path, datagram by datagram;
* ``decode_reference``: the plain-Python reference path, on the first ``--reference-records``;
* ``decode_normalize``: decode + :class:`Normalizer` (ECS documents, not serialized);
* ``decode_normalize_ndjson``: decode + normalize + ``orjson.dumps`` of each document +
  :class:`NdjsonSink` writing the lines (the target of DESIGN §11: ≥ 500 k records/s);
* ``netflow_pkg``: the PyPI ``netflow`` package's ``parse_packet`` on the same datagrams,
  templates carried between calls as its collector does.

The sink writes real files: by default into a fresh directory on ``/dev/shm`` (tmpfs, so the
figure is the sidecar's CPU cost, not the disk's), rotating at 256 MiB and keeping one
finished file so a 1 M-record run needs no gigabytes; ``--sink-dir`` picks another place.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson

from machine import dist_version
from machine import machine as common_machine
from streams import Stream, build_ipfix, build_v9, describe
from tunnelhound.decode.decoder import Decoder
from tunnelhound.gc_tuning import tune_gc
from tunnelhound.model import Datagram, FlowBatch
from tunnelhound.normalize import ecs
from tunnelhound.normalize.addresses import FlowTuples, packed4
from tunnelhound.normalize.community_id import community_ids
from tunnelhound.normalize.ecs import Normalizer
from tunnelhound.normalize.flow_id import flow_ids
from tunnelhound.normalize.frame import ndjson_rows
from tunnelhound.normalize.group import merge_batches
from tunnelhound.normalize.keys import hashable_tuples
from tunnelhound.normalize.rows import Rows
from tunnelhound.normalize.times import flow_times
from tunnelhound.sinks.ndjson import _PIECE_ROWS, NdjsonSink

TARGET_RPS = 500_000
"""DESIGN §11: decode + normalize to ECS NDJSON, standard template, one core."""
ROTATE_BYTES = 256 * 1024 * 1024
FIGURES = (
    "decode_fast_rps",
    "decode_reference_rps",
    "decode_normalize_rps",
    "decode_normalize_ndjson_rps",
    "netflow_pkg_rps",
)
"""Every rate the JSON output carries per stream (``netflow_pkg_rps`` is null without the package)."""

T = TypeVar("T")


# --------------------------------------------------------------------------- measuring


@dataclass(slots=True)
class DecodeResult:
    """What one decode pass produced, to check it against what the stream builder put in."""

    records: int
    columns: int
    """Columns over all batches (what was looked up, see :func:`decode_all`)."""
    octets: int
    errors: int
    sequence_lost: int
    template_misses: int


def datagrams_of(stream: Stream) -> list[Datagram]:
    """The stream as a source would hand it over: arrival time = header export time."""
    at = 8 if stream.version == 9 else 4  # v9: unix_secs after version, count, uptime
    return [
        Datagram(data, stream.exporter_ip, stream.exporter_port, float(int.from_bytes(data[at : at + 4])))
        for data in stream.datagrams
    ]


def decode_all(datagrams: Sequence[Datagram], *, fast_path: bool, check: bool = False) -> DecodeResult:
    """Decode every datagram with a fresh decoder; count records (and, with ``check``, sum bytes).

    Each batch's ``columns`` are looked up, so a decoder that finishes columns lazily is
    still timed finishing them: decoding means records as typed columns, ready to normalize.
    """
    decoder = Decoder(fast_path=fast_path)
    decode = decoder.decode
    records = octets = columns = 0
    for dg in datagrams:
        for batch in decode(dg).flows:
            records += batch.count
            columns += len(batch.columns)
            if check:
                octets += int(batch.columns["octet_delta_count"].sum())
    stats = decoder.stats
    return DecodeResult(
        records,
        columns,
        octets,
        stats.error_count(),
        sum(stats.sequence_lost.values()),
        sum(stats.template_misses.values()),
    )


def chunks(datagrams: Sequence[Datagram], size: int) -> list[Sequence[Datagram]]:
    """Datagrams in the groups the pipeline normalizes together (``tunnelhound replay``: 256)."""
    size = max(1, size)
    return [datagrams[i : i + size] for i in range(0, len(datagrams), size)]


NORMALIZE_PATH = "Normalizer.frames + ndjson_rows in pieces"
"""What the pipeline does with a chunk's batches: columnar flows, then one NDJSON block."""


def decode_normalize(groups: Sequence[Sequence[Datagram]]) -> int:
    """Decode and normalize a chunk at a time, as the pipeline does; the result is dropped."""
    decode, frames = Decoder().decode, Normalizer().frames
    records = 0
    for group in groups:
        records += frames([batch for dg in group for batch in decode(dg).flows]).n
    return records


def decode_normalize_ndjson(groups: Sequence[Sequence[Datagram]], sink_root: Path) -> tuple[int, int]:
    """Decode, normalize, encode as JSON lines and write them to files, a chunk at a time."""
    decode, frames = Decoder().decode, Normalizer().frames
    directory = Path(tempfile.mkdtemp(prefix="run-", dir=sink_root))
    try:
        with NdjsonSink(str(directory), rotate_bytes=ROTATE_BYTES, max_files=1, prefix="bench") as sink:
            write_frame = sink.write_frame
            for group in groups:
                write_frame(frames([batch for dg in group for batch in decode(dg).flows]))
        return sink.lines_written, sink.bytes_written
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def netflow_pkg_decode(datagrams: Sequence[Datagram]) -> tuple[int, int]:
    """The PyPI ``netflow`` package: records decoded and datagrams it raised on."""
    import netflow  # optional dependency "bench"

    parse = netflow.parse_packet
    templates: dict[str, dict[int, Any]] = {"netflow": {}, "ipfix": {}}
    records = failed = 0
    for dg in datagrams:
        try:
            records += len(parse(dg.data, templates).flows)
        except Exception:
            failed += 1
    return records, failed


def best_of(repeat: int, run: Callable[[], T], warm_up: Callable[[], object]) -> tuple[float, T]:
    """Warm up once, then time ``run`` ``repeat`` times; the fastest time and its result."""
    warm_up()
    best, result = float("inf"), None
    for _ in range(max(1, repeat)):
        gc.collect()
        start = time.perf_counter()
        out = run()
        elapsed = time.perf_counter() - start
        if elapsed < best:
            best, result = elapsed, out
    assert result is not None
    return best, result


def slice_for(datagrams: list[Datagram], stream: Stream, records: int) -> tuple[list[Datagram], int]:
    """The leading datagrams holding about ``records`` records (whole datagrams), and their count."""
    if records >= stream.records:
        return datagrams, stream.records
    k = max(1, -(-records // stream.records_per_datagram))
    part = datagrams[:k]
    counted = decode_all(part, fast_path=True).records
    return part, counted


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_stream(stream: Stream, args: argparse.Namespace, sink_root: Path | None) -> dict[str, Any]:
    """Every figure for one stream."""
    datagrams = datagrams_of(stream)
    warm, _ = slice_for(datagrams, stream, max(2_000, stream.records // 100))
    out: dict[str, Any] = {
        "records_built": stream.records,
        "datagrams": len(datagrams),
        "wire_bytes": stream.wire_bytes,
        "record_length": stream.record_length,
        "records_per_datagram": stream.records_per_datagram,
        "template_datagrams": stream.template_datagrams,
    }

    seconds, result = best_of(
        args.repeat,
        lambda: decode_all(datagrams, fast_path=True),
        lambda: decode_all(warm, fast_path=True),
    )
    out["decode_fast_rps"] = result.records / seconds
    # Untimed: the same decode again, checking values as well as counts.
    checked = decode_all(datagrams, fast_path=True, check=True)
    out["decoded_records"] = checked.records
    out["decode_ok"] = (
        checked.records == stream.records == result.records
        and checked.octets == stream.octets
        and checked.errors == 0
        and checked.sequence_lost == 0
        and checked.template_misses == 0
    )
    out["decode_errors"] = checked.errors
    out["sequence_lost"] = checked.sequence_lost

    ref_part, ref_records = slice_for(datagrams, stream, args.reference_records)
    seconds, ref = best_of(
        args.repeat,
        lambda: decode_all(ref_part, fast_path=False),
        lambda: decode_all(warm[:20], fast_path=False),
    )
    out["reference_records"] = ref.records
    out["reference_ok"] = ref.records == ref_records
    out["decode_reference_rps"] = ref.records / seconds
    out["fast_vs_reference"] = out["decode_fast_rps"] / out["decode_reference_rps"]

    groups, warm_groups = chunks(datagrams, args.chunk), chunks(warm, args.chunk)
    out["normalize_path"] = NORMALIZE_PATH
    seconds, records = best_of(
        args.repeat, lambda: decode_normalize(groups), lambda: decode_normalize(warm_groups)
    )
    out["decode_normalize_rps"] = records / seconds

    if sink_root is not None:
        seconds, (lines, nbytes) = best_of(
            args.repeat,
            lambda: decode_normalize_ndjson(groups, sink_root),
            lambda: decode_normalize_ndjson(warm_groups, sink_root),
        )
        out["ndjson_lines"] = lines
        out["ndjson_bytes_per_record"] = nbytes / max(1, lines)
        out["decode_normalize_ndjson_rps"] = lines / seconds
    else:
        out["ndjson_lines"] = 0
        out["ndjson_bytes_per_record"] = None
        out["decode_normalize_ndjson_rps"] = None

    if dist_version("netflow") is not None:
        nf_part, nf_expected = slice_for(datagrams, stream, args.netflow_records)
        seconds, (nf_records, nf_failed) = best_of(
            args.repeat, lambda: netflow_pkg_decode(nf_part), lambda: netflow_pkg_decode(warm)
        )
        out["netflow_pkg_records"] = nf_records
        out["netflow_pkg_failed_datagrams"] = nf_failed
        out["netflow_pkg_ok"] = nf_records == nf_expected and nf_failed == 0
        out["netflow_pkg_rps"] = nf_records / seconds
        out["fast_vs_netflow_pkg"] = out["decode_fast_rps"] / out["netflow_pkg_rps"]
    else:
        out["netflow_pkg_records"] = 0
        out["netflow_pkg_failed_datagrams"] = 0
        out["netflow_pkg_ok"] = None
        out["netflow_pkg_rps"] = None
        out["fast_vs_netflow_pkg"] = None
    out["peak_rss_mb"] = peak_rss_mb()
    return out


# --------------------------------------------------------------------------- profile


def cost_breakdown(stream: Stream, records: int, chunk: int) -> dict[str, Any]:
    """Time the pieces of decode + normalize + NDJSON on the first ``records`` of ``stream``.

    First the pipeline's own order, a chunk of datagrams at a time: decode, normalize,
    encoding the JSON lines and the sink write are timed apart. Then each piece of normalize
    is timed alone, calling the functions normalize calls on the same merged batches with
    arguments prepared beforehand; ``normalize.rest`` is the normalize time those pieces do
    not explain (per-record dicts or columns, ``tolist`` calls, per-batch numpy set-up).
    Pieces that no longer match the normalizer's internals are reported as ``None``.
    """
    datagrams, _ = slice_for(datagrams_of(stream), stream, records)
    root = _default_sink_root()
    decode_normalize_ndjson(chunks(datagrams[:50], chunk), root)  # warm-up
    decoder, normalize = Decoder(), Normalizer().frames
    buffer = bytearray()  # as NdjsonSink.write_frame: one buffer for every frame
    groups: list[list[FlowBatch]] = []
    t_decode = t_normalize = t_encode = t_sink = 0.0
    clock = time.perf_counter
    gc.collect()
    with (
        tempfile.TemporaryDirectory(dir=root) as tmp,
        NdjsonSink(tmp, rotate_bytes=ROTATE_BYTES, max_files=1, prefix="bench") as sink,
    ):
        for group in chunks(datagrams, chunk):
            t0 = clock()
            batches = [batch for dg in group for batch in decoder.decode(dg).flows]
            for batch in batches:
                _ = batch.columns  # a lazily finished batch is finished here, as decode
            t1 = clock()
            normalized = normalize(batches)
            t2 = clock()
            rows = ndjson_rows(normalized)
            t_encode += clock() - t2
            for start in range(0, normalized.n, _PIECE_ROWS):  # as NdjsonSink.write_frame
                stop = min(start + _PIECE_ROWS, normalized.n)
                t3 = clock()
                size = rows.block_into(buffer, start, stop)
                t4 = clock()
                with memoryview(buffer) as whole, whole[:size] as block:
                    sink._append([(block, stop - start)], stop - start)
                t_encode += t4 - t3
                t_sink += clock() - t4
            t_decode += t1 - t0
            t_normalize += t2 - t1
            groups.append(batches)
    n = sum(b.count for group in groups for b in group)
    merged = [pair for group in groups for pair in _merged(group)]
    timed = {name: _time_piece(piece, merged) for name, piece in _PIECES.items()}
    explained = sum(timed.values())
    rows: dict[str, float] = {
        "decode_fast": t_decode,
        **{f"normalize.{k}": v for k, v in timed.items()},
        "normalize.rest": max(0.0, t_normalize - explained),
        "encode_ndjson": t_encode,
        "ndjson_sink_write": t_sink,
    }
    total = t_decode + t_normalize + t_encode + t_sink
    return {
        "path": NORMALIZE_PATH,
        "records": n,
        "chunk_datagrams": chunk,
        "normalize_calls": len(merged),
        "total_seconds": total,
        "records_per_s": n / total,
        "normalize_seconds": t_normalize,
        "pieces": {
            name: {
                "us_per_record": 1e6 * sec / n,
                "share": sec / total,
                "mrps_alone": n / sec / 1e6 if sec else None,
            }
            for name, sec in rows.items()
        },
    }


Merged = list[tuple[FlowBatch, Any]]


def _merged(batches: list[FlowBatch]) -> Merged:
    """(batch, per-record headers) pairs as ``Normalizer.frames`` forms them."""
    return list(merge_batches(batches))


def _sides(merged: Merged) -> list[tuple[Any, Any]]:
    """Both sides' addresses of each merged batch, as normalize makes them."""
    normalizer = Normalizer()
    return [(normalizer._addresses(b, "source"), normalizer._addresses(b, "destination")) for b, _ in merged]


def _id_args(merged: Merged) -> list[FlowTuples]:
    out = []
    for (b, _), (src, dst) in zip(merged, _sides(merged), strict=True):
        cols = b.columns
        proto = cols["protocol_identifier"].astype(np.int64)
        sport, dport = Normalizer._ports(cols, proto, b.count)
        ok = hashable_tuples(proto, sport, dport)
        out.append(FlowTuples(proto, sport, dport, ok, src.packed, src.v6, dst.packed, dst.v6))
    return out


def _piece_community_id(merged: Merged) -> Callable[[], None]:
    args = _id_args(merged)

    def run() -> None:
        for tuples in args:
            community_ids(tuples)

    return run


def _piece_flow_id(merged: Merged) -> Callable[[], None]:
    args = _id_args(merged)

    def run() -> None:
        for tuples in args:
            flow_ids(tuples)

    return run


def _piece_event_id(merged: Merged) -> Callable[[], None]:
    event_ids = Normalizer._event_ids
    args = []
    for (b, headers), t, (src, dst) in zip(merged, _id_args(merged), _sides(merged), strict=True):
        end_ns = flow_times(b, headers)[1]
        content = (src.text, dst.text, t.sport, t.dport, t.proto, b.columns["octet_delta_count"], end_ns)
        args.append((b, headers, content))

    def run() -> None:
        for b, headers, content in args:
            event_ids(b, headers, content)

    return run


def _times(merged: Merged) -> list[tuple[np.ndarray, np.ndarray]]:
    return [flow_times(b, headers) for b, headers in merged]


def _piece_iso(merged: Merged) -> Callable[[], None]:
    times = _times(merged)

    def run() -> None:
        # event.start/end stay recipes (columns.py): their text is written by the encoder.
        for start_ns, end_ns in times:
            Rows(len(start_ns)).iso(start_ns)
            Rows(len(end_ns)).iso(end_ns)
            Rows(1).iso(np.array([time.time_ns()], dtype=np.int64)).strings()  # event.created

    return run


def _piece_flow_times(merged: Merged) -> Callable[[], None]:
    def run() -> None:
        for b, headers in merged:
            flow_times(b, headers)

    return run


def _piece_address_text(merged: Merged) -> Callable[[], None]:
    def run() -> None:
        # source/destination.ip: packed (for the flow hashes) and the text's recipe, as normalize
        # makes them (the encoder writes the text).
        for b, _ in merged:
            for side in ("source", "destination"):
                v4 = b.columns[f"{side}_ipv4_address"]
                packed4(v4)
                Rows(b.count).ipv4(v4)

    return run


def _piece_locality(merged: Merged) -> Callable[[], None]:
    networks = Normalizer().networks

    def run() -> None:
        for b, _ in merged:
            networks.contains_v4(b.columns["source_ipv4_address"])
            networks.contains_v4(b.columns["destination_ipv4_address"])

    return run


def _piece_raw_fields(merged: Merged) -> Callable[[], None]:
    # netflow.*: the exporter block and the elements not already in ECS fields.
    fragments = ecs._netflow_fragments

    def run() -> None:
        for b, headers in merged:
            fragments(b, headers)

    return run


_PIECES: dict[str, Callable[[Merged], Callable[[], None]]] = {
    "community_id": _piece_community_id,
    "flow_id": _piece_flow_id,
    "event_id_xxh3": _piece_event_id,
    "iso_time_formatting": _piece_iso,
    "flow_times": _piece_flow_times,
    "address_text": _piece_address_text,
    "locality_direction": _piece_locality,
    "netflow_raw_fields": _piece_raw_fields,
}
"""Pieces of normalize timed alone; each builds its arguments, then returns the timed call."""


def _time_piece(piece: Callable[[Merged], Callable[[], None]], merged: Merged) -> float:
    return _time_once(piece(merged))


def _time_once(fn: Callable[[], None]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cprofile_top(stream: Stream, records: int, chunk: int, limit: int) -> str:
    """cProfile of decode + normalize + orjson + sink on a slice, top functions by own time."""
    datagrams, _ = slice_for(datagrams_of(stream), stream, records)
    root = _default_sink_root()
    decode_normalize_ndjson(chunks(datagrams[:50], chunk), root)
    profiler = cProfile.Profile()
    profiler.enable()
    decode_normalize_ndjson(chunks(datagrams, chunk), root)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.strip_dirs().sort_stats("tottime").print_stats(limit)
    return text.getvalue()


# --------------------------------------------------------------------------- machine and output


def machine() -> dict[str, Any]:
    """Where the figures were taken."""
    return common_machine(netflow=dist_version("netflow"))


def _default_sink_root() -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return Path(tempfile.gettempdir())


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:>12,.0f}"


def print_table(report: dict[str, Any]) -> None:
    """The human form of the report."""
    m = report["machine"]
    print(
        f"machine: {m['cpu_model']}, nproc {m['nproc']} (usable {m['cpus_usable']}), Python {m['python']}, "
        f"numpy {m['numpy']}, orjson {m['orjson']}, netflow {m['netflow'] or 'not installed'}"
    )
    print(f"code:    {m['tunnelhound']} at {m['git_commit'] or 'unknown commit'}")
    for line in report["stream_descriptions"]:
        print(f"stream   {line}")
    print(f"sink:    {report['sink']}")
    print(f"path:    {report['normalize_path']}")
    print(
        f"timing:  best of {report['repeat']} after a warm-up, time.perf_counter, one process; "
        f"normalize on chunks of {report['chunk_datagrams']} datagrams, as the pipeline does"
    )
    print(
        f"load:    1/5/15-min load average {_load(m['loadavg'])} before, {_load(report['loadavg_after'])} after\n"
    )
    streams = report["streams"]
    names = list(streams)
    print(f"{'records/s':<44}" + "".join(f"{n:>21}" for n in names))
    rows = (
        ("decode, numpy fast path", "decode_fast_rps"),
        ("decode, reference path (slice)", "decode_reference_rps"),
        ("decode + normalize", "decode_normalize_rps"),
        ("decode + normalize + NDJSON lines + sink", "decode_normalize_ndjson_rps"),
        (f"PyPI netflow {m['netflow'] or ''} parse_packet", "netflow_pkg_rps"),
    )
    for label, key in rows:
        print(f"{label:<44}" + "".join(f"{_rate(streams[n][key]):>21}" for n in names))
    print()
    extra = (
        ("records decoded / built", lambda s: f"{s['decoded_records']:,}/{s['records_built']:,}"),
        ("decode checks (count, bytes, seq, errors)", lambda s: "ok" if s["decode_ok"] else "FAILED"),
        ("reference-path slice, records", lambda s: f"{s['reference_records']:,}"),
        ("fast path / reference path", lambda s: f"{s['fast_vs_reference']:.1f}x"),
        ("fast path / netflow package", lambda s: _ratio(s["fast_vs_netflow_pkg"])),
        ("NDJSON bytes per record", lambda s: _num(s["ndjson_bytes_per_record"])),
        ("peak RSS so far, MiB", lambda s: f"{s['peak_rss_mb']:.0f}"),
    )
    for label, fn in extra:
        print(f"{label:<44}" + "".join(f"{fn(streams[n]):>21}" for n in names))
    print(
        f"{'peak RSS right after building both streams, MiB':<44}{report['peak_rss_mb_after_build']:>21.0f}"
    )
    verdict = "MET" if report["meets_target"] else "NOT MET"
    print(
        f"\ntarget ≥ {TARGET_RPS:,} records/s decode + normalize + NDJSON on one core: {verdict} "
        + ", ".join(f"({n}: {_rate(streams[n]['decode_normalize_ndjson_rps']).strip()})" for n in names)
    )


def print_profile(profile: dict[str, Any]) -> None:
    """The cost breakdown and cProfile listings."""
    for name, data in profile["breakdown"].items():
        print(
            f"\ncost breakdown, {name}, {data['path']}, {data['records']:,} records, "
            f"{data['chunk_datagrams']} datagrams a chunk "
            f"({data['normalize_calls']:,} merged batches): {data['records_per_s']:,.0f} records/s end to end"
        )
        print(f"  {'piece (normalize.* timed alone)':<40}{'µs/record':>10}{'share':>8}{'M rec/s alone':>15}")
        for piece, row in data["pieces"].items():
            alone = "" if row["mrps_alone"] is None else f"{row['mrps_alone']:.2f}"
            print(f"  {piece:<40}{row['us_per_record']:>10.2f}{row['share']:>8.1%}{alone:>15}")
    for name, text in profile["cprofile"].items():
        print(f"\ncProfile, decode + normalize + NDJSON, {name}:\n{text.rstrip()}")


def _load(values: list[float] | None) -> str:
    return "n/a" if values is None else "/".join(f"{v:.2f}" for v in values)


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}x"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def main(argv: Sequence[str] | None = None) -> int:
    """Build the streams, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=1_000_000, help="records per stream")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per figure (best is kept)")
    parser.add_argument("--reference-records", type=int, default=100_000, help="slice for the reference path")
    parser.add_argument(
        "--netflow-records", type=int, default=None, help="slice for the netflow package (default: all)"
    )
    parser.add_argument("--seed", type=int, default=None, help="stream seed (default: the builders' own)")
    parser.add_argument(
        "--sink-dir", type=Path, default=None, help="where NdjsonSink writes (default /dev/shm)"
    )
    parser.add_argument("--no-sink", action="store_true", help="skip the decode + normalize + NDJSON figure")
    parser.add_argument(
        "--chunk", type=int, default=256, help="datagrams normalized together (tunnelhound replay: 256)"
    )
    parser.add_argument("--profile", action="store_true", help="add a cost breakdown and a cProfile listing")
    parser.add_argument("--profile-records", type=int, default=200_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the JSON object to this file")
    args = parser.parse_args(argv)
    tune_gc()  # as every tunnelhound process runs
    if args.records < 1:
        parser.error("--records must be >= 1")
    if args.netflow_records is None:
        args.netflow_records = args.records

    seeded: dict[str, Any] = {} if args.seed is None else {"seed": args.seed}
    streams = [build_v9(args.records, **seeded), build_ipfix(args.records, **seeded)]
    sink_root: Path | None = None
    if not args.no_sink:
        sink_root = args.sink_dir or _default_sink_root()
        sink_root.mkdir(parents=True, exist_ok=True)
    sink = (
        "none (--no-sink)"
        if sink_root is None
        else f"NdjsonSink files under {sink_root}"
        + (" (tmpfs)" if _is_tmpfs(sink_root) else "")
        + f", rotated at {ROTATE_BYTES >> 20} MiB, 1 finished file kept, removed after each run"
    )
    report: dict[str, Any] = {
        "machine": machine(),
        "records": args.records,
        "repeat": args.repeat,
        "chunk_datagrams": args.chunk,
        "normalize_path": NORMALIZE_PATH,
        "sink": sink,
        "target_rps": TARGET_RPS,
        "stream_descriptions": [describe(s) for s in streams],
        "peak_rss_mb_after_build": peak_rss_mb(),
        "streams": {s.name: bench_stream(s, args, sink_root) for s in streams},
    }
    report["loadavg_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    rates = [v["decode_normalize_ndjson_rps"] for v in report["streams"].values()]
    report["meets_target"] = all(r is not None and r >= TARGET_RPS for r in rates)
    if not args.json:
        print_table(report)  # before the profile, which takes a while
        sys.stdout.flush()
    if args.profile:
        report["profile"] = {
            "breakdown": {s.name: cost_breakdown(s, args.profile_records, args.chunk) for s in streams},
            "cprofile": {s.name: cprofile_top(s, args.profile_records, args.chunk, 30) for s in streams},
        }
        if not args.json:
            print_profile(report["profile"])
    encoded = orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n"
    if args.json_out is not None:
        args.json_out.write_bytes(encoded)
    if args.json:
        sys.stdout.write(encoded.decode())
    return 0


def _is_tmpfs(path: Path) -> bool:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    resolved = str(path.resolve())
    best, fstype = "", ""
    for line in mounts:
        parts = line.split()
        inside = len(parts) >= 3 and (resolved == parts[1] or resolved.startswith(parts[1].rstrip("/") + "/"))
        if inside and len(parts[1]) > len(best):
            best, fstype = parts[1], parts[2]
    return fstype == "tmpfs"


if __name__ == "__main__":
    raise SystemExit(main())
