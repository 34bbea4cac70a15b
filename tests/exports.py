"""softflowd exports of tests/data/traffic/mixed.pcap, made once per test module (test helper)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oracles import CFLOW_PORTS, run_softflowd, softflowd_summary, tshark_flows, write_export_pcap

MIXED = Path(__file__).parent / "data" / "traffic" / "mixed.pcap"


@dataclass(frozen=True)
class Spec:
    """One way of exporting the capture."""

    version: int
    biflow: bool = False
    sampling: int | None = None


SPECS = {
    "v5": Spec(5),
    "v9": Spec(9),
    "v10": Spec(10),
    "v10_biflow": Spec(10, biflow=True),
    "v9_sampled": Spec(9, sampling=10),
    "v10_sampled": Spec(10, sampling=10),
}
UNSAMPLED = ["v5", "v9", "v10", "v10_biflow"]


@dataclass(frozen=True)
class Run:
    """What one export produced."""

    spec: Spec
    datagrams: list[tuple[bytes, float]]
    summary: dict[str, int]
    export_pcap: Path
    flows: list[dict[str, Any]]


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Run]:
    """Run softflowd + tshark once per spec, lazily, so tool errors fail the test that asked."""
    cache: dict[str, Run] = {}

    def get(name: str) -> Run:
        if name not in cache:
            spec = SPECS[name]
            workdir = tmp_path_factory.mktemp(name)
            datagrams = run_softflowd(
                MIXED, spec.version, workdir, biflow=spec.biflow, sampling=spec.sampling
            )
            port = CFLOW_PORTS[spec.version]
            export_pcap = workdir / f"{name}.pcap"
            write_export_pcap(datagrams, export_pcap, port)
            cache[name] = Run(
                spec, datagrams, softflowd_summary(workdir), export_pcap, tshark_flows(export_pcap, port)
            )
        return cache[name]

    return get
