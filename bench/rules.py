"""Rule engine throughput: records/s of ``RuleEngine.process`` on normalized frames.

Run from the repository root::

    PYTHONPATH=sidecar python bench/rules.py                  # 1 M records, bench/rules/ + built-in
    PYTHONPATH=sidecar python bench/rules.py --records 200000 --json

The frames are the bench's NetFlow v9 stream (``streams.py``) decoded, normalized a chunk of
256 datagrams at a time and biflow-stitched, as ``tunnelhound replay`` does; only ``process``
(and the final ``flush``) is timed, in CPU seconds of this process (the machine may be
shared), best of ``--repeat`` runs, each on a fresh engine.
``--no-stitch`` leaves the records as uniflows whose destination never answers, so every TCP
flow feeds both scan correlations: a worst case for the windows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from decode import chunks, datagrams_of
from streams import build_v9
from tunnelhound.decode.decoder import Decoder
from tunnelhound.normalize.biflow import BiflowStitcher
from tunnelhound.normalize.ecs import Normalizer
from tunnelhound.normalize.frame import FlowFrame
from tunnelhound.rules import BUILTIN_RULES, RuleEngine, load_pipeline, load_rules

BENCH_RULES = Path(__file__).resolve().parent / "rules"


def frames_of(records: int, chunk: int, stitch: bool) -> tuple[list[FlowFrame], float]:
    """The stream's records as the frames the pipeline hands the engine, and the seconds
    decode + normalize took (the yardstick: the engine's cost is reported beside it)."""
    decode, frames = Decoder().decode, Normalizer().frames
    groups = chunks(datagrams_of(build_v9(records)), chunk)
    began = time.process_time()
    out = [frames([batch for dg in group for batch in decode(dg).flows]) for group in groups]
    took = time.process_time() - began
    if not stitch:
        return out, took
    stitcher = BiflowStitcher()
    return [f for f in [*map(stitcher.push, out), stitcher.flush()] if f.n], took


def run(engine: RuleEngine, frames: list[FlowFrame]) -> tuple[float, int]:
    """Seconds to process every frame and flush; the number of detections."""
    found = 0
    began = time.process_time()
    for frame in frames:
        found += len(engine.process(frame))
    found += len(engine.flush())
    return time.process_time() - began, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=256, help="datagrams normalized per frame")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-builtin", action="store_true", help="only bench/rules/")
    parser.add_argument("--no-stitch", action="store_true", help="uniflows: every TCP flow unanswered")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    directories = [BENCH_RULES]
    pipeline_file = BUILTIN_RULES / "pipelines" / "tunnelhound.yml"
    if not args.no_builtin and BUILTIN_RULES.is_dir():
        directories.insert(0, BUILTIN_RULES)
    pipeline = load_pipeline(pipeline_file) if pipeline_file.is_file() else None
    rules = load_rules(directories, pipeline)
    frames, decode_seconds = frames_of(args.records, args.chunk, not args.no_stitch)
    records = sum(f.n for f in frames)
    best, found = min(run(RuleEngine(rules), frames) for _ in range(max(1, args.repeat)))
    report: dict[str, Any] = {
        "records": records,
        "stitched": not args.no_stitch,
        "frames": len(frames),
        "rules": len(rules.base) + len(rules.correlations),
        "detections": found,
        "seconds": round(best, 3),
        "records_per_second": round(records / best),
        "us_per_record": round(best / records * 1e6, 3),
        "decode_normalize_us_per_record": round(decode_seconds / args.records * 1e6, 3),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>20}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
