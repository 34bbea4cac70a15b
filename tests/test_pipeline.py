"""The pipeline: state persistence and the exporter allowlist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from replay import DATA
from tunnelhound.config import Config, InputsConfig
from tunnelhound.model import Datagram
from tunnelhound.normalize.frame import FlowFrame
from tunnelhound.pipeline import STATE_FILE, FlowPipeline


class ListSink:
    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.closed = False

    def write_frame(self, frame: FlowFrame) -> None:
        self.docs.extend(frame.documents())

    def close(self) -> None:
        self.closed = True


def dat(name: str, ip: str = "192.0.2.1") -> Datagram:
    return Datagram((DATA / "vendors" / "dat" / name).read_bytes(), ip, 4444, 0.0)


def test_templates_and_options_survive_a_restart(tmp_path: Path) -> None:
    first = FlowPipeline(Config(), ListSink(), state_dir=tmp_path)
    assert not first.restored
    first.process(
        [dat("netflow9_test_cisco_nbar_opttpl260.dat"), dat("netflow9_test_cisco_asr9k_tpl260.dat")]
    )
    first.close()
    assert (tmp_path / STATE_FILE).exists()

    sink = ListSink()
    second = FlowPipeline(Config(), sink, state_dir=tmp_path)
    assert second.restored
    assert second.sessions.template_count("192.0.2.1") == first.sessions.template_count("192.0.2.1") > 0
    opts = second.sessions.options(second.sessions.key("192.0.2.1", 4444, 9, 0))
    assert len(opts.application_names) == len(
        first.sessions.options(first.sessions.key("192.0.2.1", 4444, 9, 0)).application_names
    )
    second.process([dat("netflow9_test_cisco_asr9k_data260.dat")])
    second.close()
    assert second.counts.records == 21 and sink.closed


def test_exporters_outside_the_allowlist_are_dropped_and_counted(tmp_path: Path) -> None:
    config = Config(inputs=InputsConfig(allowed_exporters=("192.0.2.0/24",)))
    sink = ListSink()
    pipeline = FlowPipeline(config, sink, state_dir=tmp_path)
    pipeline.process([dat("netflow5.dat", "198.51.100.9"), dat("netflow5.dat", "192.0.2.77")])
    pipeline.close()
    assert pipeline.counts.rejected_exporters == 1
    assert pipeline.counts.records == 30
    assert {d["observer"]["ip"] for d in sink.docs} == {"192.0.2.77"}


def test_normalize_many_merges_sets_and_keeps_record_ids() -> None:
    from replay import documents
    from tunnelhound.decode.decoder import Decoder
    from tunnelhound.normalize.ecs import Normalizer
    from tunnelhound.sources.files import iter_replay

    decoder, normalizer = Decoder(), Normalizer()
    batches = [
        b for dg in iter_replay([str(DATA / "lab" / "netflow_v9.pcap")]) for b in decoder.decode(dg).flows
    ]
    merged = normalizer.normalize_many(batches)
    one_by_one = documents([DATA / "lab" / "netflow_v9.pcap"])
    assert len(batches) > 100 and len(merged) == len(one_by_one) == 3375

    def key(d: dict[str, Any]) -> str:
        return str(d["event"]["id"])

    def strip(d: dict[str, Any]) -> dict[str, Any]:
        # event.created is the wall clock of the normalize call.
        return {**d, "event": {k: v for k, v in d["event"].items() if k != "created"}}

    assert sorted(map(strip, merged), key=key) == sorted(map(strip, one_by_one), key=key)


def test_fan_out_writes_every_sink_and_closes_all_even_when_one_fails(tmp_path: Path) -> None:
    from tunnelhound.pipeline import FanOut

    class FailingClose(ListSink):
        def close(self) -> None:
            super().close()
            raise OSError("disk gone")

    first, second = FailingClose(), ListSink()
    pipeline = FlowPipeline(Config(), FanOut([first, second]), state_dir=tmp_path)
    pipeline.process([dat("netflow5.dat")])
    try:
        pipeline.close()
    except OSError as exc:
        assert str(exc) == "disk gone"
    else:
        raise AssertionError("the failing sink's error must surface")
    assert first.docs == second.docs and len(second.docs) > 0
    assert first.closed and second.closed


def test_no_sink_enabled_is_a_config_error() -> None:
    import pytest

    from tunnelhound.config import OutputConfig
    from tunnelhound.errors import ConfigError
    from tunnelhound.pipeline import open_sinks

    with pytest.raises(ConfigError, match="output: no sink enabled"):
        open_sinks(Config(output=OutputConfig(ndjson_enabled=False)))
