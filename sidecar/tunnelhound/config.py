"""Typed configuration: frozen dataclasses built from YAML by one generic :func:`from_dict`.

Every section is a keyword-only frozen dataclass whose defaults are the embedded defaults,
so ``Config()`` is a working configuration (``tunnelhound demo`` runs on it).

:func:`from_dict` walks the dataclass fields and converts a mapping (parsed YAML) into
them.  Anything it cannot accept raises :class:`~tunnelhound.errors.ConfigError` with a
one-line message naming the dotted key, the bad value and what is allowed::

    config error: decode.max_held_sets: -3 is not allowed; expected an integer >= 0

Constraints beyond the Python type are declared once, in the field's metadata:

* ``"check"``: a callable ``value -> bool``, run on the converted value (for a list or
  tuple field, on each item, so the error names ``inputs.udp.listen[1]``);
* ``"allowed"``: the text after "expected" when the value is rejected (for a list field
  it describes one item).

Adding a key: add a field with a default (use :func:`_int`, :func:`_float` or
``field(metadata=...)`` for constraints), then the key and its comment to
``config.example.yaml``; ``tests/test_config.py`` checks that the two agree.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError
from .normalize.locality import DEFAULT_INTERNAL_NETWORKS

__all__ = [
    "DEFAULT_INTERNAL_NETWORKS",
    "AlertDeliveryConfig",
    "AlertElasticsearchConfig",
    "AlertsConfig",
    "BiflowConfig",
    "Config",
    "DecodeConfig",
    "DetectionsConfig",
    "ElasticsearchOutputConfig",
    "InputsConfig",
    "NdjsonOutputConfig",
    "NormalizeConfig",
    "OutputConfig",
    "RulesConfig",
    "ServiceConfig",
    "SmtpAlertConfig",
    "SmtpRouteConfig",
    "SmtpSeverityConfig",
    "SyslogAlertConfig",
    "ThreatIndexConfig",
    "UdpInputConfig",
    "WebhookAlertConfig",
    "ZeekConfig",
    "from_dict",
    "load_config",
    "parse_host_port",
]

T = TypeVar("T")


# Longer values are cut so an error message stays one readable line.
_MAX_SHOWN = 80

_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
# Elastic rejects these in index names; '-' separates type-dataset-namespace in a data stream name.
_NAMESPACE_FORBIDDEN = frozenset('-\\/*?"<>| ,#')


# --------------------------------------------------------------------------- field checks


def parse_host_port(text: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6]:port`` into ``(host, port)``; raise ``ValueError`` if malformed.

    The host is an IPv4 address, a bracketed IPv6 address (returned without brackets) or a
    DNS name; the port is 1..65535 (0 would bind an ephemeral port no exporter knows).
    """
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r}: expected [v6]:port")
        ipaddress.IPv6Address(host)
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{text!r}: expected host:port")
        if ":" in host:
            raise ValueError(f"{text!r}: an IPv6 host needs brackets, [v6]:port")
        _check_host(host)
    # int() alone would accept " 80", "+80" and "8_0".
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"{text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: port {port} is outside 1..65535")
    return host, port


