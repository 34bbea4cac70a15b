"""Index the lab captures, with feature fields, into Elasticsearch (evidence for `tunnelhound hunt`).

Usage: python scripts/lab_index.py --es-url http://127.0.0.1:9200 --namespace lab [CAPTURE ...]

Each capture (default: the three in tests/data/lab/) goes through decode, normalize, biflow
stitching and the feature stage into its own data stream ``logs-tunnelhound.flow-<ns><capture>``
(e.g. ``labnetflowv9``), each with a fresh feature state, as a sidecar started on that capture
would. Run `tunnelhound setup --es-url URL` first. Prints one line per capture: the data stream
and the documents written.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "sidecar"))

from tunnelhound.config import Config  # noqa: E402 - needs the sys.path entry above
from tunnelhound.pipeline import FlowPipeline, open_sinks  # noqa: E402
from tunnelhound.sinks.elasticsearch import flow_index  # noqa: E402
from tunnelhound.sources.files import iter_replay_items  # noqa: E402

LAB = ROOT / "tests" / "data" / "lab"
CAPTURES = ("netflow_v5.pcap", "netflow_v9.pcap", "ipfix.pcap")


def index_capture(capture: Path, url: str, namespace: str) -> int:
    """Replay one capture into ``logs-tunnelhound.flow-<namespace>``; returns documents written."""
    with tempfile.TemporaryDirectory(prefix="tunnelhound-lab-") as state:
        config = Config(state_dir=state, namespace=namespace)
        es = replace(config.output.elasticsearch, url=url)
        config = replace(config, output=replace(config.output, elasticsearch=es, ndjson_enabled=False))
        pipeline = FlowPipeline(config, open_sinks(config))  # computes the features itself
        pipeline.feed(iter_replay_items([str(capture)]))
        pipeline.close()
        return pipeline.counts.documents


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("captures", nargs="*", default=[str(LAB / c) for c in CAPTURES])
    p.add_argument("--es-url", required=True)
    p.add_argument("--namespace", default="lab", help="namespace prefix; the capture's name is appended")
    args = p.parse_args()
    for name in args.captures:
        capture = Path(name)
        namespace = args.namespace + capture.stem.replace("_", "")
        written = index_capture(capture, args.es_url, namespace)
        print(f"{flow_index(namespace)}\t{written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
