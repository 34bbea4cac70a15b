"""Bad input: fuzz the decoder (and the normalizer behind it) with broken vendor captures.

Acceptance point "Bad input": at least 100,000 mutated and truncated datagrams built from
the vendor captures go through ``Decoder.decode`` (60,000 mutants, each on the fast and
the reference path); nothing raises out of the decoder, and every datagram is accounted
for.  Per datagram, at least one of these must be visible:

* it produced flow records or options records,
* it carried a template set (new, changed, resent or withdrawn templates: ``template_sets``),
* it was held for a template not yet known (``template_misses``),
* or an error was counted under its reason (``errors[(exporter, reason)]``)

and never "silently nothing".  ``internal_error`` (the decoder's last-resort catch) must
stay at zero: every rejection has a real reason.  Each mutated datagram goes through the
fast path and the reference path, which must agree on every count and every column, and
every batch goes through ``Normalizer.normalize`` and ``orjson.dumps``.

Run with ``-s`` to see the datagram counts, the reasons table and the mutators used.  A
failure names the case, the mutant and the datagram in hex (the case's files primed the
decoder); minimize those bytes into ``tests/test_decoder_regressions.py``.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import struct
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzzing import Anatomy, anatomy, mutate
from tunnelhound.decode.decoder import Decoded, Decoder
from tunnelhound.decode.template import Template
from tunnelhound.model import Datagram, FlowBatch
from tunnelhound.normalize.ecs import Normalizer
from tunnelhound.normalize.frame import encode_ndjson

# A numpy RuntimeWarning in decode or normalize (an invalid cast, an overflow) is a bug too.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

VENDORS = Path(__file__).resolve().parent / "data" / "vendors"
IP, PORT = "192.0.2.1", 4444

MUTANTS = 100_000
"""Distinct mutated datagrams; each goes through both paths (200,000 decodes in all), so the
fast/reference comparison covers every mutant.  About 80 s on the 2-core CI machine."""
REQUIRED_TOTAL, REQUIRED_PER_PATH = 200_000, 100_000
SEED = int(os.environ.get("TUNNELHOUND_FUZZ_SEED", "20240601"))
"""With the case name, seeds each case's ``random.Random``: any case replays on its own.
Set ``TUNNELHOUND_FUZZ_SEED`` to explore further; CI keeps the default."""
WORKERS = min(2, os.cpu_count() or 1)
REPRIME_EVERY = 250
"""Start both decoders afresh from the case's captures this often, so mutated templates
do not leave the session in a state no real exporter reaches for the rest of the run."""

ALLOWED_REASONS = frozenset(
    {
        "bad_count",
        "bad_message_length",
        "bad_set_length",
        "bad_template",
        "bad_version",
        "empty_message",
        "empty_set",
        "reserved_set_id",
        "template_limit",
        "trailing_bytes",
        "truncated_header",
        "truncated_message",
        "truncated_record",
        "truncated_set",
    }
)
"""Every reason the decoder may count bad input under (``internal_error`` is a bug)."""

PATHS = (True, False)
PATH_NAMES = {True: "fast", False: "reference"}


@dataclass(frozen=True, slots=True)
class Case:
    """A vendor case: files replayed in order from one exporter."""

    name: str
    files: tuple[bytes, ...]


def _load_cases() -> list[Case]:
    raw = json.loads((VENDORS / "expectations.json").read_text())
    return [Case(c["name"], tuple((VENDORS / "dat" / f).read_bytes() for f in c["files"])) for c in raw]


CASES = _load_cases()
CORPUS = sorted({f for case in CASES for f in case.files})


# --------------------------------------------------------------------------- accounting


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one datagram did to a decoder: its output and how the counters moved."""

    records: int
    options: int
    template_sets: int
    template_misses: int
    errors: Counter[str]

    @property
    def accounted(self) -> bool:
        """The datagram left a visible trace (see the module docstring)."""
        return bool(self.records or self.options or self.template_sets or self.template_misses or self.errors)