def _check_host(host: str) -> None:
    """Accept an IPv4 address or an RFC 1123 host name."""
    labels = host.rstrip(".").split(".")
    # An all-numeric last label cannot be a DNS name, so "999.1.1.1" must parse as IPv4.
    if labels[-1].isdigit():
        ipaddress.IPv4Address(host)
        return
    if len(host) > 253 or not all(_HOSTNAME_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{host!r} is neither an IPv4 address nor a host name")


def _is_host_port(value: str) -> bool:
    try:
        parse_host_port(value)
    except ValueError:
        return False
    return True


def _is_cidr(value: str) -> bool:
    try:
        # strict=False: "10.1.2.3/8" means the network that contains it.
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def _is_namespace(value: str) -> bool:
    return (
        0 < len(value.encode()) <= 100
        and value == value.lower()
        and not _NAMESPACE_FORBIDDEN.intersection(value)
    )


def _int(default: int, minimum: int, maximum: int | None = None) -> Any:
    """Declare an ``int`` field bounded to ``minimum..maximum``."""
    if maximum is None:
        return field(
            default=default,
            metadata={"check": lambda v: v >= minimum, "allowed": f"an integer >= {minimum}"},
        )
    return field(
        default=default,
        metadata={
            "check": lambda v: minimum <= v <= maximum,
            "allowed": f"an integer from {minimum} to {maximum}",
        },
    )


def _float(default: float, *, above: float | None = None, minimum: float | None = None) -> Any:
    """Declare a ``float`` field that is ``> above`` or ``>= minimum``."""
    if above is not None:
        return field(
            default=default, metadata={"check": lambda v: v > above, "allowed": f"a number > {above:g}"}
        )
    assert minimum is not None
    return field(
        default=default, metadata={"check": lambda v: v >= minimum, "allowed": f"a number >= {minimum:g}"}
    )


_NON_EMPTY: dict[str, Any] = {"check": bool, "allowed": "a non-empty string"}
_CIDR: dict[str, Any] = {"check": _is_cidr, "allowed": "a CIDR such as 10.0.0.0/8 or fc00::/7"}


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True, kw_only=True, slots=True)
class UdpInputConfig:
    """UDP listeners for export packets."""

    listen: tuple[str, ...] = field(
        default=("0.0.0.0:2055", "0.0.0.0:4739"),
        metadata={"check": _is_host_port, "allowed": "host:port or [v6]:port with port 1..65535"},
    )
    receive_buffer: int = _int(33554432, 65536)
    """SO_RCVBUF in bytes; bursts from many exporters overflow small kernel buffers."""


@dataclass(frozen=True, kw_only=True, slots=True)
class InputsConfig:
    """Where export packets come from and who may send them."""

    udp: UdpInputConfig = field(default_factory=UdpInputConfig)
    allowed_exporters: tuple[str, ...] = field(default=(), metadata=_CIDR)
    """CIDRs of exporters to accept; empty accepts all."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DecodeConfig:
    """Template handling and per-exporter limits of the decoder."""

    share_templates: bool = False
    """Key template sessions without the exporter port (exporters that change source port)."""
    max_templates_per_exporter: int = _int(4096, 1)
    max_held_sets: int = _int(1024, 0)
    """Data sets held per exporter awaiting their template."""
    held_set_timeout: float = _float(60.0, above=0)
    """Seconds a held data set waits for its template."""
    fast_path: bool = True
    """Decode fixed-length templates with numpy."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BiflowConfig:
    """Pairing of uniflows into biflows."""

    enabled: bool = True
    timeout: float = _float(30.0, minimum=0)
    """Seconds of flow time a uniflow waits for its partner."""
    max_pending: int = _int(100000, 0)


@dataclass(frozen=True, kw_only=True, slots=True)
class NormalizeConfig:
    """Turning decoded records into ECS documents."""

    internal_networks: tuple[str, ...] = field(default=DEFAULT_INTERNAL_NETWORKS, metadata=_CIDR)
    community_id_seed: int = _int(0, 0, 65535)
    application_tables: tuple[str, ...] = ()
    """Files naming exporter application ids ("engine:selector<TAB>name" lines), over the shipped ones."""
    biflow: BiflowConfig = field(default_factory=BiflowConfig)


