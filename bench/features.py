"""Feature stage throughput: flows/s of FeatureStage.apply, in total and per detector.

Usage: PYTHONPATH=sidecar python bench/features.py [--flows 20000] [--frames 10] [--hosts 1000]
       [--servers 100] [--seed 1] [--json]

Frames of synthetic flows (seeded: every run builds the same ones): internal clients
(``--hosts``) talking to external servers (``--servers``) on DNS, HTTP(S), SSH, NTP and 8080, TCP,
UDP and ICMP mixed, sizes and durations spread. The first frame warms the stage up (beacon history,
online baseline); the others are timed. Figures are from one core; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sidecar"))

from tunnelhound.config import DetectionsConfig
from tunnelhound.features import (
    FeatureStage,
    dns,
    icmp,
    sizes,
)
from tunnelhound.normalize.frame import ABSENT, COLUMNS, FlowFrame

T0 = 1_795_440_000 * 10**9


def synthetic_frame(rng: np.random.Generator, n: int, hosts: int, servers: int, t0: int) -> FlowFrame:
    """``n`` flows between ``hosts`` internal clients and ``servers`` external servers."""
    absent = {"i8": ABSENT, "O": None, "?": False, "i1": 2, "f8": 1.0}
    cols = {name: np.full(n, absent[dtype], dtype=dtype) for name, dtype in COLUMNS.items()}
    client = rng.integers(0, hosts, n)
    cols["src_ip"] = np.array(
        [f"10.{c >> 8 & 255}.{c & 255}.{1 + c % 250}" for c in client.tolist()], dtype=object
    )
    cols["dst_ip"] = np.array(
        [f"198.51.{s >> 8}.{s & 255}" for s in rng.integers(0, servers, n).tolist()], dtype=object
    )
    cols["src_internal"][:] = True
    cols["proto"] = rng.choice([6, 6, 6, 17, 17, 1], n)
    cols["dst_port"] = np.where(cols["proto"] == 1, ABSENT, rng.choice([53, 80, 443, 443, 22, 123, 8080], n))
    cols["src_port"] = np.where(cols["proto"] == 1, ABSENT, rng.integers(1024, 65535, n))
    cols["icmp_type"] = np.where(cols["proto"] == 1, 8, ABSENT)
    cols["src_packets"] = rng.integers(1, 60, n)
    cols["dst_packets"] = rng.integers(0, 60, n)
    cols["src_bytes"] = cols["src_packets"] * rng.integers(40, 1500, n)
    cols["dst_bytes"] = cols["dst_packets"] * rng.integers(40, 1500, n)
    cols["flags"] = np.where(cols["proto"] == 6, rng.choice([0x02, 0x1B, 0x1B, 0x1B], n), ABSENT)
    cols["start_ns"] = t0 + rng.integers(0, 60 * 10**9, n)
    cols["end_ns"] = cols["start_ns"] + rng.integers(0, 30 * 10**9, n)
    return FlowFrame(n, cols)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flows", type=int, default=20000, help="flows per frame")
    p.add_argument("--frames", type=int, default=10, help="timed frames (after one warm-up frame)")
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--servers", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    frames = [
        synthetic_frame(rng, args.flows, args.hosts, args.servers, T0 + i * 60 * 10**9)
        for i in range(args.frames + 1)
    ]
    config = DetectionsConfig()
    stage = FeatureStage(config)
    stage.apply(frames[0])
    parts = {
        "sizes": lambda f, rows: sizes.apply(f),
        "dns": lambda f, rows: dns.apply(f, config.dns, stage.baseline, rows),
        "icmp": lambda f, rows: icmp.apply(f, config.icmp, stage.baseline, rows),
        "scan": stage.scan.apply,
        "exfil": stage.exfil.apply,
        "beacon": stage.beacon.apply,
        "app_tunnel": stage.app_tunnel.apply,
    }
    spent = dict.fromkeys(parts, 0.0)
    total = 0.0
    for frame in frames[1:]:
        start = time.perf_counter()
        rows = stage.overrides.resolve(frame)
        for name, run in parts.items():
            t = time.perf_counter()
            run(frame, rows)
            spent[name] += time.perf_counter() - t
        total += time.perf_counter() - start
    flows = args.flows * args.frames
    result = {
        "flows": flows,
        "flows_per_s": round(flows / total),
        "per_detector_flows_per_s": {name: round(flows / s) for name, s in spent.items()},
        "beacon_pairs": len(stage.beacon.pairs),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"feature stage: {result['flows_per_s']:,} flows/s over {flows:,} flows "
            f"({result['beacon_pairs']:,} beacon pairs remembered)"
        )
        for name, rate in result["per_detector_flows_per_s"].items():
            print(f"  {name:<11} {rate:>12,} flows/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
