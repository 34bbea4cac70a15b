"""The ingest worker's work per record, without sockets: what ``bench/soak.py`` loads a worker with.

Run from the repository root::

    PYTHONPATH=sidecar python bench/ingest.py                      # 8 exporters, 400,000 records
    PYTHONPATH=sidecar python bench/ingest.py --exporters 1 --profile

A soak's worker process receives the datagrams of eight exporters (even ones NetFlow v9, odd
ones IPFIX, each with its own source id or domain, paired conversations), and for each round
of up to 1,024 datagrams runs :class:`~tunnelhound.pipeline.FlowPipeline.process`: decode,
normalize, stitch, features, the NDJSON sink, and the frame handed to the analysis process
(``wire.encode`` of the message, as ``service.worker`` does; the pipe write itself is left out).
This bench builds the same streams as the soak (same seeds and spans), interleaves them as
the clock would deliver them, and times those rounds on one core: CPU per record here is the
worker's share of the soak's figure, measured without a sender competing for the CPU.  The
soak's target, 100,000 records/s lossless, needs the worker well under 10 µs a record.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# bench/elasticsearch.py would shadow the client the pipeline's sinks import: this folder
# goes last on the path, so its modules are found only under names no package has.
sys.path.append(sys.path.pop(0))

from decode import datagrams_of
from machine import machine
from streams import Stream, build_ipfix, build_v9
from tunnelhound.config import Config, from_dict
from tunnelhound.gc_tuning import tune_gc
from tunnelhound.model import Datagram
from tunnelhound.normalize.frame import FlowFrame
from tunnelhound.pipeline import FanOut, FlowPipeline, open_sinks
from tunnelhound.service import wire
from tunnelhound.service.worker import BATCH_DATAGRAMS

SOAK_RATE = 100_000
STAGES = ("decode", "normalize", "stitch", "features", "ndjson", "to analysis")


class _WireTap:
    """The worker's hand-over to the analysis: each frame's message encoded (bytes dropped)."""

    def __init__(self) -> None:
        self.bytes = 0

    def write_frame(self, frame: FlowFrame) -> None:
        self.bytes += len(wire.encode(frame, "frame", 0))

    def close(self) -> None:
        pass


def streams(exporters: int, records: int) -> list[Stream]:
    """The soak's exporter streams (``bench/soak.py`` ``_Exporter``) for ``records`` in all."""
    each = records // exporters
    span = max(1, int(50_000 / (SOAK_RATE / exporters)))
    return [
        build_v9(each, seed=1000 + i, span_seconds=span, paired=True, source_id=i + 1)
        if i % 2 == 0
        else build_ipfix(each, seed=1000 + i, span_seconds=span, paired=True, domain=i + 1)
        for i in range(exporters)
    ]


def interleave(built: list[Stream]) -> list[Datagram]:
    """Every exporter's datagrams merged in arrival order (each at its own even pace)."""
    timed = []
    for index, stream in enumerate(built):
        datagrams = datagrams_of(stream)
        exporter_port = 40_000 + index
        total = len(datagrams)
        for k, dg in enumerate(datagrams):
            timed.append((k / total, index, Datagram(dg.data, "127.0.0.1", exporter_port, dg.received)))
    timed.sort(key=lambda t: (t[0], t[1]))
    return [dg for _, _, dg in timed]


@dataclass(slots=True)
class Run:
    """Seconds of one run: wall and CPU in all, wall per stage; documents written."""

    wall: float
    cpu: float
    stages: dict[str, float]
    documents: int


def _timed(owner: object, method: str, stage: str, stages: dict[str, float]) -> None:
    """Wrap ``owner.method`` so its wall time adds to ``stages[stage]``."""
    inner = getattr(owner, method)

    def call(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args)
        finally:
            stages[stage] += time.perf_counter() - start

    setattr(owner, method, call)


def run(datagrams: list[Datagram], out: Path) -> Run:
    """One fresh pipeline through every round, then its flush."""
    config = from_dict(
        Config,
        {"state_dir": str(out / "state"), "output": {"ndjson": {"path": str(out / "flows"), "max_files": 1}}},
    )
    ndjson, tap = open_sinks(config), _WireTap()
    pipeline = FlowPipeline(config, FanOut([ndjson, tap]))
    stages = dict.fromkeys(STAGES, 0.0)
    assert pipeline.stitcher is not None
    for owner, method, stage in (
        (pipeline.decoder, "decode", "decode"),
        (pipeline.normalizer, "frames", "normalize"),
        (pipeline.stitcher, "push", "stitch"),
        (pipeline.features, "apply", "features"),
        (ndjson, "write_frame", "ndjson"),
        (tap, "write_frame", "to analysis"),
    ):
        _timed(owner, method, stage, stages)
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(datagrams), BATCH_DATAGRAMS):
        pipeline.process(datagrams[i : i + BATCH_DATAGRAMS])
    pipeline.flush()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    pipeline.sink.close()
    stages["rest"] = wall - sum(stages.values())
    return Run(wall, cpu, stages, pipeline.counts.documents)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--exporters", type=int, default=8, help="half v9, half IPFIX (default 8, as the soak)")
    p.add_argument("--records", type=int, default=400_000, help="records in all (default 400,000)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs, best kept (default 3)")
    p.add_argument("--profile", action="store_true", help="print a cProfile of one more run")
    args = p.parse_args()
    tune_gc()
    built = streams(args.exporters, args.records)
    datagrams = interleave(built)
    records = sum(s.records for s in built)
    m = machine()
    print(f"machine: {m['cpu_model']}, load {m['loadavg']}, code {m['git_commit']}")
    print(
        f"{args.exporters} exporters, {records:,} records in {len(datagrams):,} datagrams, rounds of {BATCH_DATAGRAMS}"
    )
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    best: Run | None = None
    for _ in range(max(1, args.repeat)):
        out = Path(tempfile.mkdtemp(prefix="tunnelhound-ingest-", dir=base))
        try:
            result = run(datagrams, out)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        print(f"  run: {result.wall:.2f} s wall, {result.cpu:.2f} s CPU, {result.documents:,} documents")
        if best is None or result.cpu < best.cpu:
            best = result
    assert best is not None
    print(
        "best run, µs/record (wall):",
        "  ".join(f"{k} {1e6 * v / records:.2f}" for k, v in best.stages.items()),
    )
    print(
        f"CPU µs/record {1e6 * best.cpu / records:.2f}  ({records / best.cpu:,.0f} records/s a core; "
        f"the soak sends {SOAK_RATE:,})"
    )
    if args.profile:
        out = Path(tempfile.mkdtemp(prefix="tunnelhound-ingest-", dir=base))
        profile = cProfile.Profile()
        try:
            profile.runcall(run, datagrams, out)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        pstats.Stats(profile, stream=sys.stdout).sort_stats("cumulative").print_stats(45)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
