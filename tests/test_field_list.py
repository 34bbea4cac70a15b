"""Every document the normalizer writes uses only declared fields, with declared types."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fieldlist import problems
from replay import DATA, dat_documents, documents

ROOT = Path(__file__).resolve().parent.parent
CASES = json.loads((DATA / "vendors" / "expectations.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_vendor_documents_fit_the_field_list(case: dict) -> None:
    docs = dat_documents(case["files"])
    found = sorted({p for doc in docs for p in problems(doc)})
    assert found == []


@pytest.mark.parametrize("capture", ["netflow_v5.pcap", "netflow_v9.pcap", "ipfix.pcap"])
def test_lab_documents_fit_the_field_list(capture: str) -> None:
    docs = documents([DATA / "lab" / capture], stitch=True)
    assert len(docs) > 1000
    found = sorted({p for doc in docs for p in problems(doc)})
    assert found == []


def test_problems_reports_undeclared_and_mistyped() -> None:
    doc = {"source": {"ip": "not-an-ip", "port": "80"}, "bogus": 1, "related": {"ip": ["10.0.0.1"]}}
    assert problems(doc) == [
        "source.ip: 'not-an-ip' is not a ip",
        "source.port: '80' is not a long",
        "bogus: not declared",
    ]


def test_generated_netflow_fields_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_fields.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
