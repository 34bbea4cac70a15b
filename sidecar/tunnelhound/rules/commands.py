"""The `tunnelhound rules check|list|convert` and `tunnelhound hunt` commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from tunnelhound.errors import TunnelhoundError
from tunnelhound.hunt import add_connection_arguments
from tunnelhound.sinks.elasticsearch import flow_index

if TYPE_CHECKING:
    from tunnelhound.rules.convert import Conversion

FLOW_INDEX = flow_index("*")


# pySigma and sigma-cli are imported by the handlers: every other command starts without them.
def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `rules` (check, list, convert) and `hunt`."""
    rules = sub.add_parser("rules", help="check, list or convert the Sigma rules")
    rsub = rules.add_subparsers(dest="rules_command", required=True)

    def dirs(p: argparse.ArgumentParser) -> None:
        p.add_argument("paths", nargs="*", help="rule files or directories (default: the built-in rules)")

    c = rsub.add_parser("check", help="sigma check (sigma-cli) with no issues allowed")
    dirs(c)
    c.add_argument("--attack-data", help="enterprise-attack.json file or URL (default: bundled subset)")
    c.set_defaults(func=_check)
    ls = rsub.add_parser("list", help="one line per rule: file, name, kind, level, title")
    dirs(ls)
    ls.set_defaults(func=_list)
    cv = rsub.add_parser("convert", help="Elasticsearch queries: search request, Lucene or ES|QL")
    dirs(cv)
    cv.add_argument("--format", choices=("dsl", "lucene", "esql"), default="dsl")
    cv.add_argument("--index", default=FLOW_INDEX, help=f"index pattern for ES|QL (default {FLOW_INDEX})")
    cv.set_defaults(func=_convert)

    h = sub.add_parser("hunt", help="run the rules against flows stored in Elasticsearch; print hosts found")
    dirs(h)
    add_connection_arguments(h, required=True)
    h.add_argument(
        "--from", dest="start", help="start of the time range (ISO time or date math, e.g. now-24h)"
    )
    h.add_argument("--to", dest="end", help="end of the time range")
    h.add_argument("--index", default=FLOW_INDEX, help=f"flow index pattern (default {FLOW_INDEX})")
    h.add_argument("--json", action="store_true", help="one JSON object per finding instead of a table")
    h.set_defaults(func=_hunt)


def _conversions(args: argparse.Namespace, index: str = FLOW_INDEX) -> list[Conversion]:
    from tunnelhound.rules.convert import convert_paths
    from tunnelhound.rules.loader import BUILTIN_RULES, PIPELINE, load_pipeline

    paths = args.paths or [str(BUILTIN_RULES)]
    pipeline = load_pipeline(BUILTIN_RULES / PIPELINE)
    return convert_paths(paths, pipeline, index=index)


def _check(args: argparse.Namespace) -> int:
    from tunnelhound.rules.check import check_rules
    from tunnelhound.rules.loader import BUILTIN_RULES

    return check_rules(args.paths or [str(BUILTIN_RULES)], attack_data=args.attack_data)


def _list(args: argparse.Namespace) -> int:
    for c in _conversions(args):
        alerts = "" if c.alerts else " (feeds a correlation)"
        print(f"{c.detector:<13} {c.name:<28} {c.kind:<11} {c.level:<13} {c.title}{alerts}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    for c in _conversions(args, args.index):
        if args.format == "dsl":
            print(json.dumps({"rule": c.name, "index": args.index, "body": c.search}))
        elif args.format == "lucene":
            print(
                f"{c.name}\t{c.lucene}" if c.kind == "base" else f"{c.name}\t(correlation; flows: {c.lucene})"
            )
        else:
            print(
                f"{c.name}\t{c.esql.replace(chr(10), ' ') if c.esql else '(no ES|QL form; use --format dsl)'}"
            )
    return 0


def _hunt(args: argparse.Namespace) -> int:
    from elastic_transport import TransportError
    from elasticsearch import TransportError as EsTransportError

    from tunnelhound.hunt import connect_from_arguments, hunt

    client = connect_from_arguments(args)
    try:
        findings = hunt(
            client, _conversions(args, args.index), index=args.index, start=args.start, end=args.end
        )
    except (TransportError, EsTransportError) as exc:
        raise TunnelhoundError(f"hunt against {args.es_url} failed: {exc}") from None
    finally:
        client.close()
    if args.json:
        for f in findings:
            print(
                json.dumps(
                    {
                        "rule": f.rule,
                        "detector": f.detector,
                        "level": f.level,
                        "host": f.host,
                        "group": f.group,
                        "value": f.value,
                        "window_start": f.window_start,
                    }
                )
            )
        return 0
    print(f"{'detector':<13} {'rule':<22} {'host':<16} {'level':<8} {'value':>12}  window / group")
    for f in findings:
        rest = ", ".join(f"{k}={v}" for k, v in f.group.items() if v != f.host)
        print(
            f"{f.detector:<13} {f.rule:<22} {f.host:<16} {f.level:<8} {f.value:>12,.0f}  {f.window_start} {rest}".rstrip()
        )
    print(f"{len(findings)} findings", file=sys.stderr)
    return 0
