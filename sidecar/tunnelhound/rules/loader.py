"""Load Sigma rule files into compiled rules: parse with pySigma, apply the processing
pipeline, resolve correlation references, check every field against the resolver, compile.

Every failure is a :class:`~tunnelhound.errors.RuleError`: one line naming the file, the rule
and the field or value at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationCondition, SigmaCorrelationRule, SigmaCorrelationType
from sigma.exceptions import SigmaError
from sigma.processing.pipeline import ProcessingPipeline
from sigma.rule import SigmaRule

from tunnelhound.errors import RuleError

from .compile import Predicate, compile_condition, condition_fields
from .correlate import CorrelationSpec
from .fields import THREAT_FIELDS, is_flow_field
from .lucene import lucene_condition
from .model import RuleInfo

__all__ = ["BUILTIN_RULES", "BaseRule", "CorrelationRule", "RuleSet", "load_rules", "rule_files"]

BUILTIN_RULES = Path(__file__).resolve().parent.parent / "data" / "sigma-rules"
"""The built-in rules: a link to the repository's ``sigma-rules/`` (copied into wheels)."""

PIPELINE = Path("pipelines") / "tunnelhound.yml"
"""Where, under the built-in rules directory, the field-mapping pipeline lives."""

THREAT_SERVICE = "threat_index"
_KINDS = {
    SigmaCorrelationType.EVENT_COUNT: "event_count",
    SigmaCorrelationType.VALUE_COUNT: "value_count",
    SigmaCorrelationType.VALUE_SUM: "value_sum",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BaseRule:
    """A compiled detection rule: ``predicate`` gives the mask of matching rows; ``query`` is its
    Lucene form (None where it has none); ``output``: whether it alerts on its own."""

    info: RuleInfo
    predicate: Predicate
    query: str | None
    output: bool
    threat: bool
    """Evaluated on the threat-index events rather than on flows."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CorrelationRule:
    """A loaded correlation rule (``spec.sources`` name base or correlation rules)."""

    info: RuleInfo
    spec: CorrelationSpec
    output: bool


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules in dependency order: base rules, then correlations after the ones they chain on."""

    base: list[BaseRule]
    correlations: list[CorrelationRule]


def rule_files(directory: Path) -> list[Path]:
    """The rule files directly in ``directory`` (``*.yml``/``*.yaml``), sorted."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in (".yml", ".yaml"))


def load_pipeline(path: Path) -> ProcessingPipeline:
    """Read a pySigma processing pipeline file."""
    try:
        return ProcessingPipeline.from_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SigmaError, ValueError, TypeError) as exc:
        raise RuleError(str(path), _one_line(exc)) from None


def load_rules(
    directories: list[Path],
    pipeline: ProcessingPipeline | None = None,
    disabled: frozenset[str] = frozenset(),
) -> RuleSet:
    """Load every rule file of ``directories``; ``disabled`` names rules (name or id) to skip,
    along with the correlations that need them."""
    parsed: list[tuple[Path, SigmaRule | SigmaCorrelationRule]] = []
    for directory in directories:
        if not directory.is_dir():
            raise RuleError(str(directory), "not a directory")
        for path in rule_files(directory):
            parsed.extend((path, rule) for rule in _parse_file(path))
    names: dict[str, Path] = {}
    for path, rule in parsed:
        if not rule.name:
            if not rule.id:
                raise RuleError(str(path), f"rule {rule.title!r} has neither a name nor an id")
            rule.name = str(rule.id)  # users' plain rules often have only an id
        if rule.name in names:
            raise RuleError(str(path), f"rule name {rule.name!r} is also used in {names[rule.name]}")
        names[rule.name] = path
    collection = SigmaCollection([rule for _, rule in parsed], resolve_references=False)
    for path, rule in parsed:
        if isinstance(rule, SigmaCorrelationRule):
            try:
                rule.resolve_rule_references(collection)
            except SigmaError as exc:
                raise RuleError(str(path), f"rule {rule.name!r}: {_one_line(exc)}") from None
    off = {r.name for _, r in parsed if r.name in disabled or str(r.id) in disabled}
    base: list[BaseRule] = []
    correlations: list[CorrelationRule] = []
    for path, rule in _ordered(parsed):
        if rule.name in off:
            continue
        if pipeline is not None:
            try:
                pipeline.apply(rule)
            except SigmaError as exc:
                raise RuleError(str(path), f"rule {rule.name!r}: {_one_line(exc)}") from None
        if isinstance(rule, SigmaRule):
            base.append(_base(path, rule))
        else:
            sources = [ref.rule.name for ref in rule.referenced_rules]
            if any(name in off for name in sources):
                off.add(rule.name)
                continue
            correlations.append(_correlation(path, rule, {c.info.name: c for c in correlations}))
    return RuleSet(base, correlations)


def _parse_file(path: Path) -> list[SigmaRule | SigmaCorrelationRule]:
    try:
        text = path.read_text(encoding="utf-8")
        rules = list(SigmaCollection.from_yaml(text, collect_errors=False, resolve_references=False).rules)
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(str(path), f"cannot read: {exc}") from None
    except (SigmaError, yaml.YAMLError, ValueError, TypeError, AttributeError) as exc:
        raise RuleError(str(path), _one_line(exc)) from None
    for rule in rules:
        if isinstance(rule, SigmaCorrelationRule) and rule.type not in _KINDS:
            raise RuleError(str(path), f"rule {rule.name!r}: correlation type {rule.type} is not supported")
    return [r for r in rules if isinstance(r, SigmaRule | SigmaCorrelationRule)]


def _ordered(
    parsed: list[tuple[Path, SigmaRule | SigmaCorrelationRule]],
) -> list[tuple[Path, SigmaRule | SigmaCorrelationRule]]:
    """Base rules first, then correlations, each after those it refers to."""
    out: list[tuple[Path, SigmaRule | SigmaCorrelationRule]] = [
        (p, r) for p, r in parsed if isinstance(r, SigmaRule)
    ]
    placed = {r.name for _, r in out}
    waiting = [(p, r) for p, r in parsed if isinstance(r, SigmaCorrelationRule)]
    while waiting:
        ready = [(p, r) for p, r in waiting if all(ref.rule.name in placed for ref in r.referenced_rules)]
        if not ready:
            path, rule = waiting[0]
            raise RuleError(str(path), f"rule {rule.name!r}: correlations refer to each other in a cycle")
        out.extend(ready)
        placed.update(r.name for _, r in ready)
        waiting = [(p, r) for p, r in waiting if r.name not in placed]
    return out


def _info(path: Path, rule: SigmaRule | SigmaCorrelationRule) -> RuleInfo:
    level = rule.level.name.lower() if rule.level is not None else "medium"
    return RuleInfo(
        id=str(rule.id) if rule.id else rule.name or "",
        name=rule.name or "",
        title=rule.title,
        description=rule.description or "",
        level=level,
        tags=tuple(str(t) for t in rule.tags),
        references=tuple(rule.references),
        author=rule.author or "",
        date=rule.date.isoformat() if rule.date else "",
        modified=rule.modified.isoformat() if rule.modified else "",
        falsepositives=tuple(rule.falsepositives),
        detector=path.stem,
        path=str(path),
    )


def _base(path: Path, rule: SigmaRule) -> BaseRule:
    threat = rule.logsource.service == THREAT_SERVICE
    try:
        trees = [cond.parsed for cond in rule.detection.parsed_condition]
    except SigmaError as exc:
        raise RuleError(str(path), f"rule {rule.name!r}: {_one_line(exc)}") from None
    for tree in trees:
        for name in condition_fields(tree):
            if not (name in THREAT_FIELDS if threat else is_flow_field(name)):
                raise RuleError(str(path), f"rule {rule.name!r}: unknown field {name!r}")
    try:
        predicates = [compile_condition(tree) for tree in trees]
    except ValueError as exc:
        raise RuleError(str(path), f"rule {rule.name!r}: {exc}") from None
    queries = [lucene_condition(tree) for tree in trees]
    query = None if None in queries else " OR ".join(q for q in queries if q)

    def predicate(fields: Any) -> Any:
        mask = predicates[0](fields)
        for p in predicates[1:]:
            mask = mask | p(fields)
        return mask

    return BaseRule(
        info=_info(path, rule),
        predicate=predicates[0] if len(predicates) == 1 else predicate,
        query=query,
        output=rule._output,
        threat=threat,
    )


def _correlation(
    path: Path, rule: SigmaCorrelationRule, earlier: dict[str, CorrelationRule]
) -> CorrelationRule:
    def fail(message: str) -> RuleError:
        return RuleError(str(path), f"rule {rule.name!r}: {message}")

    if len(rule.aliases):
        raise fail("field aliases are not supported")
    condition = rule.condition
    if not isinstance(condition, SigmaCorrelationCondition):
        raise fail("extended correlation conditions are not supported")
    fieldref = condition.fieldref
    if isinstance(fieldref, list):
        raise fail("a condition over several fields is not supported")
    kind = _KINDS[rule.type]
    if kind != "event_count" and not fieldref:
        raise fail(f"{kind} needs condition.field")
    group_by = tuple(rule.group_by or ())
    sources = tuple(ref.rule.name or "" for ref in rule.referenced_rules)
    chained = [earlier[name] for name in sources if name in earlier]
    if chained and len(chained) != len(sources):
        raise fail("cannot correlate base rules and correlations together")
    for name in [*group_by, *([fieldref] if fieldref else [])]:
        if chained:
            if any(name not in c.spec.group_by for c in chained):
                raise fail(f"field {name!r} is not grouped by the correlations it chains on")
        elif not is_flow_field(name):
            raise fail(f"unknown field {name!r}")
    spec = CorrelationSpec(
        name=rule.name or "",
        kind=kind,  # type: ignore[arg-type]
        sources=sources,
        group_by=group_by,
        timespan_ns=rule.timespan.seconds * 1_000_000_000,
        op=condition.op.name.lower(),
        threshold=float(condition.count),
        field=fieldref,
    )
    return CorrelationRule(info=_info(path, rule), spec=spec, output=rule._output)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
