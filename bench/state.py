"""Rule-state memory with many distinct hosts (issue 7, acceptance 5).

Every one of ``--hosts`` internal hosts sends, within four minutes of flow time (so no window
expires), an unanswered probe (a TCP SYN to an external address) and an upload to another
external address.  Each host so holds a group in three correlations (``port_scan_vertical``
by source and destination, ``port_scan_horizontal`` by source and port,
``exfiltration_volume`` by host) plus the beacon history of its two pairs, and no rule fires.
Frames of ``--batch`` hosts go through ``FeatureStage.apply`` in a worker process and, pickled
over a pipe, through ``RuleEngine.process`` in this process: the layout of ``tunnelhound run``
with workers (features in the workers, rules in the one analysis process), so this process's
resident memory is the rule state's.  With ``workers: 1`` both live in one process: add
``worker_rss_mb``.

    PYTHONPATH=sidecar python bench/state.py --hosts 1000000 --max-groups 1000000
    PYTHONPATH=sidecar python bench/state.py --hosts 1000000            # the default cap
    PYTHONPATH=sidecar python bench/state.py --hosts 200000 --tracemalloc 15

It prints one JSON object: the analysis process's resident memory before and after
(``VmRSS``), its peak (``ru_maxrss``), the worker's at the end, the groups held, the engine's eviction counters and the seconds it took;
``--tracemalloc N`` adds the N largest allocation sites still alive at the end (tracing
slows the run about threefold and adds its own memory to the RSS figures).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import pickle
import resource
import sys
import tempfile
import time
import tracemalloc
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from tunnelhound.config import Config
from tunnelhound.features.stage import FeatureStage
from tunnelhound.normalize.frame import ABSENT, COLUMNS, FlowFrame
from tunnelhound.rules import RuleEngine

T0 = 1_795_440_000 * 10**9
SPREAD_NS = 240 * 10**9
"""Every flow ends within four minutes: inside one 5-minute window, so no group expires."""


def rss_bytes() -> int:
    """Resident memory now (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _addresses(prefix: int, ids: np.ndarray) -> np.ndarray:
    """Dotted IPv4 strings ``prefix.x.y.z`` for host numbers ``ids`` (< 2**24)."""
    out = np.empty(len(ids), dtype=object)
    out[:] = [f"{prefix}.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in ids.tolist()]
    return out


def host_frame(first: int, count: int, total: int) -> FlowFrame:
    """Two flows of each host ``first`` .. ``first + count - 1``: a probe, then an upload."""
    ids = np.arange(first, first + count, dtype=np.int64)
    n = 2 * count
    cols: dict[str, np.ndarray] = {}
    for name, dtype in COLUMNS.items():
        absent = {"i8": ABSENT, "O": None, "?": False, "i1": 0, "f8": 1.0}[dtype]
        cols[name] = np.full(n, absent, dtype=dtype)
    ends = T0 + ids * (SPREAD_NS // total)
    probe, upload = slice(0, n, 2), slice(1, n, 2)
    cols["start_ns"][probe] = cols["end_ns"][probe] = ends
    cols["start_ns"][upload], cols["end_ns"][upload] = ends - 10**9, ends
    src = _addresses(10, ids)
    cols["src_ip"][probe] = cols["src_ip"][upload] = src
    cols["dst_ip"][probe] = _addresses(203, 0x007100 + ids % 250)  # 203.0.113.x
    cols["dst_ip"][upload] = _addresses(198, 0x336400 + ids % 250)  # 198.51.100.x
    cols["src_port"][probe], cols["src_port"][upload] = 40000, 40001
    cols["dst_port"][probe], cols["dst_port"][upload] = 445, 443
    cols["proto"][:] = 6
    cols["flags"][probe], cols["flags"][upload] = 0x02, 0x1B  # SYN only; a whole connection
    cols["rev_flags"][upload] = 0x1B
    cols["src_bytes"][probe], cols["src_packets"][probe] = 60, 1
    cols["dst_bytes"][probe] = cols["dst_packets"][probe] = 0  # never answered
    cols["src_bytes"][upload], cols["src_packets"][upload] = 50_000, 40
    cols["dst_bytes"][upload], cols["dst_packets"][upload] = 4_000, 30
    cols["biflow"][upload] = 1
    cols["src_internal"][:] = True
    cols["observer"][:] = "192.0.2.1"
    cols["event_id"][:] = [f"e{i:x}" for i in range(2 * first, 2 * first + n)]
    return FlowFrame(n, cols)


def _worker(conn: Connection, config: Config, state: str, hosts: int, batch: int) -> None:
    """The worker side of ``tunnelhound run``: features on every frame, frames to the analysis."""
    features = FeatureStage.from_config(config, state_dir=Path(state))
    for first in range(0, hosts, batch):
        frame = features.apply(host_frame(first, min(batch, hosts - first), hosts))
        conn.send_bytes(pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL))
    conn.send_bytes(pickle.dumps(rss_bytes()))
    conn.close()


def measure(hosts: int, max_groups: int | None, batch: int, top: int) -> dict[str, Any]:
    """Feed ``hosts`` hosts through features (a worker process) and rules (this process, the
    analysis); memory, groups and counters after."""
    config = Config()
    if max_groups is not None:
        config = dataclasses.replace(config, rules=dataclasses.replace(config.rules, max_groups=max_groups))
    with tempfile.TemporaryDirectory(prefix="th-state-") as state:
        engine = RuleEngine.from_config(config, Path(state))
        engine.process(FeatureStage(config.detections).apply(host_frame(hosts, 1, hosts)))  # first-use caches
        engine = RuleEngine.from_config(config, Path(state))
        receive, send = multiprocessing.get_context("spawn").Pipe(duplex=False)
        worker = multiprocessing.get_context("spawn").Process(
            target=_worker, args=(send, config, state, hosts, batch)
        )
        worker.start()
        send.close()
        if top:
            tracemalloc.start()
        rss_start, started = rss_bytes(), time.perf_counter()
        alerts = 0
        for _ in range(0, hosts, batch):
            alerts += len(engine.process(pickle.loads(receive.recv_bytes())))
        seconds = time.perf_counter() - started
        worker_rss = pickle.loads(receive.recv_bytes())
        worker.join()
        rss_end = rss_bytes()
        metrics = engine.metrics()
        result: dict[str, Any] = {
            "hosts": hosts,
            "flows": 2 * hosts,
            "max_groups": config.rules.max_groups,
            "groups": int(metrics["rules_groups"]),
            "groups_by_rule": {name: len(w) for name, w in engine.windows.items() if len(w)},
            "evicted_groups": int(metrics["rules_evicted_groups"]),
            "evicted_events": int(metrics["rules_evicted_events"]),
            "alerts": alerts,
            "rss_start_mb": round(rss_start / 2**20, 1),
            "rss_end_mb": round(rss_end / 2**20, 1),
            # ru_maxrss is in KiB on Linux.
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "bytes_per_host": round((rss_end - rss_start) / hosts),
            "worker_rss_mb": round(worker_rss / 2**20, 1),
            "seconds": round(seconds, 1),
        }
        if top:
            snapshot = tracemalloc.take_snapshot()
            tracemalloc.stop()
            result["tracemalloc_mb"] = round(sum(s.size for s in snapshot.statistics("filename")) / 2**20, 1)
            result["top_allocations"] = [
                {"where": str(s.traceback), "mb": round(s.size / 2**20, 1), "blocks": s.count}
                for s in snapshot.statistics("lineno")[:top]
            ]
        # The state is still alive here: count it once more, as a check that it was measured held.
        result["groups_at_end"] = sum(len(w) for w in engine.windows.values())
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=1_000_000)
    parser.add_argument(
        "--max-groups", type=int, default=None, help="rules.max_groups (default: the config's)"
    )
    parser.add_argument("--batch", type=int, default=5000, help="hosts a frame (two flows each)")
    parser.add_argument(
        "--tracemalloc", type=int, default=0, metavar="N", help="list the N largest allocation sites"
    )
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.hosts, args.max_groups, args.batch, args.tracemalloc)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
