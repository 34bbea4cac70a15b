"""The ``tunnelhound`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import fields, replace
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any

from tunnelhound import __version__, baseline_build
from tunnelhound.config import Config, ServiceConfig, from_dict, load_config, parse_host_port
from tunnelhound.decode.stats import DecodeStats
from tunnelhound.detection import DetectionStage
from tunnelhound.errors import ConfigError, SourceError, TunnelhoundError
from tunnelhound.gc_tuning import tune_gc
from tunnelhound.pipeline import PipelineCounts
from tunnelhound.rules import commands as rules_commands
from tunnelhound.runtime import open_flow_path
from tunnelhound.sources.dat import parse_exporter
from tunnelhound.sources.files import iter_replay_items

DEMO_CAPTURE = "lab_netflow_v9.pcap"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    tune_gc()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # `tunnelhound replay ... -o - | head` is normal use, not an error.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stays open until exit on purpose
        return 0
    except ConfigError as exc:
        print(f"tunnelhound: {exc}", file=sys.stderr)
        return 2
    except (TunnelhoundError, ValueError, OSError) as exc:
        print(f"tunnelhound: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tunnelhound", description="NetFlow/IPFIX security sidecar for Zeek and Elastic."
    )
    p.add_argument("--version", action="version", version=f"tunnelhound {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-c", "--config", help="YAML config file (defaults apply without one)")
        sp.add_argument(
            "-o", "--output", help="NDJSON directory, or '-' for stdout (overrides output.ndjson.path)"
        )
        sp.add_argument("--state-dir", help="where templates are kept (overrides state_dir)")
        sp.add_argument(
            "--es-url",
            help="also (or, without -o, only) write to Elasticsearch at this URL (run `tunnelhound setup` first)",
        )
        sp.add_argument("--es-ca", help="CA certificate (PEM) of the Elasticsearch cluster")
        sp.add_argument("--es-user", help="basic-auth user; the password comes from $TUNNELHOUND_ES_PASSWORD")

    r = sub.add_parser(
        "replay", help="decode pcap/pcapng captures of export packets, raw .dat datagrams or nfcapd files"
    )
    r.add_argument("files", nargs="+", help="pcap, pcapng, .dat or nfcapd (nfdump) files, in order")
    r.add_argument("--exporter", help="IP:PORT to attribute .dat datagrams to (default 192.0.2.1:4444)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    r.add_argument(
        "--alerts", help="also write alert documents as NDJSON to this directory, or '-' for stdout"
    )
    r.add_argument("--baseline", help="learned DNS/ICMP baseline (`tunnelhound baseline build`)")
    common(r)
    r.set_defaults(func=_replay)

    run = sub.add_parser("run", help="collect NetFlow v5/v9/IPFIX over UDP until SIGTERM/SIGINT")
    run.add_argument(
        "--listen", action="append", help="HOST:PORT to listen on (repeatable; overrides config)"
    )
    run.add_argument("--workers", type=int, help="worker processes (overrides service.workers)")
    run.add_argument(
        "--metrics", help="HOST:PORT of /metrics and /healthz, '' for none (overrides service.metrics_listen)"
    )
    common(run)
    run.set_defaults(func=_run)

    d = sub.add_parser(
        "demo", help="replay the bundled lab capture through the whole pipeline and print the detections"
    )
    d.add_argument("-o", "--output", default="demo-output", help="NDJSON directory for flows and alerts")
    d.add_argument("--state-dir", help="where templates are kept (default: a temporary directory)")
    d.set_defaults(func=_demo, config=None, no_progress=True, exporter=None, baseline=None)

    z = sub.add_parser("zeek", help="collect Zeek's conn events (config section zeek:) until SIGTERM/SIGINT")
    common(z)
    z.set_defaults(func=_zeek)

    st = sub.add_parser(
        "setup", help="install the Elasticsearch templates (and ILM policy) idempotently; Kibana objects"
    )
    st.add_argument("--es-url", help="Elasticsearch URL, e.g. https://127.0.0.1:9200")
    st.add_argument("--es-ca", help="CA certificate file (PEM) to verify the server with")
    st.add_argument("--es-user", help="basic auth user (password from --es-password-env)")
    st.add_argument("--es-password-env", help="environment variable holding the basic auth password")
    st.add_argument("--es-api-key-env", help="environment variable holding an API key (base64 id:key)")
    st.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    st.add_argument(
        "--emit-kibana",
        nargs="?",
        const="elastic/kibana",
        metavar="DIR",
        help="write the Kibana saved objects and the Security rule as NDJSON into DIR (default elastic/kibana)",
    )
    st.add_argument(
        "--kibana", metavar="URL", help="import the saved objects and the rule into Kibana at URL"
    )
    st.add_argument("--kibana-ca", help="CA certificate file (PEM) to verify Kibana with")
    st.add_argument("--kibana-user", help="Kibana basic auth user (password from --kibana-password-env)")
    st.add_argument("--kibana-password-env", help="environment variable holding the Kibana password")
    st.add_argument("--kibana-api-key-env", help="environment variable holding a Kibana API key")
    st.set_defaults(func=_setup)

    rules_commands.add_parsers(sub)
    baseline_build.add_parser(sub)
    return p


def _config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if getattr(args, "output", None):
        config = replace(
            config, output=replace(config.output, ndjson=replace(config.output.ndjson, path=args.output))
        )
    if getattr(args, "state_dir", None):
        config = replace(config, state_dir=args.state_dir)
    if getattr(args, "es_url", None):
        es = replace(
            config.output.elasticsearch,
            url=args.es_url,
            ca_certs=args.es_ca or config.output.elasticsearch.ca_certs,
            username=args.es_user or config.output.elasticsearch.username,
        )
        # Elasticsearch given on the command line replaces the NDJSON default unless -o asks for both.
        config = replace(
            config, output=replace(config.output, elasticsearch=es, ndjson_enabled=bool(args.output))
        )
    return config


def _replay(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.alerts:
        alerts = config.alerts
        config = replace(
            config,
            alerts=replace(alerts, ndjson_enabled=True, ndjson=replace(alerts.ndjson, path=args.alerts)),
        )
    print(_by_rule(_replay_files(args, config)), file=sys.stderr)
    return 0


def _replay_files(args: argparse.Namespace, config: Config) -> list[dict[str, Any]]:
    """Decode the files through the whole pipeline (features, rules, alert sinks); the alerts."""
    exporter = parse_exporter(args.exporter) if args.exporter else None
    for name in args.files:
        # Fail before any state or output is created.
        if not Path(name).is_file():
            raise SourceError(f"{name}: no such file")
    raised: list[dict[str, Any]] = []
    baseline = getattr(args, "baseline", None)
    with open_flow_path(
        config, _finishing_detections, baseline_path=baseline, on_alerts=raised.extend
    ) as path:
        pipeline = path.pipeline
        progress = not args.no_progress and sys.stderr.isatty()
        pipeline.feed(iter_replay_items(args.files, exporter=exporter, progress=progress))
        pipeline.flush()
        path.analysis.finish()  # nothing more will come: judge the windows still open
    _summary(pipeline.counts, pipeline.decoder.stats)
    return raised


def _finishing_detections(config: Config) -> DetectionStage:
    return DetectionStage(config, finish_on_close=True)


def _by_rule(alerts: list[dict[str, Any]]) -> str:
    counts = Counter(a["rule"]["name"] for a in alerts)
    listed = ", ".join(f"{name}={n}" for name, n in sorted(counts.items())) or "none"
    return f"tunnelhound: {len(alerts)} alerts: {listed}"


_LEVELS = {21: "low", 47: "medium", 73: "high", 99: "critical"}


def detection_table(alerts: list[dict[str, Any]]) -> str:
    """The alerts as a plain-text table: severity, rule, host, peer, evidence, title."""
    rows = [("severity", "rule", "host", "peer", "evidence", "title")]
    for a in sorted(alerts, key=lambda a: (a["event"]["start"], a["rule"]["name"])):
        evidence = a["tunnelhound"]["alert"]["evidence"]
        start, end = a["event"]["start"][11:19], a["event"]["end"][11:19]
        rows.append(
            (
                _LEVELS.get(a["event"]["severity"], str(a["event"]["severity"])),
                a["rule"]["name"],
                a.get("source", {}).get("ip", "-"),
                a.get("destination", {}).get("ip", "-"),
                f"{evidence['flow_count']} flows {start}-{end}",
                a["message"],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    )


def _summary(c: PipelineCounts, stats: DecodeStats) -> None:
    errors = ", ".join(f"{reason}={n}" for reason, n in sorted(stats.errors_by_reason().items())) or "none"
    print(
        f"tunnelhound: {c.datagrams} datagrams, {c.records} flow records, {c.options_records} options records, "
        f"{c.documents} documents written; held sets dropped {sum(stats.held_dropped.values())}; "
        f"datagrams from exporters not allowed {c.rejected_exporters}; errors: {errors}",
        file=sys.stderr,
    )


def _demo(args: argparse.Namespace) -> int:
    import tempfile

    capture = resources.files("tunnelhound") / "data" / "demo" / DEMO_CAPTURE
    with resources.as_file(capture) as path, tempfile.TemporaryDirectory() as tmp:
        args.files = [str(path)]
        if not args.state_dir:
            args.state_dir = tmp  # a fresh start: no windows or suppressions from an earlier run
        config = _config(args)
        alerts = config.alerts
        config = replace(
            config,
            alerts=replace(alerts, ndjson_enabled=True, ndjson=replace(alerts.ndjson, path=args.output)),
        )
        raised = _replay_files(args, config)
    print(f"{len(raised)} detections in {DEMO_CAPTURE} (flows and alerts as NDJSON in {args.output}):")
    print(detection_table(raised))
    return 0


def _run(args: argparse.Namespace) -> int:
    # Imported here: replay and demo do not need the service machinery.
    from tunnelhound.logs import setup_logging
    from tunnelhound.metrics import decode_totals
    from tunnelhound.service.runner import run_service

    config = _config(args)
    service = config.service
    overrides = {"workers": args.workers, "metrics_listen": args.metrics}
    if any(v is not None for v in overrides.values()):
        # Validated like the file, so `--workers 0` gets the same one-line error.
        current = {f.name: getattr(service, f.name) for f in fields(service)}
        service = from_dict(
            ServiceConfig, current | {k: v for k, v in overrides.items() if v is not None}, "service"
        )
        config = replace(config, service=service)
    setup_logging(service.log_format, "info" if args.verbose else service.log_level)
    listen = args.listen or list(config.inputs.udp.listen)
    binds = [parse_host_port(x) for x in listen]
    result = run_service(config, args.config, binds)
    _summary(result.counts, decode_totals(result.snapshots))
    print(f"tunnelhound: kernel dropped {result.kernel_drops} datagrams", file=sys.stderr)
    print(
        f"tunnelhound: biflow stitched {sum(s.biflow_stitched for s in result.snapshots)} pairs; "
        f"analysis dropped {sum(s.analysis_dropped_rows for s in result.snapshots)} rows",
        file=sys.stderr,
    )
    return result.exit_code


def _zeek(args: argparse.Namespace) -> int:
    from tunnelhound.zeek.collect import collect

    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    counts = collect(_config(args), lambda: stopping)
    t = counts.transport
    print(
        f"tunnelhound: {counts.documents} documents from Zeek; alerts {dict(sorted(counts.alerts.items())) or 'none'}; "
        f"sessions {t.connects}, events dropped {dict(counts.dropped) or 'none'}, dropped in transport "
        f"{t.dropped_in}, events sent to Zeek {t.sent}, bad messages {t.bad_messages}",
        file=sys.stderr,
    )
    return 0


def _setup(args: argparse.Namespace) -> int:
    """`tunnelhound setup`: Elasticsearch assets (--es-url), then the Kibana bundle."""
    if not (args.es_url or args.emit_kibana or args.kibana):
        print("tunnelhound: setup needs --es-url, --emit-kibana or --kibana", file=sys.stderr)
        return 2
    code = _setup_elasticsearch(args) if args.es_url else 0
    if code or not (args.emit_kibana or args.kibana):
        return code
    from tunnelhound.setup.kibana import run as setup_kibana

    return setup_kibana(args)


def _setup_elasticsearch(args: argparse.Namespace) -> int:
    """One line per asset, or one line of error and exit 1."""
    # Imported here: the client costs import time the other commands do not need.
    from elastic_transport import TransportError

    from tunnelhound.setup.elasticsearch import ApiError, SetupError, describe_error, install_assets

    if not args.verbose:
        # The transport logs every failed attempt as a warning; the one-line error says it all.
        logging.getLogger("elastic_transport").setLevel(logging.ERROR)

    def env(name: str) -> str:
        value = os.environ.get(name)
        if not value:
            raise SetupError(f"environment variable {name} is not set")
        return value

    try:
        if args.es_user and not args.es_password_env:
            raise SetupError("--es-user needs --es-password-env")
        if args.es_ca and not Path(args.es_ca).is_file():
            raise SetupError(f"CA file {args.es_ca} not found")
        basic_auth = (args.es_user, env(args.es_password_env)) if args.es_user else None
        api_key = env(args.es_api_key_env) if args.es_api_key_env else None
        report = install_assets(
            args.es_url, ca_certs=args.es_ca, basic_auth=basic_auth, api_key=api_key, dry_run=args.dry_run
        )
    except SetupError as exc:
        print(f"tunnelhound: {exc}", file=sys.stderr)
        return 1
    except (ApiError, TransportError) as exc:
        print(f"tunnelhound: {describe_error(exc, args.es_url)}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
