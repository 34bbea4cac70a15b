"""The alert sinks a configuration asks for, behind one :class:`AlertFanOut`.

``open_alert_sinks(config)`` reads the ``alerts:`` section and opens, in this order: NDJSON
files, the Elasticsearch alert stream, syslog, webhook, e-mail; then Zeek
(``zeek.publish_detections``).  Adding a sink: a module with a
class following :class:`~tunnelhound.sinks.alertsink.AlertSink`, a config dataclass on
:class:`~tunnelhound.config.AlertsConfig`, and one ``_open_*`` function registered below.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tunnelhound.config import AlertsConfig, Config, SmtpRouteConfig, parse_host_port
from tunnelhound.errors import ConfigError
from tunnelhound.sinks.alert_elasticsearch import ElasticsearchAlertSink
from tunnelhound.sinks.alert_ndjson import NdjsonAlertSink
from tunnelhound.sinks.alertsink import AlertSink, SinkStats
from tunnelhound.sinks.delivery import DeliveryPolicy
from tunnelhound.sinks.elasticsearch import ElasticsearchSink
from tunnelhound.sinks.ndjson import NdjsonSink
from tunnelhound.sinks.smtp import Route, SmtpServer, SmtpSink
from tunnelhound.sinks.syslog import SyslogSink
from tunnelhound.sinks.tls import tls_context
from tunnelhound.sinks.webhook import WebhookSink
from tunnelhound.sinks.zeek import ZeekAlertSink
from tunnelhound.zeek.connect import open_transport
from tunnelhound.zeek.transport import Transport

__all__ = ["AlertFanOut", "AlertSink", "SinkStats", "open_alert_sinks"]

log = logging.getLogger(__name__)


class AlertFanOut:
    """Several alert sinks behind one: every batch goes to each."""

    name = "alerts"

    def __init__(self, sinks: Sequence[AlertSink]) -> None:
        self.sinks = list(sinks)

    def write_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Give the alerts to every sink; one sink's bug does not keep them from the others."""
        if not alerts:
            return
        for sink in self.sinks:
            try:
                sink.write_alerts(alerts)
            except Exception:
                log.exception("alert sink %s failed on %d alerts", sink.name, len(alerts))

    def close(self) -> None:
        """Close every sink (each bounded in time), even when one fails."""
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("alert sink %s failed to close", sink.name)

    def stats(self) -> dict[str, int]:
        """Every sink's counters as ``<sink>_<counter>`` (``syslog_sent``, ``smtp_rate_limited``)."""
        return {f"{sink.name}_{key}": value for sink in self.sinks for key, value in sink.stats().items()}


def open_alert_sinks(config: Config, *, zeek_transport: Transport | None = None) -> AlertFanOut:
    """Open the alert sinks enabled in ``config.alerts`` (none enabled: an empty fan-out).

    ``zeek_transport``: a transport to Zeek the caller already opened (``tunnelhound zeek``
    receives conn events on it); detections go out on it instead of a second peering, and
    closing the sinks leaves it open.

    Raises :class:`ConfigError` for a sink that is enabled but cannot work as configured, and
    ``ElasticsearchSinkError`` for a cluster that refuses our TLS or credentials.
    """
    sinks: list[AlertSink] = []
    try:
        for opener in _OPENERS:
            sink = _open_zeek(config, zeek_transport) if opener is _open_zeek else opener(config)
            if sink is not None:
                sinks.append(sink)
    except BaseException:
        AlertFanOut(sinks).close()  # the threads of those already opened
        raise
    return AlertFanOut(sinks)


def _policy(alerts: AlertsConfig) -> DeliveryPolicy:
    d = alerts.delivery
    if d.backoff_initial > d.backoff_max:
        raise ConfigError("alerts.delivery.backoff_initial", "must not exceed backoff_max")
    return DeliveryPolicy(
        queue_size=d.queue_size,
        retry_seconds=d.retry_seconds,
        backoff_initial=d.backoff_initial,
        backoff_max=d.backoff_max,
        close_timeout=d.close_timeout,
    )


def _open_ndjson(config: Config) -> AlertSink | None:
    a = config.alerts
    if not a.ndjson_enabled:
        return None
    nd = a.ndjson
    writer = NdjsonSink(
        nd.path,
        rotate_bytes=nd.rotate_bytes,
        rotate_seconds=nd.rotate_seconds,
        max_files=nd.max_files,
        prefix="alerts",
    )
    return NdjsonAlertSink(writer)


