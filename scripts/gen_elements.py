#!/usr/bin/env python3
"""Generate the decoder's information-element table.

Reads ``tests/data/definitions/`` (the IANA IPFIX registry CSV, the Logstash
NetFlow codec's ``ipfix.yaml``/``netflow.yaml`` and our ``vendor-elements.tsv``) and writes
``sidecar/tunnelhound/data/elements.json``: compact, sorted keys, so the same
inputs always give the same bytes.

Usage: ``python scripts/gen_elements.py [--check]``; ``--check`` writes nothing
and exits 1 when the committed JSON differs from what would be generated.

Rules, in the order names are claimed (earlier wins a clash):

1. IANA (PEN 0): the registry CSV for the ids it has; ``ipfix.yaml`` PEN 0 only
   for ids the CSV snapshot lacks. Element 95 applicationId is typed
   ``applicationId`` so the decoder formats it as engine:selector.
2. NetFlow v9 field types IANA never assigned, from ``netflow.yaml``. v9 ids IANA
   has are the IANA elements (the decoder adds those at load time).
3. PEN 29305 (RFC 5103 reverse elements): ``reverse_<IANA name>`` with the IANA
   type, as RFC 5103 gives a reverse element its forward element's type.
4. Every other PEN in ``ipfix.yaml``, by PEN then id.
5. ``vendor-elements.tsv``: enterprise elements the codec lacks (SonicWALL, PEN 8741), with
   final names and IANA types as written there; an id another file defines, a clash or an
   unknown type is an error.

A clash after snake-casing gets ``_<PEN>`` (``_v9`` for v9-only ids) appended,
then ``_<PEN>_<id>``, so every element has a unique name.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path
from typing import NamedTuple

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = ROOT / "tests" / "data" / "definitions"
OUTPUT = ROOT / "sidecar" / "tunnelhound" / "data" / "elements.json"

# One snake_case implementation for the generator and the runtime.
sys.path.insert(0, str(ROOT / "sidecar"))
from tunnelhound.decode.elements import ELEMENT_TYPES, snake_case  # noqa: E402

IANA_PEN = 0
REVERSE_PEN = 29305  # RFC 5103


# IANA types we deliberately override.
IANA_TYPE_OVERRIDES = {95: "applicationId"}  # octetArray in IANA; RFC 6759 gives it structure

# Codec type words other than :uintN/:intN; anything unlisted (:octetarray,
# :skip, :acl_id_asa, mpls_label_stack_octets) is opaque bytes.
_YAML_TYPES = {
    "string": "string",
    "ip4_addr": "ipv4Address",
    "ip6_addr": "ipv6Address",
    "mac_addr": "macAddress",
    "double": "float64",
    "float": "float32",
    "application_id": "applicationId",
    # Cisco v9 forwarding status: 2 bits status + 6 bits reason code in one byte.
    "forwarding_status": "unsigned8",
}
# netflow.yaml gives some v9 types as a byte length instead of a type.
_LENGTH_TYPES = {1: "unsigned8", 2: "unsigned16", 4: "unsigned32", 8: "unsigned64"}
_INT_RE = re.compile(r"(u?)int(\d+)")


class Definition(NamedTuple):
    """One element before naming: where it came from, its source name and its type."""

    pen: int
    eid: int
    source_name: str  # name as spelled in the source file (camelCase or snake_case)
    type: str


def yaml_type(raw: object) -> str:
    """Map a Logstash codec type (``:uint24``, ``:ip4_addr``, a byte length...) to an IANA abstract type."""
    if isinstance(raw, int):
        return _LENGTH_TYPES.get(raw, "octetArray")
    word = str(raw).lstrip(":")
    match = _INT_RE.fullmatch(word)
    if match:
        bits = int(match[2])
        # Odd widths (uint15, uint24) round up to the next integer the wire can carry.
        width = next((w for w in (8, 16, 32, 64) if bits <= w), None)
        if width is None:
            return "octetArray"
        return f"{'unsigned' if match[1] else 'signed'}{width}"
    return _YAML_TYPES.get(word, "octetArray")


def _entry_name(entry: object) -> str | None:
    # Entries are [type, name]; a bare [:skip] has no name. A few names lack
    # the leading colon (egress_acl_id, TrafficType).
    if not isinstance(entry, list) or len(entry) < 2:
        return None
    return str(entry[1]).lstrip(":")


def read_iana_csv(path: Path) -> dict[int, Definition]:
    """Assigned elements from the IANA registry CSV, keyed by id."""
    out: dict[int, Definition] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            eid_text = row["ElementID"].strip()
            name = row["Name"].strip()
            typ = row["Data Type"].strip()
            # Ranges ("34-35", "403-32767"), Reserved/Unassigned/"Assigned for
            # NetFlow v9 compatibility" rows and deprecated rows stripped of
            # their name carry no element; deprecated rows that keep a name
            # and type stay, since old exporters still send them.
            if not eid_text.isdigit() or not name or not typ or " " in name:
                continue
            if name.startswith(("Reserved", "Unassigned", "Assigned")):
                continue
            eid = int(eid_text)
            out[eid] = Definition(IANA_PEN, eid, name, IANA_TYPE_OVERRIDES.get(eid, typ))
    return out


def read_vendor_tsv(path: Path) -> list[Definition]:
    """``<PEN><TAB><id><TAB><IANA type><TAB><name>`` lines; ``#`` starts a comment line."""
    out: list[Definition] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 4 or not fields[0].isdigit() or not fields[1].isdigit():
            raise SystemExit(f"{path.name}:{number}: expected PEN, id, type and name, got {line!r}")
        pen, eid, typ, name = int(fields[0]), int(fields[1]), fields[2], fields[3]
        if typ not in ELEMENT_TYPES or snake_case(name) != name:
            raise SystemExit(f"{path.name}:{number}: bad type {typ!r} or name {name!r}")
        out.append(Definition(pen, eid, name, typ))
    return out