@dataclass(frozen=True, kw_only=True, slots=True)
class NdjsonOutputConfig:
    """Rotating NDJSON files (or stdout)."""

    path: str = field(default="./data", metadata=_NON_EMPTY)
    """Directory for rotating files, or "-" for stdout."""
    rotate_bytes: int = _int(104857600, 1024)
    rotate_seconds: int = _int(3600, 1)
    max_files: int = _int(0, 0)
    """Finished files to keep; 0 keeps all."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ElasticsearchOutputConfig:
    """The Elasticsearch bulk sink (off while ``url`` is empty). Secrets come from the
    environment variables named here, never from the file itself."""

    url: str = ""
    """e.g. https://es.example:9200; empty disables the sink."""
    ca_certs: str = ""
    """PEM file of the CA that signed the cluster's certificate (system CAs when empty)."""
    verify_certs: bool = True
    username: str = ""
    password_env: str = "TUNNELHOUND_ES_PASSWORD"
    """Environment variable holding the password for ``username``."""
    api_key_env: str = "TUNNELHOUND_ES_API_KEY"
    """Environment variable holding an API key (used when set)."""
    spool_dir: str = ""
    """Disk spool of unacknowledged bulk batches; empty means <state_dir>/spool."""
    spool_max_bytes: int = _int(1024**3, 1024 * 1024)
    full_policy: Literal["block", "drop_oldest"] = "block"
    """When the spool is full: make the collector wait, or drop the oldest batch (counted)."""
    batch_docs: int = _int(2000, 1)
    flush_interval: float = _float(1.0, above=0)


@dataclass(frozen=True, kw_only=True, slots=True)
class OutputConfig:
    """Where documents go."""

    ndjson: NdjsonOutputConfig = field(default_factory=NdjsonOutputConfig)
    ndjson_enabled: bool = True
    """Write NDJSON files (the embedded default); turn off when Elasticsearch is the only sink."""
    elasticsearch: ElasticsearchOutputConfig = field(default_factory=ElasticsearchOutputConfig)


def _is_optional_host_port(value: str) -> bool:
    return not value or _is_host_port(value)


def _is_header(value: str) -> bool:
    name, sep, _ = value.partition(":")
    return bool(sep and name.strip() and name == name.strip() and "\n" not in value and "\r" not in value)


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertElasticsearchConfig:
    """Alerts into ``logs-tunnelhound.alert-<namespace>`` on the cluster of ``output.elasticsearch``."""

    enabled: bool = False
    spool_dir: str = ""
    """Disk spool of alerts not yet acknowledged; empty means <state_dir>/alert-spool."""
    spool_max_bytes: int = _int(64 * 1024**2, 1024 * 1024)


@dataclass(frozen=True, kw_only=True, slots=True)
class SyslogAlertConfig:
    """RFC 5424 syslog over UDP, TCP or TLS (off while ``address`` is empty)."""

    address: str = field(
        default="",
        metadata={"check": _is_optional_host_port, "allowed": "empty, or host:port with port 1..65535"},
    )
    transport: Literal["udp", "tcp", "tls"] = "udp"
    facility: int = _int(16, 0, 23)
    """Syslog facility number; 16 is local0."""
    hostname: str = ""
    """HOSTNAME field; empty uses this machine's FQDN."""
    ca_certs: str = ""
    verify_certs: bool = True
    certfile: str = ""
    """Client certificate (PEM) for servers that require mutual TLS."""
    keyfile: str = ""
    timeout: float = _float(10.0, above=0)


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookAlertConfig:
    """JSON POST of every alert (off while ``url`` is empty)."""

    url: str = field(
        default="",
        metadata={
            "check": lambda v: not v or v.startswith(("http://", "https://")),
            "allowed": "empty, or an http:// or https:// URL",
        },
    )
    headers: tuple[str, ...] = field(
        default=(), metadata={"check": _is_header, "allowed": '"Name: value" on one line'}
    )
    authorization_env: str = "TUNNELHOUND_WEBHOOK_AUTHORIZATION"
    """Environment variable whose value is sent as the Authorization header (when set)."""
    ca_certs: str = ""
    verify_certs: bool = True
    timeout: float = _float(10.0, above=0)


