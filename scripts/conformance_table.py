"""Write docs/conformance.md: each Logstash-codec vendor case and how our decoder does on it.

Usage: ``python scripts/conformance_table.py [--check] [--out PATH]``.  The comparison
itself lives in ``tests/vendor_cases.py`` (the test suite runs the same code); this only
renders it.  ``--check`` exits 1 when the committed file differs from what it would write,
which ``tests/test_conformance_vendors.py`` runs like a golden-file test.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "sidecar"))

from vendor_cases import (  # noqa: E402  (tests/ is not a package)
    CODEC_QUIRKS,
    DECODER_BUGS,
    MULTI_MESSAGE_FILES,
    CaseReport,
    Outcome,
    load_cases,
    report,
)

OUT = ROOT / "docs" / "conformance.md"

NOTES: dict[int, str] = {
    1: "Multi-packet file (see Deviations). Codec `last_switched` is 1 s late (codec quirk). Its "
    "`first_switched` 2015-06-21 is a bogus date: the record's first = 0xFFFFFFFF is above the header "
    "uptime 3381 ms (uptime wrap); we keep raw sysUpTime values and reproduce it through the codec's "
    "arithmetic. The v5 sampling mode bits are not kept (skipped).",
    2: "Header count 55582 (> 30): rejected as `bad_count` and counted; the spec only asserts no exception.",
    3: "Header count 163 (> 30): rejected as `bad_count` and counted; the spec only asserts no exception.",
    4: "softflowd v9: 6 IPv4 + 1 IPv6 flows.",
    5: "Event 0 is the options record in the template file, so the codec's event 1 is our first flow. "
    "MACs (void6) shown as `aa:bb:cc:dd:ee:ff`.",
    7: "ASA: `ingress_acl_id`/`egress_acl_id` (12 bytes) in the codec's `acl_id_asa` form "
    "(three dash-joined hex words); `event_time_msec`/`flow_start_msec` stay integers.",
    8: "Two exporters behind one address, told apart by v9 source id (our session domain): nProbe "
    "options template 259 and softflowd templates 1024/2048 do not collide. The nProbe set pads its "
    "49-byte record with non-zero `0d 00 01` (taken as padding on both paths).",
    9: "The spec only asserts no exception; we decode every set (2 flows + 1 options record) without "
    "an error, as tshark does.",
    10: "v9 options scope type 1 is our `scope_system` column. `flow_seq_num`/`@timestamp` skipped: "
    "an OptionsRecord carries no header.",
    11: "Multi-message file (see Deviations). Event 0 is the options record (`systemInitTimeMilliseconds`, "
    "an integer in the codec too).",
    12: "ASA: `conn_id` is flowId (148), `fwd_flow_delta_bytes` initiatorOctets (231).",
    13: "OpenBSD pflow: `flowStart/EndMilliseconds` compared as instants.",
    14: "Mikrotik v5: 30 records in one packet.",
    16: "ipt_NETFLOW reduced-size encoding (odd integer widths). Data sets for templates 259 (x5) and "
    "262 (x1), never described in this file, are held, not dropped, and count as template misses.",
    17: "H3C trap: template 3281 uses type 43 (ipv4RouterSc, an IPv4 address) with length 2 and a "
    "type-0 field of length 1; tshark gives up after the first set. We keep both as raw bytes and "
    "decode all 16 records. `forwarding_status` in the codec's `{status, reason}` form.",
    18: "v9 types 150/151 (flowStartSeconds/flowEndSeconds): the codec's v9 path leaves integers; "
    "compared as integers.",
    19: "Palo Alto: one flowset, then zero fill to the end of a large packet. `app_id` is v9 type 56701 "
    "(Palo Alto's id), a 32-byte NUL-padded string (`kerberos`); tshark shows it only as unknown bytes.",
    20: "H3C NetStream: a v9 template with a variable-length (65535) `VRFname`, empty here.",
    21: "Fortigate: applicationId with engine 20 (PANA-L7-PEN) is `20:12356:40568` for us, "
    "`20..12356..40568` in the codec.",
    22: "IXIA enterprise strings (PEN 3054), latitude/longitude floats.",
    26: "Barracuda enterprise fields (PEN 10704): `FW_Rule`, `ReasonText`, `BindIPv4Address` ...",
    28: "nProbe DPI: the capture's two string fields hold binary (codec quirk: we decode ''); the "
    "83-byte record is followed by a 17-byte non-zero tail, taken as padding. `host` skipped.",
    29: "Fortigate 5.2.1: options record (data256, event 0), then a flow (data257, event 1).",
    31: "Mikrotik IPFIX: 28 + 18 flows; set 259 ends in a non-zero 2-byte tail `6b ab` (padding). "
    "`ipNextHopIPv6Address` as compressed text (`ff02::1`).",
    32: "Netscaler variable-length strings (URL, cookie, user agent ...). `flowEndMicroseconds` is "
    "asserted at ns (`.000127768Z`) and at ms (`.000Z`) precision; `netscalerConnectionChainID` as hex. "
    "One data set (template 280, not in the template file) stays held.",
    34: "Juniper SRX: options template whose one scope field has length 0 (dropped); "
    "`sampling_algorithm` 2, `sampling_interval` 1 from the options record.",
    35: "0-length template fields carry nothing and give no column.",
    36: "ASR 9000: 19 options records (interface names, `if_desc`).",
    39: "ASR 9000 template 260: `egressVRFID`, `bgp_ipv4_next_hop`.",
    40: "NBAR options template: 15 options records, application id `1:13` with its name `ARGUS` "
    "(joined onto flows as application names).",
    41: "NBAR: applicationId `5:38`.",
    42: "WLC: applicationId `13:431`, station/AP MACs, `wlanSSID`.",
    43: "Templates only: no data, no events; the spec asserts nothing.",
    44: "The spec asserts nothing; we decode 29 flows.",
    45: "The spec asserts nothing; we decode 25 flows.",
    46: "Palo Alto PAN-OS: `app_id` (v9 type 56701) `incomplete`, `user_id` (56702).",
    48: "Barracuda: `firewallEvent`, `flowDurationMilliseconds`.",
    49: "YAF: RFC 5103 reverse elements (PEN 29305) and CERT's reverse ids (PEN 6871, id | 0x4000); "
    "the subTemplateMultiList stays bytes; options template 53248 gives event 2 (`flowTablePeakCount`).",
    50: "Data before any template: all 4 sets held, 0 events, as the codec (which drops them).",
    51: "Two spec runs replayed as one exporter: template caching (data, then templates) and "
    "`include_flowset_id` (templates, then data). The first data is held, then released by the "
    "templates (3 events); the second template copy adds nothing; the second data gives 3 more. "
    "Each assertion is checked in both steps. `flowset_id` is our template id.",
}


def _score(outcomes: list[Outcome]) -> str:
    if not outcomes:
        return "-"
    good = sum(1 for o in outcomes if o.status == "pass")
    quirks = sum(1 for o in outcomes if o.status == "quirk")
    skips = sum(1 for o in outcomes if o.status == "skip")
    text = f"{good}/{len(outcomes)}"
    extra = [f"{quirks} quirk" if quirks else "", f"{skips} skip" if skips else ""]
    extra = [e for e in extra if e]
    return text + (f" ({', '.join(extra)})" if extra else "")


def _counters(result: CaseReport) -> str:
    stats = result.run.decoder.stats
    parts = [f"{reason} {n}" for reason, n in sorted(stats.errors_by_reason().items())]
    held = result.run.decoder.held_sets
    if held:
        parts.append(f"held {held}")
    return ", ".join(parts) or "-"


def _codec_count(counts: tuple[int, ...]) -> str:
    if not counts:
        return "not asserted"
    return " + ".join(str(n) for n in counts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    """The whole of docs/conformance.md."""
    cases = load_cases()
    lines = [
        "# Conformance with the Logstash NetFlow codec's vendor captures",
        "",
        "<!-- Generated by scripts/conformance_table.py from tests/vendor_cases.py; do not edit. -->",
        "",
        "Every case of the codec's spec (`tests/data/vendors/expectations.json`, captures from real",
        "exporters) is replayed through our decoder as one exporter, `192.0.2.1:4444`, one `.dat` file",
        "per datagram, on both decoder paths. `tests/test_conformance_vendors.py` asserts what this",
        "table shows.",
        "",
        "* **Codec events**: events the codec produced per decode step; options records count, since",
        "  the codec emits them as events. Ours are flow records + options records (we return options",
        "  apart, in `Decoded.options`, and join them onto flows). Per datagram the events are its",
        "  options records, then its flow records in wire order.",
        "* **Assertions**: the spec's `expect(...).to eq` checks, mapped to our information elements",
        "  (`tests/codec_names.py`) and compared in the codec's value form. **JSON fields**: every",
        "  field of the spec's full expected events, the same way. *quirk*: the codec's value is",
        "  wrong and ours is asserted instead (see Deviations); *skip*: nothing of ours to compare.",
        "* **Decoder counters**: what the decoder counted by reason, and data sets still held",
        "  (waiting for a template) at the end.",
        "",
        "| Case | Files | Codec events | Our flows + options | Assertions fast | Assertions reference "
        "| JSON fields | Decoder counters | Notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    totals: Counter[str] = Counter()
    for case in cases:
        fast = report(case, fast_path=True)
        ref = report(case, fast_path=False)
        for result in (fast, ref):
            key = "fast" if result.fast_path else "reference"
            totals[f"{key} checked"] += len(result.assertions)
            totals[f"{key} passed"] += sum(1 for o in result.assertions if o.ok)
            totals[f"{key} json checked"] += len(result.json)
            totals[f"{key} json ok"] += sum(1 for o in result.json if o.ok)
            totals[f"{key} count ok"] += not result.count_problems
        files = "<br>".join(f"`{f}`" for f in case.files)
        ours = f"{fast.flows} + {fast.options}"
        if (ref.flows, ref.options) != (fast.flows, fast.options):
            ours += f" (reference {ref.flows} + {ref.options})"
        if fast.count_problems or ref.count_problems:
            ours += " **count mismatch**"
        steps = len(fast.codec_events)
        checked = _score(fast.assertions) + (f" ({len(case.checks)} x {steps} steps)" if steps > 1 else "")
        checked_ref = _score(ref.assertions) + (f" ({len(case.checks)} x {steps} steps)" if steps > 1 else "")
        note = NOTES.get(case.context, "")
        bugs = [b for b in DECODER_BUGS if b.context == case.context]
        if bugs:
            note += " **Decoder bug (xfail):** " + "; ".join(b.summary for b in bugs)
        lines.append(
            "| "
            + " | ".join(
                _cell(x)
                for x in (
                    f"{case.context}. {case.name}",
                    files,
                    _codec_count(case.expected_count),
                    ours,
                    checked,
                    checked_ref,
                    _score(fast.json),
                    _counters(fast),
                    note,
                )
            )
            + " |"
        )
    lines += [
        "",
        f"Totals: fast path {totals['fast passed']}/{totals['fast checked']} assertions, "
        f"{totals['fast json ok']}/{totals['fast json checked']} JSON fields, "
        f"{totals['fast count ok']}/{len(cases)} counts; reference path "
        f"{totals['reference passed']}/{totals['reference checked']} assertions, "
        f"{totals['reference json ok']}/{totals['reference json checked']} JSON fields, "
        f"{totals['reference count ok']}/{len(cases)} counts "
        f"(a quirk or a skip counts as ok; the {sum(len(c.checks) for c in cases)} assertions of the "
        f"spec make {totals['fast checked']} checks because case 51's are checked in each of its 2 steps).",
        "",
        "## Deviations",
        "",
        "### Files holding several packets",
        "",
    ]
    for name, multi in MULTI_MESSAGE_FILES.items():
        lines.append(f"* `{name}`: {multi.note}")
    lines += [
        "",
        "### Codec quirks (codec value wrong, ours asserted)",
        "",
        "| Case | Event | Field | Codec | Ours | Why |",
        "|---|---|---|---|---|---|",
    ]
    by_context = {c.context: c for c in cases}
    for q in CODEC_QUIRKS:
        expected = next(
            (
                o.expected
                for o in report(by_context[q.context], fast_path=True).json
                if (o.index, o.field) == (q.index, q.field)
            ),
            None,
        )
        lines.append(
            "| "
            + " | ".join(
                _cell(x)
                for x in (
                    str(q.context),
                    str(q.index),
                    f"`{q.field}`",
                    f"`{expected!r}`",
                    f"`{q.ours!r}`",
                    q.reason,
                )
            )
            + " |"
        )
    lines += [
        "",
        "### Decoder bugs",
        "",
    ]
    if DECODER_BUGS:
        for bug in DECODER_BUGS:
            path = {True: "fast path", False: "reference path", None: "both paths"}[bug.fast_path]
            lines.append(f"* Case {bug.context}, {path}: {bug.summary}. Evidence: {bug.evidence}.")
    else:
        lines += [
            "None open. One was found by this comparison (and by the fuzz differential) and fixed in 7d327ed: the reference path",
            "dropped a data set whose tail, shorter than a record, was not all zero (cases 8, 28, 31).",
        ]
    lines += [
        "",
        "### How values are compared",
        "",
        "* Addresses: IPv4 (uint32) as dotted quad, IPv6 (void16) as compressed text, MAC (void6) as",
        "  `aa:bb:cc:dd:ee:ff`; other octet arrays as lowercase hex. Strings as decoded (we cut at the",
        "  first NUL, the codec trims trailing NULs).",
        "* applicationId: ours `engine:selector` (`20:pen:selector` for engine 20), the codec's",
        "  `engine..selector`.",
        "* Times the codec turns into ISO text are compared as instants at the precision the text",
        "  states: dateTimeSeconds/Milliseconds columns (integers) and our ns-since-epoch",
        "  dateTimeMicroseconds/Nanoseconds columns directly; v5/v9 `*_switched` (sysUpTime ms) through",
        "  the codec's arithmetic: v5 `export time - (uptime - value)`, v9 `(export secs + 1 s) -",
        "  (uptime - value)` (the codec anchors v9 at the end of the export second). `@timestamp` is",
        "  the header export time (v5 with its nanoseconds).",
        "* The spec's `#{nanos}` placeholder (filled with the ns digits on Logstash versions that keep",
        "  them, with nothing otherwise) is checked with nothing filled in, i.e. at millisecond",
        "  precision; case 32 asserts the ns form spelled out. The v5 `#{micros}` placeholders",
        "  (cases 1 and 14) arrive filled in with milliseconds.",
        "* Header fields: `version`, `flowset_id` (our template id), `flow_seq_num` (batch sequence),",
        "  v5 `engine_type`/`engine_id` (our domain), `flow_records` (a v5 batch is one packet),",
        "  `sampling_interval` (session sampling default, set only when > 1). An OptionsRecord has no",
        "  header sequence or export time, so those fields are skipped for options events, as are",
        "  `@version` and `host` (Logstash metadata) and v5 sampling mode bits (not kept).",
        "* Held data sets are released as each template is learned, grouped by template id; events",
        "  are put back in wire order by (sequence, set offset) before the codec's indices apply",
        "  (case 51: 258, 257, 258).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Write the table, or with ``--check`` report whether the committed one is current."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is not current")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run python scripts/conformance_table.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"{args.out}: {len(load_cases())} cases")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
