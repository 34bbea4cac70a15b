"""Write tests/data/traffic/mixed.pcap: deterministic synthetic traffic for softflowd.

Usage: ``python scripts/make_traffic_pcap.py [--seed N] [--out PATH]``.  The packet
builders and the traffic mix live in ``tests/traffic.py``; the same seed always gives the
same bytes, so a regenerated capture shows no diff unless the mix changed.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import traffic  # noqa: E402  (tests/ is not a package)


def main(argv: list[str] | None = None) -> int:
    """Generate the capture and print a summary of what it holds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=traffic.SEED)
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "traffic" / "mixed.pcap")
    args = parser.parse_args(argv)

    capture = traffic.mixed_traffic(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    count = traffic.write_pcap(capture.packets, args.out)
    span = (capture.packets[-1].ts_us - capture.packets[0].ts_us) / 1e6
    kinds = collections.Counter(c.kind for c in capture.conversations)
    ipv6 = sum(1 for c in capture.conversations if ":" in c.client)
    print(f"{args.out}: {count} packets, {args.out.stat().st_size} bytes, {span:.1f} s")
    print(
        f"{len(capture.conversations)} conversations ({ipv6} IPv6): "
        + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items()))
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