def _errors(decoder: Decoder) -> Counter[str]:
    return Counter({reason: n for (ip, reason), n in decoder.stats.errors.items() if ip == IP})


def decode_checked(decoder: Decoder, data: bytes, received: float) -> tuple[Decoded, Outcome]:
    """Decode one datagram and check the accounting invariant; AssertionError says what broke."""
    stats = decoder.stats
    before = (
        stats.datagrams[IP],
        stats.records[IP],
        stats.options_records[IP],
        stats.template_sets[IP],
        stats.template_misses[IP],
    )
    errors_before = _errors(decoder)
    out = decoder.decode(Datagram(data, IP, PORT, received))  # must not raise
    errors = _errors(decoder)
    errors.subtract(errors_before)
    grown = +errors  # reasons whose count grew
    outcome = Outcome(
        records=out.record_count,
        options=len(out.options),
        template_sets=stats.template_sets[IP] - before[3],
        template_misses=stats.template_misses[IP] - before[4],
        errors=grown,
    )
    assert stats.datagrams[IP] - before[0] == 1
    assert stats.records[IP] - before[1] == outcome.records, "records counter disagrees with output"
    assert stats.options_records[IP] - before[2] == outcome.options
    assert all(b.count > 0 for b in out.flows), "empty batch emitted"
    assert not grown["internal_error"], "decoder hit its last-resort catch (internal_error)"
    assert set(grown) <= ALLOWED_REASONS, f"unknown reasons {set(grown) - ALLOWED_REASONS}"
    assert outcome.accounted, "datagram left no trace: no records, templates, held sets or errors"
    return out, outcome


def _same_batches(fast: Sequence[FlowBatch], ref: Sequence[FlowBatch]) -> str | None:
    """Why two paths' batches differ, or None when they agree column for column."""
    if [b.count for b in fast] != [b.count for b in ref]:
        return f"batch sizes {[b.count for b in fast]} != {[b.count for b in ref]}"
    for a, b in zip(fast, ref, strict=True):
        where = (a.template_id, a.set_offset, a.sequence, a.domain, a.export_time)
        if where != (b.template_id, b.set_offset, b.sequence, b.domain, b.export_time):
            return f"batch headers {where} differ"
        if a.types != b.types:
            return f"types {a.types} != {b.types}"
        if list(a.columns) != list(b.columns):
            return f"columns {list(a.columns)} != {list(b.columns)}"
        for name, col in a.columns.items():
            other = b.columns[name]
            if col.dtype != other.dtype:
                return f"{name}: dtype {col.dtype} != {other.dtype}"
            equal_nan = col.dtype.kind == "f"
            if not np.array_equal(col, other, equal_nan=equal_nan):
                return f"{name}: {col[:4]!r} != {other[:4]!r}"
    return None


NORMALIZER = Normalizer()


def check_datagram(decoders: dict[bool, Decoder], data: bytes, received: float) -> dict[bool, Outcome]:
    """Run one datagram through both paths, compare them, normalize and serialize every batch.

    The fast path's batches go through ``normalize`` one by one into documents, the
    reference path's through ``frames`` and the NDJSON encoder (what the pipeline does:
    sets of one template merged), so both renderings see every kind of fuzzed column.
    """
    outs: dict[bool, Decoded] = {}
    outcomes: dict[bool, Outcome] = {}
    for fast in PATHS:
        outs[fast], outcomes[fast] = decode_checked(decoders[fast], data, received)
        flows = outs[fast].flows
        if fast:
            docs = [doc for batch in flows for doc in NORMALIZER.normalize(batch)]
            orjson.dumps(docs)
        else:
            # What the pipeline writes: merged sets, encoded straight to NDJSON lines.
            lines = encode_ndjson(NORMALIZER.frames(flows))
            docs = [orjson.loads(line) for line in lines]
        assert len(docs) == outcomes[fast].records
    assert outcomes[True] == outcomes[False], f"paths disagree: {outcomes[True]} != {outcomes[False]}"
    why = _same_batches(outs[True].flows, outs[False].flows)
    assert why is None, f"paths decode different columns: {why}"
    return outcomes


