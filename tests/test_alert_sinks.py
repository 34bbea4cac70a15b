"""The alert fan-out and ``open_alert_sinks``: NDJSON alert files beside the flows, stdout,
a configuration from YAML driving NDJSON + syslog (UDP) + webhook together, counters, and the
one-line errors of sinks that cannot work as configured."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from sample_alerts import make_alert
from tunnelhound.config import AlertsConfig, Config, NdjsonOutputConfig, load_config
from tunnelhound.errors import ConfigError
from tunnelhound.sinks.alert_ndjson import NdjsonAlertSink
from tunnelhound.sinks.alerts import AlertFanOut, open_alert_sinks
from tunnelhound.sinks.ndjson import NdjsonSink


def read_lines(directory: Path, pattern: str) -> list[Any]:
    return [
        orjson.loads(line)
        for path in sorted(directory.glob(pattern))
        for line in path.read_bytes().splitlines()
    ]


def test_ndjson_alert_files_beside_flows(tmp_path: Path) -> None:
    config = Config(alerts=AlertsConfig(ndjson_enabled=True, ndjson=NdjsonOutputConfig(path=str(tmp_path))))
    sinks = open_alert_sinks(config)
    alerts = [make_alert(rule, seq=i) for i, rule in enumerate(("port_scan", "beacon", "dns_tunnel"))]
    sinks.write_alerts(alerts[:2])
    sinks.write_alerts([])
    sinks.write_alerts(alerts[2:])
    # Written at once (local and synchronous), visible as .part until closed.
    assert len(list(tmp_path.glob("alerts-*.ndjson.part"))) == 1
    sinks.close()
    assert [p.name.startswith("alerts-") for p in tmp_path.iterdir()] == [True]
    assert read_lines(tmp_path, "alerts-*.ndjson") == alerts
    assert sinks.stats() == {"ndjson_sent": 3, "ndjson_failed": 0, "ndjson_dropped": 0, "ndjson_retried": 0}


def test_ndjson_alerts_to_stdout(capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    sink = NdjsonAlertSink(NdjsonSink("-", prefix="alerts"))
    alerts = [make_alert(seq=1), make_alert("beacon", seq=2)]
    sink.write_alerts(alerts)
    sink.close()
    out = capfdbinary.readouterr().out
    assert [orjson.loads(line) for line in out.splitlines()] == alerts


def test_ndjson_write_error_is_counted(tmp_path: Path) -> None:
    sink = NdjsonAlertSink(NdjsonSink(str(tmp_path), prefix="alerts"))
    bad = make_alert()
    bad["tunnelhound"]["alert"]["evidence"]["flow_count"] = {1, 2}  # a set: not JSON
    sink.write_alerts([bad])
    sink.write_alerts([make_alert()])
    sink.close()
    assert sink.stats() == {"sent": 1, "failed": 1, "dropped": 0, "retried": 0}


class _Hook(http.server.BaseHTTPRequestHandler):
    bodies: list[Any]

    def do_POST(self) -> None:
        self.bodies.append(orjson.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[tuple[str, list[Any]]]:
    bodies: list[Any] = []
    handler = type("Hook", (_Hook,), {"bodies": bodies})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", bodies
    server.shutdown()
    server.server_close()


def test_yaml_config_fans_out_to_every_sink(tmp_path: Path, hook: tuple[str, list[Any]]) -> None:
    hook_url, bodies = hook
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(10)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
state_dir: {tmp_path / "state"}
alerts:
  ndjson_enabled: true
  ndjson: {{path: {tmp_path / "out"}}}
  syslog: {{address: "127.0.0.1:{udp.getsockname()[1]}", transport: udp, hostname: sensor}}
  webhook: {{url: "{hook_url}", headers: ["X-Source: tunnelhound"]}}
  delivery: {{backoff_initial: 0.05, backoff_max: 0.2}}
""",
        encoding="utf-8",
    )
    sinks = open_alert_sinks(load_config(path))
    assert [s.name for s in sinks.sinks] == ["ndjson", "syslog", "webhook"]
    alerts = [make_alert(seq=i) for i in range(3)]
    sinks.write_alerts(alerts)
    datagrams = [udp.recv(65535) for _ in alerts]
    udp.close()
    sinks.close()
    assert read_lines(tmp_path / "out", "alerts-*.ndjson") == alerts
    assert [orjson.loads(d.split(b"] ", 1)[1]) for d in datagrams] == alerts
    assert bodies == alerts
    stats = sinks.stats()
    assert {k: v for k, v in stats.items() if k.endswith("_sent")} == {
        "ndjson_sent": 3,
        "syslog_sent": 3,
        "webhook_sent": 3,
    }
    assert sum(v for k, v in stats.items() if not k.endswith("_sent")) == 0


def test_no_sink_configured_is_an_empty_fan_out() -> None:
    sinks = open_alert_sinks(Config())
    sinks.write_alerts([make_alert()])
    sinks.close()
    assert sinks.sinks == [] and sinks.stats() == {}


class _Broken:
    """A sink with a bug: the fan-out must keep serving the others."""

    name = "broken"

    def write_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        raise RuntimeError("bug")

    def close(self) -> None:
        raise RuntimeError("bug")

    def stats(self) -> dict[str, int]:
        return {"sent": 0}


def test_one_broken_sink_does_not_stop_the_others(tmp_path: Path) -> None:
    good = NdjsonAlertSink(NdjsonSink(str(tmp_path), prefix="alerts"))
    fan = AlertFanOut([_Broken(), good])
    fan.write_alerts([make_alert()])
    fan.close()
    assert read_lines(tmp_path, "alerts-*.ndjson") == [make_alert()]
    assert fan.stats()["ndjson_sent"] == 1


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            "alerts: {smtp: {host: mail.example}}",
            "config error: alerts.smtp.to: at least one recipient is needed when alerts.smtp.host is set",
        ),
        (
            "alerts: {smtp: {host: mail.example, to: [a@b], username: u, password_env: TH_TEST_UNSET_PW}}",
            "config error: alerts.smtp.password_env: $TH_TEST_UNSET_PW is not set but username is",
        ),
        (
            "alerts: {syslog: {address: 'siem.example', transport: tcp}}",
            'config error: alerts.syslog.address: "siem.example" is not allowed; expected empty, or host:port '
            "with port 1..65535",
        ),
        (
            "alerts: {syslog: {address: '127.0.0.1:6514', transport: tls, ca_certs: /nonexistent/ca.pem}}",
            "config error: alerts.syslog: cannot load TLS files: [Errno 2] No such file or directory",
        ),
        (
            "alerts: {webhook: {url: 'ftp://x'}}",
            'config error: alerts.webhook.url: "ftp://x" is not allowed; expected empty, or an http:// or https:// URL',
        ),
        (
            "alerts: {webhook: {url: 'http://127.0.0.1:1/', headers: ['no colon']}}",
            'config error: alerts.webhook.headers[0]: "no colon" is not allowed; expected "Name: value" on one line',
        ),
        (
            "alerts: {delivery: {backoff_initial: 5, backoff_max: 1}, webhook: {url: 'http://127.0.0.1:1/'}}",
            "config error: alerts.delivery.backoff_initial: must not exceed backoff_max",
        ),
        (
            "alerts: {syslog: {transport: relp}}",
            'config error: alerts.syslog.transport: "relp" is not allowed; expected one of "udp", "tcp", "tls"',
        ),
    ],
)
def test_config_errors(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        open_alert_sinks(load_config(path))
    assert str(info.value).startswith(message)
