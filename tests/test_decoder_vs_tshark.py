"""Real exporter: softflowd exports of a packet capture, decoded by us and by tshark,
agree record for record (addresses, ports, protocol, bytes, packets, times).

Both decoder paths (numpy and reference) are checked.  Sampled exports: the raw counters
equal tshark's, and the ECS counters are renormalized by the rate the options data gave.
"""

from __future__ import annotations

from typing import Any

import pytest

from exports import SPECS, Run, export
from tunnelhound.decode.decoder import Decoder
from tunnelhound.model import Datagram
from tunnelhound.normalize.ecs import Normalizer

pytestmark = pytest.mark.real_exporter
__all__ = ["export"]

_ICMP = ("icmp", "ipv6-icmp")


def our_records(run: Run, fast_path: bool) -> tuple[list[dict[str, Any]], Decoder]:
    decoder = Decoder(fast_path=fast_path)
    normalizer = Normalizer()
    docs: list[dict[str, Any]] = []
    for data, arrived in run.datagrams:
        for batch in decoder.decode(Datagram(data, "127.0.0.1", 9995, arrived)).flows:
            docs.extend(normalizer.normalize(batch))
    return docs, decoder


def as_oracle(doc: dict[str, Any]) -> dict[str, Any]:
    """Our document in tshark_flows' terms (raw counters, v5-style ICMP ports, ms times)."""
    nf = doc["netflow"]
    src, dst = doc["source"], doc["destination"]
    if doc["network"]["transport"] in _ICMP:
        icmp = doc["tunnelhound"].get("icmp") or doc["tunnelhound"]["icmpv6"]
        sport, dport = 0, icmp["type"] * 256 + icmp["code"]
    else:
        sport, dport = src["port"], dst["port"]
    out = {
        "src_addr": src["ip"],
        "dst_addr": dst["ip"],
        "src_port": sport,
        "dst_port": dport,
        "protocol": int(doc["network"]["iana_number"]),
        "octets": nf["octet_delta_count"],
        "packets": nf["packet_delta_count"],
        "start_ms": _ms(doc["event"]["start"]),
        "end_ms": _ms(doc["event"]["end"]),
    }
    if "reverse_octet_delta_count" in nf:
        out["rev_octets"] = nf["reverse_octet_delta_count"]
        out["rev_packets"] = nf["reverse_packet_delta_count"]
    return out


def _ms(iso: str) -> int:
    from datetime import datetime

    return round(datetime.fromisoformat(iso).timestamp() * 1000)


KEYS = ("src_addr", "dst_addr", "src_port", "dst_port", "protocol", "octets", "packets", "start_ms", "end_ms")


@pytest.mark.parametrize("fast_path", [True, False], ids=["numpy", "reference"])
@pytest.mark.parametrize("name", list(SPECS))
def test_records_agree_with_tshark(export: Any, name: str, fast_path: bool) -> None:
    run = export(name)
    docs, decoder = our_records(run, fast_path)
    assert decoder.stats.error_count() == 0, decoder.stats.errors
    assert len(docs) == len(run.flows) == run.summary["records_exported"] - _options_records(run)
    keys = KEYS + (("rev_octets", "rev_packets") if run.spec.biflow else ())
    for ours, theirs in zip(docs, run.flows, strict=True):
        mine = as_oracle(ours)
        assert {k: mine[k] for k in keys} == {k: theirs[k] for k in keys}


@pytest.mark.parametrize("name", ["v9_sampled", "v10_sampled"])
def test_sampled_counters_are_renormalized(export: Any, name: str) -> None:
    run = export(name)
    docs, _ = our_records(run, True)
    assert docs
    for doc in docs:
        nf = doc["netflow"]
        assert doc["tunnelhound"]["sampling_rate"] == 10.0
        assert doc["source"]["packets"] == nf["packet_delta_count"] * 10
        assert doc["source"]["bytes"] == nf["octet_delta_count"] * 10


def test_v5_header_sampling_is_applied(export: Any) -> None:
    run = export("v5")
    docs, _ = our_records(run, True)
    assert all("sampling_rate" not in d["tunnelhound"] for d in docs)


def test_sequence_numbers_show_no_loss(export: Any) -> None:
    for name in ("v5", "v9", "v10"):
        _, decoder = our_records(export(name), True)
        assert sum(decoder.stats.sequence_lost.values()) == 0, name


def _options_records(run: Run) -> int:
    # softflowd's "records exported" counts the options records it sends with v9/IPFIX.
    return run.summary["records_exported"] - len(run.flows)