# --------------------------------------------------------------------------- the campaign


def _primed(case: Case, received: float) -> dict[bool, Decoder]:
    """Both paths' decoders after replaying the case's captures in order."""
    decoders = {fast: Decoder(fast_path=fast) for fast in PATHS}
    for data in case.files:
        check_datagram(decoders, data, received)
    return decoders


def _anatomies(case: Case, decoder: Decoder) -> list[Anatomy]:
    def lookup(version: int, domain: int, set_id: int) -> Template | None:
        return decoder.sessions.template(decoder.sessions.key(IP, PORT, version, domain), set_id)

    return [anatomy(data, lookup) for data in case.files]


@dataclass(slots=True)
class Campaign:
    """Totals of a fuzz run."""

    mutated: Counter[str] = field(default_factory=Counter)
    """Mutated datagrams decoded, per path."""
    reasons: dict[str, Counter[str]] = field(
        default_factory=lambda: {p: Counter() for p in PATH_NAMES.values()}
    )
    outcomes: Counter[str] = field(default_factory=Counter)
    """How datagrams were accounted for (a datagram may count under several)."""
    mutators: Counter[str] = field(default_factory=Counter)

    def merge(self, other: Campaign) -> None:
        """Add another run's totals to these."""
        self.mutated.update(other.mutated)
        for path, reasons in other.reasons.items():
            self.reasons[path].update(reasons)
        self.outcomes.update(other.outcomes)
        self.mutators.update(other.mutators)


def run_case(case: Case, budget: int) -> Campaign:
    """Feed ``budget`` mutants of the case's captures through freshly primed decoders."""
    rng = random.Random(f"{SEED}:{case.name}")
    totals = Campaign()
    received = 1_000.0
    decoders = _primed(case, received)
    anatomies = _anatomies(case, decoders[True])
    for i in range(budget):
        if i and i % REPRIME_EVERY == 0:
            decoders = _primed(case, received)
        k = rng.randrange(len(case.files))
        original = case.files[k]
        name, data = mutate(rng, original, anatomies[k], CORPUS)
        while data == original:
            name, data = mutate(rng, original, anatomies[k], CORPUS)
        # Mostly 10 ms apart; now and then a minute passes and held sets expire.
        received += 61.0 if rng.random() < 0.005 else 0.01
        try:
            outcomes = check_datagram(decoders, data, received)
        except AssertionError as exc:
            raise AssertionError(
                f"case {case.name!r}, mutant {i} ({name}) of file {k}: {exc}\ndatagram: {data.hex()}"
            ) from exc
        totals.mutators[name] += 1
        for fast in PATHS:
            totals.mutated[PATH_NAMES[fast]] += 1
            totals.reasons[PATH_NAMES[fast]].update(outcomes[fast].errors)
        o = outcomes[True]
        for what, n in (
            ("records", o.records),
            ("options", o.options),
            ("template_sets", o.template_sets),
            ("held", o.template_misses),
            ("errors", sum(o.errors.values())),
        ):
            if n:
                totals.outcomes[what] += 1
    return totals


def _run_case_index(index: int) -> Campaign:
    # Worker entry point (forked): warnings are errors here as in the test itself.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        return run_case(CASES[index], math.ceil(MUTANTS / len(CASES)))