def build(definitions: Path) -> tuple[dict[str, object], list[str]]:
    """Build the JSON document from the definition files; also return the clash renames."""
    iana = read_iana_csv(definitions / "iana-ipfix-information-elements.csv")
    with (definitions / "ipfix.yaml").open(encoding="utf-8") as fh:
        ipfix_yaml: dict[int, dict[int, list[object]]] = yaml.safe_load(fh)
    with (definitions / "netflow.yaml").open(encoding="utf-8") as fh:
        netflow_yaml: dict[int, list[object]] = yaml.safe_load(fh)

    # IANA ids the CSV snapshot lacks (v9-compatibility ids 34-104, ids > 402).
    for eid, entry in sorted(ipfix_yaml.get(IANA_PEN, {}).items()):
        name = _entry_name(entry)
        if eid not in iana and name:
            iana[eid] = Definition(IANA_PEN, eid, name, IANA_TYPE_OVERRIDES.get(eid, yaml_type(entry[0])))

    v9_only: list[Definition] = []
    for eid, entry in sorted(netflow_yaml.items()):
        name = _entry_name(entry)
        if eid not in iana and name:
            v9_only.append(Definition(IANA_PEN, eid, name, yaml_type(entry[0])))

    taken: set[str] = set()
    renamed: list[str] = []

    def claim(d: Definition, base: str, tag: str) -> str:
        for candidate in (base, f"{base}_{tag}", f"{base}_{tag}_{d.eid}"):
            if candidate not in taken:
                taken.add(candidate)
                if candidate != base:
                    renamed.append(f"({d.pen}, {d.eid}) {d.source_name}: {base} -> {candidate}")
                return candidate
        raise SystemExit(f"cannot name ({d.pen}, {d.eid}) {d.source_name}: {base}")

    ipfix_out: dict[int, dict[int, tuple[str, str]]] = {IANA_PEN: {}}
    for d in sorted(iana.values()):
        ipfix_out[IANA_PEN][d.eid] = (claim(d, snake_case(d.source_name), str(d.pen)), d.type)

    v9_out: dict[int, tuple[str, str]] = {}
    for d in v9_only:
        v9_out[d.eid] = (claim(d, snake_case(d.source_name), "v9"), d.type)

    enterprise: list[Definition] = []
    for pen, by_id in ipfix_yaml.items():
        for eid, entry in by_id.items():
            name = _entry_name(entry)
            # Nameless 29305 entries (reverse basicList & co.) still get their IANA-derived name.
            if pen != IANA_PEN and (name or (pen == REVERSE_PEN and eid in iana)):
                enterprise.append(Definition(pen, eid, name or "", yaml_type(entry[0])))
    # Reverse elements claim names before other vendors: they are standard and
    # appear in every biflow exporter (YAF, IXIA...).
    enterprise.sort(key=lambda d: (d.pen != REVERSE_PEN, d.pen, d.eid))
    for d in enterprise:
        if d.pen == REVERSE_PEN and d.eid in iana:
            forward = ipfix_out[IANA_PEN][d.eid]
            entry_name, entry_type = f"reverse_{forward[0]}", forward[1]
        else:
            entry_name, entry_type = snake_case(d.source_name), d.type
        ipfix_out.setdefault(d.pen, {})[d.eid] = (claim(d, entry_name, str(d.pen)), entry_type)

    for d in read_vendor_tsv(definitions / "vendor-elements.tsv"):
        if d.eid in ipfix_out.get(d.pen, {}) or d.source_name in taken:
            raise SystemExit(f"vendor-elements.tsv: ({d.pen}, {d.eid}) {d.source_name} is defined twice")
        taken.add(d.source_name)
        ipfix_out.setdefault(d.pen, {})[d.eid] = (d.source_name, d.type)

    for table in [*ipfix_out.values(), v9_out]:
        for eid, (_, typ) in table.items():
            if typ not in ELEMENT_TYPES:
                raise SystemExit(f"element {eid}: unknown type {typ!r}")

    document: dict[str, object] = {
        "generated_by": "scripts/gen_elements.py from tests/data/definitions/; do not edit",
        "ipfix": {
            str(pen): {str(eid): list(v) for eid, v in by_id.items()} for pen, by_id in ipfix_out.items()
        },
        "v9": {str(eid): list(v) for eid, v in v9_out.items()},
    }
    return document, renamed


def render(document: dict[str, object]) -> bytes:
    """Serialise deterministically: sorted keys, no whitespace, trailing newline."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return (text + "\n").encode("ascii")


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, verify) the committed element table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is stale")
    args = parser.parse_args(argv)

    document, renamed = build(DEFINITIONS)
    data = render(document)
    current = OUTPUT.read_bytes() if OUTPUT.exists() else None
    if args.check:
        if current != data:
            print(f"{OUTPUT.relative_to(ROOT)} is stale; run python scripts/gen_elements.py", file=sys.stderr)
            return 1
        return 0
    action = "unchanged"
    if current != data:
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        OUTPUT.write_bytes(data)
        action = "wrote"
    for line in renamed:
        print(f"name clash: {line}")
    ipfix = document["ipfix"]
    assert isinstance(ipfix, dict)
    counts = ", ".join(
        f"{pen}: {len(by_id)}" for pen, by_id in sorted(ipfix.items(), key=lambda kv: int(kv[0]))
    )
    v9 = document["v9"]
    assert isinstance(v9, dict)
    print(f"{action} {OUTPUT.relative_to(ROOT)}: elements per PEN {{{counts}}}, v9-only {len(v9)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