def _open_elasticsearch(config: Config) -> AlertSink | None:
    a, es = config.alerts.elasticsearch, config.output.elasticsearch
    if not a.enabled:
        return None
    if not es.url:
        raise ConfigError("alerts.elasticsearch.enabled", "needs output.elasticsearch.url")
    api_key = os.environ.get(es.api_key_env) if es.api_key_env else None
    password = os.environ.get(es.password_env, "") if es.password_env else ""
    sink = ElasticsearchSink(
        es.url,
        spool_dir=a.spool_dir or str(Path(config.state_dir) / "alert-spool"),
        spool_max_bytes=a.spool_max_bytes,
        # Never make the pipeline wait for alerts: a full spool drops its oldest batch (counted).
        full_policy="drop_oldest",
        flush_interval=es.flush_interval,
        # Alerts are few: one sender is plenty.
        senders=1,
        ca_certs=es.ca_certs or None,
        verify_certs=es.verify_certs,
        basic_auth=(es.username, password) if es.username else None,
        api_key=api_key or None,
    )
    return ElasticsearchAlertSink(
        sink, namespace=config.namespace, close_timeout=config.alerts.delivery.close_timeout
    )


def _open_syslog(config: Config) -> AlertSink | None:
    s = config.alerts.syslog
    if not s.address:
        return None
    host, port = parse_host_port(s.address)
    tls = None
    if s.transport == "tls":
        tls = _tls("alerts.syslog", s.ca_certs, s.verify_certs, s.certfile, s.keyfile)
    return SyslogSink(
        host,
        port,
        transport=s.transport,
        facility=s.facility,
        hostname=s.hostname,
        tls=tls,
        timeout=s.timeout,
        policy=_policy(config.alerts),
    )


def _open_webhook(config: Config) -> AlertSink | None:
    w = config.alerts.webhook
    if not w.url:
        return None
    headers = {}
    for header in w.headers:
        name, _, value = header.partition(":")
        headers[name] = value.strip()
    authorization = os.environ.get(w.authorization_env) if w.authorization_env else None
    if authorization:
        headers["Authorization"] = authorization
    tls = _tls("alerts.webhook", w.ca_certs, w.verify_certs) if w.url.startswith("https:") else None
    return WebhookSink(w.url, headers=headers, tls=tls, timeout=w.timeout, policy=_policy(config.alerts))


def _open_smtp(config: Config) -> AlertSink | None:
    m = config.alerts.smtp
    if not m.host:
        return None
    if not m.to:
        raise ConfigError("alerts.smtp.to", "at least one recipient is needed when alerts.smtp.host is set")
    password = os.environ.get(m.password_env, "") if m.password_env else ""
    if m.username and not password:
        raise ConfigError("alerts.smtp.password_env", f"${m.password_env} is not set but username is")
    server = SmtpServer(
        host=m.host,
        port=m.port,
        security=m.security,
        username=m.username,
        password=password,
        tls=_tls("alerts.smtp", m.ca_certs, m.verify_certs) if m.security != "none" else None,
        timeout=m.timeout,
    )
    default = Route(from_address=m.from_address, to=m.to)

    def route(level: SmtpRouteConfig) -> Route:
        return Route(from_address=level.from_address or m.from_address, to=level.to or m.to)

    routes = {level: route(getattr(m.severity, level)) for level in ("low", "medium", "high", "critical")}
    return SmtpSink(
        server,
        default=default,
        routes=routes,
        digest_interval=m.digest_interval,
        rate_limit_seconds=m.rate_limit_seconds,
        policy=_policy(config.alerts),
    )


def _open_zeek(config: Config, transport: Transport | None = None) -> AlertSink | None:
    z = config.zeek
    if not z.publish_detections:
        return None
    if transport is not None:
        return ZeekAlertSink(transport, topic=z.detection_topic, close_transport=False)
    own = open_transport(z, topics=())  # publishes only: nothing to receive here
    own.start()
    return ZeekAlertSink(own, topic=z.detection_topic)


def _tls(key: str, ca_certs: str, verify: bool, certfile: str = "", keyfile: str = "") -> ssl.SSLContext:
    try:
        return tls_context(ca_certs, verify, certfile, keyfile)
    except (OSError, ValueError) as err:
        raise ConfigError(key, f"cannot load TLS files: {err}") from None


_OPENERS: tuple[Callable[[Config], AlertSink | None], ...] = (
    _open_ndjson,
    _open_elasticsearch,
    _open_syslog,
    _open_webhook,
    _open_smtp,
    _open_zeek,
)
