"""What the lab captures raise through bench/pipeline.py's chain, to compare across engine changes.

Run from the repository root::

    PYTHONPATH=sidecar python bench/lab_detections.py --out before.json      # on the old code
    PYTHONPATH=sidecar python bench/lab_detections.py --compare before.json  # on the new code

Every ``tests/data/lab/*.pcap`` is replayed on its own, a fresh pipeline each (decode →
normalize → biflow → features → rules with every built-in rule → ``build_alerts``, chunks of
256 datagrams as ``tunnelhound replay`` does). Printed per capture: the alert count per rule, the
sorted (rule, source host) pairs and the sorted alert ``event.id`` s (a hash of rule, group key
and window end: equal ids mean the same firings). ``--compare`` exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from decode import chunks
from pipeline import Pipeline
from tunnelhound.config import Config
from tunnelhound.sources.capture import CaptureReader

LAB = Path(__file__).resolve().parent.parent / "tests" / "data" / "lab"


def detections(capture: Path) -> dict[str, Any]:
    """The alerts one capture raises, summarized."""
    with tempfile.TemporaryDirectory(prefix="labdet-") as state_dir:
        pipeline = Pipeline(Config(), Path(state_dir))
        for group in chunks(list(CaptureReader(capture)), 256):
            pipeline.chunk(group)
        pipeline.finish()
    alerts = pipeline.run.alerts
    return {
        "records": pipeline.run.records,
        "alerts": dict(sorted(Counter(a["rule"]["name"] for a in alerts).items())),
        "hosts": sorted({(a["rule"]["name"], a.get("source", {}).get("ip") or "") for a in alerts}),
        "ids": sorted(a["event"]["id"] for a in alerts),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the summary here (JSON)")
    parser.add_argument("--compare", type=Path, help="a summary written before: exit 1 if this differs")
    args = parser.parse_args(argv)
    now = {path.name: detections(path) for path in sorted(LAB.glob("*.pcap"))}
    # Through JSON so tuples compare with what a file read back holds.
    now = json.loads(json.dumps(now))
    for name, summary in now.items():
        print(f"{name}: {summary['records']:,} records, alerts {summary['alerts']}")
        for rule, host in summary["hosts"]:
            print(f"  {rule:<28} {host}")
    if args.out:
        args.out.write_text(json.dumps(now, indent=1) + "\n", encoding="utf-8")
    if args.compare:
        before = json.loads(args.compare.read_text(encoding="utf-8"))
        differ = sorted(name for name in before.keys() | now.keys() if before.get(name) != now.get(name))
        print(
            "same detections as", args.compare if not differ else f"DIFFERENT from {args.compare}: {differ}"
        )
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