@dataclass(frozen=True, kw_only=True, slots=True)
class SmtpRouteConfig:
    """Sender and recipients for one severity; empty values fall back to the smtp defaults."""

    from_address: str = ""
    to: tuple[str, ...] = field(default=(), metadata=_NON_EMPTY)


@dataclass(frozen=True, kw_only=True, slots=True)
class SmtpSeverityConfig:
    """Per-severity routing of alert mail."""

    low: SmtpRouteConfig = field(default_factory=SmtpRouteConfig)
    medium: SmtpRouteConfig = field(default_factory=SmtpRouteConfig)
    high: SmtpRouteConfig = field(default_factory=SmtpRouteConfig)
    critical: SmtpRouteConfig = field(default_factory=SmtpRouteConfig)


@dataclass(frozen=True, kw_only=True, slots=True)
class SmtpAlertConfig:
    """E-mail alerts (off while ``host`` is empty)."""

    host: str = ""
    port: int = _int(587, 1, 65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password_env: str = "TUNNELHOUND_SMTP_PASSWORD"
    ca_certs: str = ""
    verify_certs: bool = True
    timeout: float = _float(10.0, above=0)
    from_address: str = field(default="tunnelhound@localhost", metadata=_NON_EMPTY)
    to: tuple[str, ...] = field(default=(), metadata=_NON_EMPTY)
    severity: SmtpSeverityConfig = field(default_factory=SmtpSeverityConfig)
    digest_interval: float = _float(0.0, minimum=0)
    """Seconds per digest message; 0 sends one message per alert."""
    rate_limit_seconds: float = _float(3600.0, minimum=0)
    """Window in which a further alert for the same rule and host is not mailed; 0 mails all."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertDeliveryConfig:
    """Queue and retries of the remote alert sinks (syslog, webhook, smtp)."""

    queue_size: int = _int(10000, 1)
    retry_seconds: float = _float(3600.0, minimum=0)
    backoff_initial: float = _float(1.0, above=0)
    backoff_max: float = _float(60.0, above=0)
    close_timeout: float = _float(5.0, minimum=0)


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertsConfig:
    """Where alert documents go (DESIGN §6); every sink is off by default."""

    ndjson_enabled: bool = False
    ndjson: NdjsonOutputConfig = field(default_factory=NdjsonOutputConfig)
    elasticsearch: AlertElasticsearchConfig = field(default_factory=AlertElasticsearchConfig)
    syslog: SyslogAlertConfig = field(default_factory=SyslogAlertConfig)
    webhook: WebhookAlertConfig = field(default_factory=WebhookAlertConfig)
    smtp: SmtpAlertConfig = field(default_factory=SmtpAlertConfig)
    delivery: AlertDeliveryConfig = field(default_factory=AlertDeliveryConfig)


@dataclass(frozen=True, kw_only=True, slots=True)
class ServiceConfig:
    """How ``tunnelhound run`` runs: worker processes, metrics endpoint, logs."""

    workers: int = _int(1, 1, 64)
    """Processes sharing the UDP ports with SO_REUSEPORT; 1 runs everything in one process."""
    metrics_listen: str = field(
        default="127.0.0.1:9631",
        metadata={"check": _is_optional_host_port, "allowed": "host:port, [v6]:port, or empty (off)"},
    )
    """Address of the Prometheus /metrics and /healthz endpoint; empty turns it off."""
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    stats_interval: float = _float(1.0, above=0)
    """Seconds between the counter snapshots workers hand to the metrics endpoint."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ZeekConfig:
    """Zeek as a flow source and a notice sink (``zeek-scripts/``, ``docs/zeek.md``)."""

    transport: Literal["websocket", "broker"] = "websocket"
    """websocket: Zeek's WebSocket API; broker: Broker's Python bindings (needs a Zeek install)."""
    url: str = field(
        default="ws://127.0.0.1:27759/v1/messages/json",
        metadata={"check": lambda v: v.startswith(("ws://", "wss://")), "allowed": "a ws:// or wss:// URL"},
    )
    """WebSocket endpoint (transport websocket)."""
    host: str = field(default="127.0.0.1", metadata=_NON_EMPTY)
    """Zeek's Broker address (transport broker)."""
    port: int = _int(9999, 1, 65535)
    """Zeek's Broker port (transport broker)."""
    conn_topic: str = field(default="tunnelhound/conn", metadata=_NON_EMPTY)
    detection_topic: str = field(default="tunnelhound/detections", metadata=_NON_EMPTY)
    publish_detections: bool = False
    """Send every alert to Zeek as a ``Tunnelhound::detection`` event on ``detection_topic``."""
    observer_ip: str = field(default="127.0.0.1", metadata=_NON_EMPTY)
    """``observer.ip`` of Zeek's flows: the address of the Zeek host."""
    queue_size: int = _int(10000, 1)
    """Events buffered each way; beyond it events are dropped and counted."""
    reconnect_initial: float = _float(0.5, above=0)
    reconnect_max: float = _float(30.0, above=0)
    broker_python_path: tuple[str, ...] = ("/usr/lib/python3/dist-packages",)
    """Where to look for Broker's Python module, besides ``zeek-config --python_dir``."""


# --------------------------------------------------------------------------- detections

Detector = Literal["app_tunnel", "dns_tunnel", "icmp_tunnel", "port_scan", "exfiltration", "beacon"]
"""Detector slugs with features (the rule files in sigma-rules/ are named after them)."""


def _port(value: int) -> bool:
    return 0 <= value <= 65535


_PORT: dict[str, Any] = {"check": _port, "allowed": "a port number 0..65535"}


@dataclass(frozen=True, kw_only=True, slots=True)
class DnsDetectionConfig:
    """DNS tunnel features: a UDP/53 flow whose packets AND duration both exceed the baseline."""

    ports: tuple[int, ...] = field(default=(53,), metadata=_PORT)
    max_difference: float = _float(3.0, above=0)
    """k: a metric is anomalous above mean + k * std of the baseline."""
    min_packets: int = _int(10, 1)
    """Floor under the packet threshold (a near-constant baseline has std ~ 0)."""
    min_duration: float = _float(1.0, minimum=0)
    """Floor under the duration threshold, seconds."""
    min_packet_rate: float = _float(0.5, minimum=0)
    """Packets per second below which a long flow is merged lookups, not a tunnel."""


@dataclass(frozen=True, kw_only=True, slots=True)
class IcmpDetectionConfig:
    """ICMP tunnel features: echo packets larger than what ping sends by default."""

    normal_bytes_per_packet: int = _int(84, 28)
    """Largest normal echo IPv4 packet: Linux/macOS ping 84 B, Windows 60 B (IPv6: 20 B more)."""
    max_difference: float = _float(3.0, above=0)
    """k for a learned baseline: the threshold is max(normal, mean + k * std)."""
    min_packets: int = _int(10, 1)
    """Packets (both directions) a flow needs before its size counts."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ScanDetectionConfig:
    """Port scan features: which flows went unanswered."""

    exclude_sources: tuple[str, ...] = field(default=(), metadata=_CIDR)
    """Scanners you run on purpose (vulnerability scanners, monitoring), as CIDRs."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ExfilDetectionConfig:
    """Exfiltration features: bytes each internal host sent to external addresses."""

    exclude_networks: tuple[str, ...] = field(default=(), metadata=_CIDR)
    """Internal hosts or external destinations not counted (backup targets, CDNs), as CIDRs."""
    exclude_ports: tuple[int, ...] = field(default=(), metadata=_PORT)
    """External-side ports not counted."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BeaconDetectionConfig:
    """Beacon features: interval and size regularity per (source, destination, port, protocol)."""

    min_connections: int = _int(4, 3)
    min_score: float = field(
        default=0.8, metadata={"check": lambda v: 0 <= v <= 1, "allowed": "a number from 0 to 1"}
    )
    min_interval: float = _float(0.5, above=0)
    """Seconds; faster repetition is streaming, not beaconing."""
    exclude_ports: tuple[int, ...] = field(default=(53, 123), metadata=_PORT)
    """Destination ports periodic by design: DNS refreshes records as TTLs expire, NTP polls."""
    history: int = _int(32, 4)
    """Connections remembered per pair (12 bytes each)."""
    max_pairs: int = _int(100000, 1)
    """Pairs remembered (least recently seen evicted first)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ApplicationPortsConfig:
    """Ports a DPI application may use."""

    application: str = field(metadata=_NON_EMPTY)
    ports: tuple[int, ...] = field(metadata=_PORT)


DEFAULT_APPLICATION_PORTS = (
    ApplicationPortsConfig(application="dns", ports=(53,)),
    ApplicationPortsConfig(application="ssh", ports=(22,)),
    ApplicationPortsConfig(application="http", ports=(80, 8000, 8008, 8080, 8888)),
    ApplicationPortsConfig(application="ssl", ports=(443, 8443)),
    ApplicationPortsConfig(application="openvpn", ports=(1194,)),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class AppTunnelDetectionConfig:
    """Application tunneling features: DPI application off its ports, or a service port whose
    flows do not look like the service."""

    application_ports: tuple[ApplicationPortsConfig, ...] = DEFAULT_APPLICATION_PORTS
    dns_tcp_ports: tuple[int, ...] = field(default=(53,), metadata=_PORT)
    dns_tcp_max_duration: float = _float(60.0, above=0)
    dns_tcp_max_bytes: int = _int(1000000, 1)
    interactive_ports: tuple[int, ...] = field(default=(53, 8000, 8008, 8080, 8888), metadata=_PORT)
    interactive_max_bytes_per_packet: float = _float(250.0, above=0)
    interactive_min_packets: int = _int(20, 1)
    interactive_min_duration: float = _float(2.0, minimum=0)


@dataclass(frozen=True, kw_only=True, slots=True)
class DetectionOverrideConfig:
    """Thresholds for the hosts in ``networks`` (the internal side of a flow, else its source)."""

    networks: tuple[str, ...] = field(metadata=_CIDR)
    disable: tuple[Detector, ...] = ()
    """Detectors whose features stay absent for these hosts."""
    dns_max_difference: float | None = None
    icmp_normal_bytes_per_packet: int | None = None
    beacon_min_score: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class DetectionsConfig:
    """Feature computation for the built-in Sigma rules (sigma-rules/)."""

    enabled: bool = True
    baseline: str = ""
    """Baseline file from `tunnelhound baseline build`; empty learns online after the warm-up."""
    warmup_flows: int = _int(1000, 1)
    """Flows per metric before an online baseline replaces the floors."""
    dns: DnsDetectionConfig = field(default_factory=DnsDetectionConfig)
    icmp: IcmpDetectionConfig = field(default_factory=IcmpDetectionConfig)
    scan: ScanDetectionConfig = field(default_factory=ScanDetectionConfig)
    exfil: ExfilDetectionConfig = field(default_factory=ExfilDetectionConfig)
    beacon: BeaconDetectionConfig = field(default_factory=BeaconDetectionConfig)
    app_tunnel: AppTunnelDetectionConfig = field(default_factory=AppTunnelDetectionConfig)
    overrides: tuple[DetectionOverrideConfig, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class ThreatIndexConfig:
    """The per-host threat index: what an alert adds by its level, and how fast it decays."""

    weight_low: float = _float(1.0, minimum=0)
    weight_medium: float = _float(3.0, minimum=0)
    weight_high: float = _float(6.0, minimum=0)
    weight_critical: float = _float(10.0, minimum=0)
    half_life: float = _float(21600.0, above=0)
    """Seconds of flow time in which a host's index halves (exponential decay)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RulesConfig:
    """The Sigma rule engine."""

    builtin: bool = True
    """Load the built-in rules (sigma-rules/)."""
    directories: tuple[str, ...] = field(default=(), metadata=_NON_EMPTY)
    """Directories of users' own Sigma rule files."""
    disabled: tuple[str, ...] = field(default=(), metadata=_NON_EMPTY)
    """Rule names or ids not to run (correlations that need them are off too)."""
    lateness: float = _float(60.0, minimum=0)
    """Seconds of flow time a flow may arrive late and still count in its windows."""
    suppression: float = _float(3600.0, minimum=0)
    """Seconds of flow time a rule stays quiet for a key after alerting on it."""
    max_groups: int = _int(100000, 1)
    """Group keys (and suppressed keys) kept per rule; the oldest are evicted, counted."""
    max_group_events: int = _int(100000, 1)
    """Events kept per group key; the oldest are evicted, counted."""
    max_rule_events: int = _int(1000000, 1)
    """Events kept per correlation over all its keys (about 250 bytes each); the oldest are
    evicted, counted: at high rates a 5-minute window holds more flows than memory allows."""
    threat_index: ThreatIndexConfig = field(default_factory=ThreatIndexConfig)


@dataclass(frozen=True, kw_only=True, slots=True)
class Config:
    """The whole configuration; ``Config()`` holds the embedded defaults."""

    state_dir: str = field(default="./state", metadata=_NON_EMPTY)
    """Templates, options data, later spool and baselines."""
    namespace: str = field(
        default="default",
        metadata={
            "check": _is_namespace,
            "allowed": 'a lowercase name of 1-100 bytes without - \\ / * ? " < > | space , #',
        },
    )
    """``data_stream.namespace`` of every document."""
    inputs: InputsConfig = field(default_factory=InputsConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    zeek: ZeekConfig = field(default_factory=ZeekConfig)

    detections: DetectionsConfig = field(default_factory=DetectionsConfig)

    rules: RulesConfig = field(default_factory=RulesConfig)


# --------------------------------------------------------------------------- from_dict


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, raising ``ConfigError`` on any bad key or value.

    ``path`` is the dotted key of ``data`` (``""`` for the top level) used in messages.
    ``None`` means an empty mapping, so a YAML section left with only comments is all defaults.
    Supported annotations: nested dataclasses, ``list[X]``, ``tuple[X, ...]``, ``int``,
    ``float``, ``bool``, ``str``, ``Literal[...]`` and ``X | None``.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise _bad(path, data, _describe(cls, None), type_error=True)
    fields = _fields(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in fields:
            raise _unknown(path, key, list(fields))
        tp, meta = fields[key]
        kwargs[key] = _convert(tp, value, _join(path, key), meta.get("check"), meta.get("allowed"))
    for f in dataclasses.fields(cls):
        if f.init and f.name not in kwargs and _is_required(f):
            raise ConfigError(_join(path, f.name), f"missing; expected {_describe(fields[f.name][0], None)}")
    return cls(**kwargs)


@cache
def _fields(cls: type) -> dict[str, tuple[Any, Mapping[str, Any]]]:
    """Resolve the annotations (strings under ``from __future__ import annotations``) once."""
    hints = get_type_hints(cls)
    return {f.name: (hints[f.name], f.metadata) for f in dataclasses.fields(cls) if f.init}


def _is_required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _convert(
    tp: Any,
    value: Any,
    path: str,
    check: Callable[[Any], bool] | None,
    allowed: str | None,
    described: Any = None,
) -> Any:
    """Convert one value to annotation ``tp``; ``check``/``allowed`` apply to scalars and list items.

    ``described`` is the annotation errors describe when it differs from ``tp`` (the whole
    ``X | None``, so the message says "or null").
    """
    expected = _describe(described or tp, allowed)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        if len(inner) != 1 or len(get_args(tp)) != 2:
            raise TypeError(f"{path}: only X | None unions are supported, not {tp!r}")
        return None if value is None else _convert(inner[0], value, path, check, allowed, tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if value is not None and not isinstance(value, Mapping):
            raise _bad(path, value, expected, type_error=True)
        return from_dict(tp, value, path)
    if origin in (list, tuple):
        args = get_args(tp)
        if origin is tuple and (len(args) != 2 or args[1] is not Ellipsis):
            raise TypeError(f"{path}: only tuple[X, ...] is supported, not {tp!r}")
        if not isinstance(value, list | tuple):
            raise _bad(path, value, expected, type_error=True)
        items = [_convert(args[0], item, f"{path}[{i}]", check, allowed) for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is Literal:
        # Compare with type too: 1 == True would let a bool through for Literal[1].
        if not any(type(value) is type(c) and value == c for c in get_args(tp)):
            raise _bad(path, value, expected, type_error=False)
        return value
    converted = _scalar(tp, value, path, expected)
    if check is not None and not check(converted):
        raise _bad(path, value, expected, type_error=False)
    return converted


def _scalar(tp: Any, value: Any, path: str, expected: str) -> Any:
    """Accept ``value`` as ``tp`` without coercion, except int to float."""
    # bool is a subclass of int: test it first, and refuse it where a number is expected.
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        # YAML reads .inf and .nan as floats; neither is a usable duration or size.
        ok = isinstance(value, float) and math.isfinite(value)
        if isinstance(value, float) and not ok:
            raise _bad(path, value, expected, type_error=False)
    elif tp is str:
        ok = isinstance(value, str)
    else:
        raise TypeError(f"{path}: unsupported annotation {tp!r}")
    if not ok:
        raise _bad(path, value, expected, type_error=True)
    return value


# --------------------------------------------------------------------------- messages

_BASE_NAMES: dict[Any, str] = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
}


def _describe(tp: Any, allowed: str | None) -> str:
    """Say what annotation ``tp`` accepts; ``allowed`` overrides the scalar (or list item) part."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = next(a for a in get_args(tp) if a is not type(None))
        return f"{_describe(inner, allowed)} or null"
    if origin in (list, tuple):
        return f"a list, each item {_describe(get_args(tp)[0], allowed)}"
    if dataclasses.is_dataclass(tp):
        return "a mapping with keys: " + ", ".join(_fields(tp))  # type: ignore[arg-type]
    if allowed is not None:
        return allowed
    if origin is Literal:
        return "one of " + ", ".join(_show(c) for c in get_args(tp))
    return _BASE_NAMES.get(tp, repr(tp))


def _show(value: Any) -> str:
    """Render a value as YAML-ish JSON on one line (strings quoted, newlines escaped)."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


def _bad(path: str, value: Any, expected: str, *, type_error: bool) -> ConfigError:
    """A rejected value; a type error also names the kind of value, as "5" and 5 look alike."""
    shown = _show(value)
    if type_error and value is not None:
        shown = f"{shown} ({_kind(value)})"
    return ConfigError(path or "(top level)", f"{shown} is not allowed; expected {expected}")


def _unknown(path: str, key: Any, allowed: list[str]) -> ConfigError:
    name = key if isinstance(key, str) else _show(key)
    message = "unknown key; allowed keys: " + ", ".join(allowed)
    close = difflib.get_close_matches(name, allowed, n=1)
    if close:
        message += f" (did you mean {close[0]}?)"
    return ConfigError(_join(path, name), message)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path | None) -> Config:
    """Load and validate a YAML config file; ``None`` or an empty file gives the defaults."""
    if path is None:
        return Config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(str(path), f"cannot read file: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), _yaml_message(exc)) from None
    return from_dict(Config, data)


def _yaml_message(exc: yaml.YAMLError) -> str:
    """One line with the 1-based line and column PyYAML reports 0-based."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"invalid YAML{where}: {' '.join(problem.split())}"
