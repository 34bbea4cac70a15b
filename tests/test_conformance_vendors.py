"""Conformance: the Logstash NetFlow codec's vendor captures decode to what its spec expects.

Every case of ``tests/data/vendors/expectations.json`` runs on both decoder paths (numpy
fast path and plain-Python reference path):

* counts: flow records plus options records per decode step equal the codec's event count
  (the codec emits options records as events; we return them apart, in ``Decoded.options``);
  the two files holding several packets (``netflow5.dat``, ``ipfix.dat``) are held to our
  true totals, and the codec's events to a replay of their first packet alone;
* values: every assertion of the spec and every field of its full JSON events, mapped to
  our information elements and compared in the codec's value form (``tests/vendor_cases.py``);
* the two paths give identical batches, column for column, dtype included.

Known codec errors are listed in ``vendor_cases.CODEC_QUIRKS`` (our value asserted instead),
known decoder errors in ``vendor_cases.DECODER_BUGS`` (``xfail(strict=True)``), and
``docs/conformance.md`` shows the result per case; a test keeps it current.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tunnelhound.model import FlowBatch
from vendor_cases import (
    CODEC_QUIRKS,
    DECODER_BUGS,
    MULTI_MESSAGE_FILES,
    CaseReport,
    Outcome,
    VendorCase,
    column_equal,
    decoder_bugs,
    load_cases,
    replay,
    report,
)

ROOT = Path(__file__).resolve().parent.parent
CASES = load_cases()
_BY_CONTEXT = {case.context: case for case in CASES}


def _path(fast_path: bool) -> str:
    return "fast" if fast_path else "reference"


def _xfails(case: VendorCase, fast_path: bool | None) -> list[pytest.MarkDecorator]:
    return [
        pytest.mark.xfail(strict=True, reason=f"decoder bug: {bug.summary} ({bug.evidence})")
        for bug in decoder_bugs(case, fast_path)
    ]


def _case_paths() -> list[Any]:
    return [
        pytest.param(case, fast, id=f"{case.case_id}-{_path(fast)}", marks=_xfails(case, fast))
        for case in CASES
        for fast in (True, False)
    ]


@cache
def _report(context: int, fast_path: bool) -> CaseReport:
    return report(_BY_CONTEXT[context], fast_path=fast_path)


def _explain(outcomes: list[Outcome]) -> str:
    return "\n".join(
        f"  event {o.index} {o.field}: expected {o.expected!r}, ours {o.ours!r} (column {o.column}) {o.detail}"
        for o in outcomes
    )


def test_expectations_cover_every_case() -> None:
    assert len(CASES) == 40
    assert len(_BY_CONTEXT) == len(CASES), "case contexts must be unique"
    assert sum(len(c.checks) for c in CASES) == 148


@pytest.mark.parametrize(("case", "fast_path"), _case_paths())
def test_event_counts(case: VendorCase, fast_path: bool) -> None:
    """Flows + options records per decode step = the codec's events (true totals for multi-packet files)."""
    result = _report(case.context, fast_path)
    assert not result.count_problems, "\n".join(result.count_problems)
    multi = MULTI_MESSAGE_FILES.get(case.files[0])
    if multi is not None:
        assert (result.flows, result.options) == (multi.flows, multi.options)
        assert sum(len(step) for step in result.codec_events) == sum(case.expected_count)
    elif case.expected_count:
        assert [len(step) for step in result.codec_events] == list(case.expected_count)


@pytest.mark.parametrize(("case", "fast_path"), _case_paths())
def test_spec_assertions(case: VendorCase, fast_path: bool) -> None:
    """Every ``expect(...).to eq`` of the codec's spec holds for our record, in the codec's form."""
    result = _report(case.context, fast_path)
    failed = [o for o in result.assertions if not o.ok]
    assert not failed, "\n" + _explain(failed)
    assert len(result.assertions) == len(case.checks) * len(result.codec_events)


@pytest.mark.parametrize(("case", "fast_path"), _case_paths())
def test_spec_json_events(case: VendorCase, fast_path: bool) -> None:
    """Every field of the spec's full JSON events matches, is a listed codec quirk, or says why it is skipped."""
    result = _report(case.context, fast_path)
    failed = [o for o in result.json if not o.ok]
    assert not failed, "\n" + _explain(failed)
    for outcome in result.json:
        assert outcome.status != "skip" or outcome.detail, outcome


@pytest.mark.parametrize(("case", "fast_path"), _case_paths())
def test_options_records_are_not_flows(case: VendorCase, fast_path: bool) -> None:
    """Options data comes back in ``Decoded.options`` only: no flow batch of an options template."""
    run = _report(case.context, fast_path).run
    option_sets = {(o.domain, o.template_id) for d in run.decoded for o in d.options}
    flow_sets = {(b.domain, b.template_id) for d in run.decoded for b in d.flows}
    assert not option_sets & flow_sets


def _batch_header(batch: FlowBatch) -> dict[str, Any]:
    skip = {"column_cache", "raw", "finish", "options"}  # storage details; columns are compared below
    return {f.name: getattr(batch, f.name) for f in fields(batch) if f.name not in skip}


def _path_params() -> list[Any]:
    return [pytest.param(case, id=case.case_id, marks=_xfails(case, None)) for case in CASES]


@pytest.mark.parametrize("case", _path_params())
def test_fast_and_reference_paths_agree(case: VendorCase) -> None:
    """Both paths give the same batches, column for column (dtype, object and void columns included)."""
    fast = replay(case, fast_path=True)
    ref = replay(case, fast_path=False)
    assert len(fast.decoded) == len(ref.decoded)
    for i, (a, b) in enumerate(zip(fast.decoded, ref.decoded, strict=True)):
        assert len(a.flows) == len(b.flows), f"datagram {i}"
        for x, y in zip(a.flows, b.flows, strict=True):
            where = f"datagram {i} set {x.template_id} at {x.set_offset}"
            assert _batch_header(x) == _batch_header(y), where
            assert list(x.columns) == list(y.columns), where
            for name in x.columns:
                assert column_equal(x.columns[name], y.columns[name]), f"{where} column {name}"
            assert x.options == y.options, where
        assert a.options == b.options, f"datagram {i}"
    assert fast.decoder.stats == ref.decoder.stats


def test_listed_differences_are_live() -> None:
    """Every codec quirk still shows up, so the list cannot silently go stale."""
    seen = set()
    for case in CASES:
        for outcome in [*_report(case.context, True).json, *_report(case.context, True).assertions]:
            if outcome.status == "quirk":
                seen.add((case.context, outcome.index, outcome.field))
    assert seen == {(q.context, q.index, q.field) for q in CODEC_QUIRKS}
    assert all(bug.context in _BY_CONTEXT for bug in DECODER_BUGS)


def test_conformance_table_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "conformance_table.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
