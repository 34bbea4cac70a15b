"""Instructions per record of decode, normalize and NDJSON, counted by valgrind (load-free).

Wall-clock rates on a shared machine move by 20-40 % with other jobs; instruction counts do
not. Each stage runs in its own ``valgrind --tool=callgrind`` process on the same slice of
the bench streams, after the same set-up; the difference to a run that stops after the
set-up, divided by the records, is the stage's user-space instructions per record
(cumulative: ``normalize`` includes ``decode``). Kernel work (the sink's ``write`` into the
page cache, page faults) is not counted::

    PYTHONPATH=sidecar python bench/instructions.py                  # 20,000 records a stream
    PYTHONPATH=sidecar python bench/instructions.py --records 50000

Needs ``valgrind`` (Debian: ``apt-get install valgrind``). Slow: ~50x the plain run.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

from decode import chunks, datagrams_of
from streams import build_ipfix, build_v9
from tunnelhound.decode.decoder import Decoder
from tunnelhound.normalize.ecs import Normalizer
from tunnelhound.sinks.ndjson import NdjsonSink

STAGES = ("setup", "decode", "normalize", "ndjson")
CHUNK = 256


def run_stage(stream_name: str, records: int, stage: str) -> None:
    """Build the stream, then do ``stage`` (and the stages before it) on every chunk."""
    stream = (build_v9 if stream_name == "v9" else build_ipfix)(records)
    groups = chunks(datagrams_of(stream), CHUNK)
    decoder, frames = Decoder(), Normalizer().frames
    if stage == "setup":
        return
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        sink = NdjsonSink(tmp, rotate_bytes=256 * 1024 * 1024, max_files=1, prefix="count")
        for group in groups:
            batches = [b for dg in group for b in decoder.decode(dg).flows]
            for batch in batches:
                _ = batch.columns
            if stage == "decode":
                continue
            frame = frames(batches)
            if stage == "ndjson":
                sink.write_frame(frame)
        sink.close()


def count(stream_name: str, records: int, stage: str) -> int:
    """Instructions (callgrind ``Ir``) of one process doing ``stage``."""
    with tempfile.NamedTemporaryFile(suffix=".callgrind") as out:
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out.name}",
                sys.executable,
                __file__,
                "--run",
                stream_name,
                stage,
                "--records",
                str(records),
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        match = re.search(r"Collected : (\d+)", proc.stderr)
        if not match:
            raise RuntimeError(f"no callgrind total in: {proc.stderr[-500:]}")
        return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=20_000, help="records per stream (default 20,000)")
    parser.add_argument("--run", nargs=2, metavar=("STREAM", "STAGE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        run_stage(args.run[0], args.records, args.run[1])
        return 0
    print(f"instructions per record (callgrind Ir), {args.records:,} records a stream, chunks of {CHUNK}")
    print(f"{'stage (cumulative)':<28}{'v9':>12}{'ipfix':>12}")
    totals = {s: {name: count(s, args.records, name) for name in STAGES} for s in ("v9", "ipfix")}
    for name in STAGES[1:]:
        cells = [(totals[s][name] - totals[s]["setup"]) / args.records for s in ("v9", "ipfix")]
        print(f"{name:<28}{cells[0]:>12,.0f}{cells[1]:>12,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