def _report(totals: Campaign, seconds: float) -> None:
    print(f"\nfuzz campaign: {seconds:.1f} s on {WORKERS} worker(s), seed {SEED}")
    for path, n in totals.mutated.items():
        print(f"  {path:>9} path: {n:>7} mutated datagrams")
    print("  datagrams that produced / carried (fast path):")
    for what, n in totals.outcomes.most_common():
        print(f"    {what:<16} {n:>7}")
    print("  errors by reason:        fast  reference")
    for reason in sorted(set(totals.reasons["fast"]) | set(totals.reasons["reference"])):
        print(
            f"    {reason:<20} {totals.reasons['fast'][reason]:>7} {totals.reasons['reference'][reason]:>10}"
        )
    print("  mutators (first of each stack):")
    for name, n in totals.mutators.most_common():
        print(f"    {name:<24} {n:>6}")


def test_fuzz_campaign_accounts_for_every_datagram() -> None:
    totals = Campaign()
    started = time.perf_counter()
    if WORKERS > 1:
        # One case per task, two processes: the 2-core CI box runs the campaign in half the time.
        with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
            for result in pool.imap_unordered(_run_case_index, range(len(CASES))):
                totals.merge(result)
    else:
        for index in range(len(CASES)):
            totals.merge(_run_case_index(index))
    _report(totals, time.perf_counter() - started)

    assert sum(totals.mutated.values()) >= REQUIRED_TOTAL
    assert all(totals.mutated[p] >= max(MUTANTS, REQUIRED_PER_PATH) for p in PATH_NAMES.values())
    for path in PATH_NAMES.values():
        reasons = totals.reasons[path]
        assert reasons, "fuzzing rejected nothing: the mutators are not mutating"
        assert set(reasons) <= ALLOWED_REASONS
        assert reasons["internal_error"] == 0
    # The campaign reaches deep: records decode from mutants, and every kind of framing
    # damage shows up under its own reason.
    assert totals.outcomes["records"] and totals.outcomes["held"] and totals.outcomes["template_sets"]
    assert {"truncated_header", "truncated_set", "truncated_record", "bad_template"} <= set(
        totals.reasons["fast"]
    )


# --------------------------------------------------------------------------- property test

_SET_IDS = (0, 1, 2, 3, 4, 255, 256, 257, 258, 259, 260, 262, 263, 265, 266, 1024, 3281, 45841, 53248)


@st.composite
def framed(draw: st.DrawFn) -> bytes:
    """A v9 or IPFIX header with plausible fields, then sets with consistent lengths."""
    version = draw(st.sampled_from((9, 10)))
    sets = draw(
        st.lists(
            st.tuples(st.sampled_from(_SET_IDS), st.binary(max_size=120)),
            max_size=4,
        )
    )
    body = b"".join(struct.pack("!HH", sid, 4 + len(b)) + b for sid, b in sets)
    domain = draw(st.sampled_from((0, 1, 42, 97, 147, 256)))
    seq = draw(st.integers(0, 0xFFFFFFFF))
    if version == 9:
        header = struct.pack("!HHIIII", 9, len(sets), 1000, 1_600_000_000, seq, domain)
    else:
        header = struct.pack("!HHIII", 10, 16 + len(body), 1_600_000_000, seq, domain)
    tail = draw(st.sampled_from((b"", b"\0", b"\0\0\0", b"\xff")))
    return header + body + tail


datagrams = st.one_of(
    st.binary(max_size=1500),
    st.builds(lambda v, b: struct.pack("!H", v) + b, st.sampled_from((5, 9, 10)), st.binary(max_size=1500)),
    framed(),
)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=st.sampled_from(CASES), data=datagrams)
def test_any_bytes_are_decoded_or_counted(case: Case, data: bytes) -> None:
    # Primed with a vendor case, so sets with that exporter's template ids reach the records.
    decoders = _primed(case, 1_000.0)
    check_datagram(decoders, data, 1_000.01)


def test_vendor_captures_pass_the_same_checks() -> None:
    # The unmutated corpus holds itself to the invariant the mutants are held to.
    for case in CASES:
        _primed(case, 1_000.0)
