"""Per-detection true/false positives and false negatives of findings on the lab corpus.

Usage: python scripts/lab_detection_table.py FINDINGS.jsonl [...] [--labels tests/data/lab/labels.json]

FINDINGS.jsonl: one JSON object per line with at least ``detector`` (rule file stem) and
``host``, as `tunnelhound hunt --json` prints (``group`` is used when it names a
``destination.ip``), or the sidecar's own alert documents (`tunnelhound replay --alerts`):
``event.action`` is the detector, ``source.ip`` the host, ``destination.ip`` the peer. Several
files (one per capture) are tabled each on its own.

A malicious scenario is found (TP) when a finding of its detector names its internal host (and,
when the finding is per destination, one of its destinations); otherwise it is a FN. A finding
that matches no scenario of its detector is a FP; ``benign hosts`` counts the FPs that name a
host of a benign scenario (the acceptance says: none).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

LABELS = Path(__file__).resolve().parent.parent / "tests" / "data" / "lab" / "labels.json"
KINDS = {
    "app_tunnel": "app_tunnel",
    "dns_tunnel": "dns_tunnel",
    "icmp_tunnel": "icmp_tunnel",
    "port_scan": "port_scan",
    "exfiltration": "exfil",
    "beacon": "beacon",
}
"""Detector slug -> labels.json kind."""


def hosts(spec: str) -> set[str]:
    """'10.77.1.10-19' or '198.18.0.53,198.18.1.80' as a set of addresses."""
    out: set[str] = set()
    for part in filter(None, spec.split(",")):
        prefix, _, last = part.rpartition(".")
        if "-" in last:
            lo, hi = last.split("-")
            out |= {f"{prefix}.{i}" for i in range(int(lo), int(hi) + 1)}
        else:
            out.add(part)
    return out


def finding(obj: dict[str, Any]) -> dict[str, Any]:
    """A hunt finding as is; an alert document as the finding it amounts to."""
    if obj.get("event", {}).get("kind") != "alert":
        return obj
    peer = obj.get("destination", {}).get("ip")
    return {
        "detector": obj["event"]["action"],
        "host": obj.get("source", {}).get("ip"),
        "rule": obj["rule"]["name"],
        "group": {"destination.ip": peer} if peer else {},
    }


def matches(finding: dict[str, Any], scenario: dict[str, Any]) -> bool:
    """The finding names the scenario's internal host (and destination, when it has one)."""
    if finding["host"] not in hosts(scenario["src"]):
        return False
    dst = finding.get("group", {}).get("destination.ip")
    return dst is None or dst in hosts(scenario["dst"])


def table(findings: list[dict[str, Any]], labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per detector: tp, fn, fp, fp on benign hosts, and the scenarios missed."""
    benign = set().union(*(hosts(s["src"]) for s in labels if s["kind"] == "benign"))
    rows = []
    for detector, kind in KINDS.items():
        scenarios = [s for s in labels if s["kind"] == kind]
        mine = [f for f in findings if f["detector"] == detector]
        found = [s for s in scenarios if any(matches(f, s) for f in mine)]
        false = [f for f in mine if not any(matches(f, s) for s in scenarios)]
        rows.append(
            {
                "detector": detector,
                "scenarios": len(scenarios),
                "tp": len(found),
                "fn": len(scenarios) - len(found),
                "fp": len(false),
                "fp_benign": sum(f["host"] in benign for f in false),
                "missed": [s["scenario"] for s in scenarios if s not in found],
            }
        )
    return rows


def render(rows: list[dict[str, Any]], title: str) -> str:
    """A Markdown table."""
    lines = [
        f"**{title}**",
        "",
        "| detection | scenarios | TP | FN | FP | FP on benign hosts | missed |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        missed = ", ".join(r["missed"]) or "-"
        lines.append(
            f"| {r['detector']} | {r['scenarios']} | {r['tp']} | {r['fn']} | {r['fp']} | {r['fp_benign']} | {missed} |"
        )
    total = {k: sum(r[k] for r in rows) for k in ("scenarios", "tp", "fn", "fp", "fp_benign")}
    lines.append(
        f"| **all** | {total['scenarios']} | {total['tp']} | {total['fn']} | {total['fp']} | {total['fp_benign']} | |"
    )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("findings", nargs="+", help="JSON-lines files of findings ('-' for stdin)")
    p.add_argument("--labels", default=str(LABELS))
    args = p.parse_args()
    labels = json.loads(Path(args.labels).read_text(encoding="utf-8"))
    for name in args.findings:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        findings = [finding(json.loads(line)) for line in text.splitlines() if line.strip()]
        print(render(table(findings, labels), name))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
