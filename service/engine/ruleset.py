"""Rule files (``rules/*.yaml``) -> validated rule objects -> durable-rules definitions.

A rule is data a clinical informaticist can read: its catalogue ID, the catalogue's IF text,
its sources, a ``match`` of small fact patterns, and either ``derive`` (a derived fact of §5.3)
or ``conclude`` (a card-level conclusion). See docs/rules.md.

Semantics (three-valued, Kleene):
* every fact pattern is over a fact that is always asserted, known or unknown;
* a derive rule also yields ``unknown`` for its derived fact when its pattern is not false
  (every atom true or unknown): the compiler adds that "possible" variant automatically;
* a derived fact takes the highest-precedence value derived in its stratum, else ``false``;
* rules are stratified by the derived facts they read, and each stratum runs in its own
  durable-rules ruleset after the previous one is complete, so no rule depends on assertion
  order and ``none()`` is never needed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from service.config_errors import ConfigError

from . import schema

# libyaml's safe loader is ~7x faster than the pure-Python one (worker cold start)
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

NUMERIC = {"gte": "$gte", "gt": "$gt", "lte": "$lte", "lt": "$lt"}
INDICATORS = ("info", "warning", "critical")  # ascending severity
# FHIR resources read at a point in time: a fact read from one declares a window (facts.yaml) unless any_age
DATED_RESOURCES = frozenset({"Observation", "RiskAssessment", "DiagnosticReport", "ImagingStudy"})


class RuleError(ConfigError):
    """The rule base is broken: the service must not start with it (a configuration error)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a rule file: the file, the path inside it, the line (when found) and what is wrong."""

    file: str
    path: tuple[str | int, ...]
    message: str
    line: int | None = None
    rule: str = ""  # the rule's id, when the problem is inside a rule

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path).lstrip(".")
        return f"{where}: {self.rule + ' ' if self.rule else ''}{path or '(file)'}: {self.message}"


class RuleBaseError(RuleError):
    """Every problem of the rule base at once, each with file, line and path."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        listing = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"the rule base has {len(problems)} problem(s):\n{listing}")


@dataclass(frozen=True)
class Atom:
    alias: str
    target: str  # fact or derived-fact id
    derived: bool
    op: str
    operand: Any
    same_level: str | None = None
    src: str | None = None
    src_not: str | None = None


@dataclass
class Rule:
    id: str
    title: str
    catalogue: str
    sources: list[str]
    branches: list[list[Atom]]
    derive: tuple[str, str] | None = None
    conclude: dict[str, Any] | None = None
    unknown_variant: bool = True
    file: str = ""
    stratum: int = 0
    index: int = 0  # position in its file's ``rules`` list

    @cached_property  # read for every rule by each card of every call (cards/build.py); branches never change
    def reads_derived(self) -> frozenset[str]:
        return frozenset(a.target for b in self.branches for a in b if a.derived)

    @cached_property
    def reads_facts(self) -> frozenset[str]:
        return frozenset(a.target for b in self.branches for a in b if not a.derived)

    @property
    def thresholds(self) -> list[str]:
        names = {str(a.operand) for b in self.branches for a in b if a.op in NUMERIC and isinstance(a.operand, str)}
        if self.conclude:
            names.update(self.conclude.get("thresholds", []))
        return sorted(names)


@dataclass
class DerivedFact:
    id: str
    description: str
    values: list[str]  # precedence, first wins; "false" is the default when nothing was derived
    sources: list[str] = field(default_factory=list)


@dataclass
class RuleBase:
    rules: list[Rule]
    derived: dict[str, DerivedFact]
    thresholds: dict[str, dict[str, Any]]
    cards: dict[str, dict[str, Any]]
    suggestions: dict[str, dict[str, Any]]
    override_reasons: list[dict[str, str]]
    digest: str
    draft_suggestions: dict[str, dict[str, Any]] = field(default_factory=dict)
    facts: dict[str, schema.FactSpec] = field(default_factory=dict)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)  # cards.yaml: what a clinician sees
    references: dict[str, dict[str, Any]] = field(default_factory=dict)  # cards.yaml: cited works by key
    withhold: dict[str, list[str]] = field(default_factory=dict)  # cards.yaml: a fired rule withholds others
    # what a reader derives from the loaded base once per process instead of once per request (e.g. cards: the
    # decisions each fact feeds); filled on first use, so a base is not changed once it has been read
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def by_id(self, rule_id: str) -> list[Rule]:
        by_id: dict[str, list[Rule]] | None = self.memo.get("by_id")
        if by_id is None:
            by_id = {}
            for r in self.rules:
                by_id.setdefault(r.id, []).append(r)
            self.memo["by_id"] = by_id  # complete before another thread can read it
        return list(by_id.get(rule_id, []))

    @property
    def rule_ids(self) -> list[str]:
        return sorted({r.id for r in self.rules}, key=_rule_sort_key)

    @property
    def strata(self) -> int:
        return 1 + max((r.stratum for r in self.rules), default=0)


def _rule_sort_key(rule_id: str) -> tuple[str, int, str]:
    prefix, _, num = rule_id.rpartition("-")
    return (prefix, int(num) if num.isdigit() else 0, rule_id)


def load_rulebase(rules_dir: str | Path, threshold_overrides: Mapping[str, Any] | None = None) -> RuleBase:
    """Load, validate and stratify ``rules_dir``; a :class:`RuleBaseError` lists every problem at once."""
    loader = _Loader(Path(rules_dir))
    base = loader.load(threshold_overrides or {})
    if loader.problems:
        raise RuleBaseError(loader.locate())
    try:
        _stratify(base)
    except RuleError as exc:
        raise RuleBaseError([Problem("rules-*.yaml", (), str(exc))]) from exc
    return base


def check_rulebase(rules_dir: str | Path, threshold_overrides: Mapping[str, Any] | None = None) -> list[Problem]:
    """Every problem of the rule base (empty when it loads): ``spinecds rules --check``."""
    try:
        load_rulebase(rules_dir, threshold_overrides)
    except RuleBaseError as exc:
        return exc.problems
    return []


class _Loader:
    """Reads every rule file, validates each against its schema, then checks the files against each other."""

    def __init__(self, root: Path):
        self.root = root
        self.texts: dict[str, str] = {}
        self.problems: list[Problem] = []

    # -- reading and schema

    def read(self, name: str) -> Any:
        path = self.root / name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            self.problems.append(Problem(name, (), f"cannot read: {exc.strerror or exc}"))
            return None
        self.texts[name] = text
        try:
            return yaml.load(text, Loader=_SafeLoader)  # a safe loader
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            self.problems.append(Problem(name, (), f"not valid YAML: {getattr(exc, 'problem', exc)}", line))
            return None

    def validate(
        self, name: str, model: type[schema.Strict], data: Any, prefix: tuple[str | int, ...] = (), rule: str = ""
    ) -> Any:
        """``model`` validated from ``data``, or None after recording every schema error with its path."""
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            self.problems.extend(replace(p, rule=rule) for p in _schema_problems(name, exc, data, prefix))
            return None

    def problem(self, name: str, path: tuple[str | int, ...], message: str, rule: str = "") -> None:
        self.problems.append(Problem(name, path, message, rule=rule))

    def locate(self) -> list[Problem]:
        """The problems with the line each path points to (the YAML is composed again only when something is wrong)."""
        nodes: dict[str, Any] = {}
        out = []
        for p in self.problems:
            if p.line is None and p.file in self.texts:
                if p.file not in nodes:
                    nodes[p.file] = _compose(self.texts[p.file])
                p = replace(p, line=_line_of(nodes[p.file], p.path))
            out.append(p)
        return sorted(out, key=lambda p: (p.file, p.line or 0))

    # -- the whole rule base

    def load(self, overrides: Mapping[str, Any]) -> RuleBase:
        self.broken: set[str] = set()  # declarations that failed their schema: patterns reading them are not checked
        raw_thresholds = self.read("thresholds.yaml")
        thresholds = {
            name: spec.model_dump() | {"value": raw_thresholds[name]["value"]}
            for name, spec in self.entries("thresholds.yaml", raw_thresholds, (), schema.Threshold).items()
        }
        for name, value in overrides.items():
            if name not in thresholds:
                self.problem("SPINECDS_THRESHOLDS_FILE", (name,), "unknown threshold")
            elif not isinstance(value, int | float) or isinstance(value, bool):
                self.problem("SPINECDS_THRESHOLDS_FILE", (name,), "must be a number")
            else:
                thresholds[name]["value"] = value
                thresholds[name]["local_default"] = False
        for spec in thresholds.values():
            spec.setdefault("local_default", True)

        listed = self.top("derived.yaml", schema.DerivedFile, "derived", [])
        by_id = {str(d.get("id")): d for d in listed if isinstance(d, Mapping)} if isinstance(listed, list) else {}
        declared = self.entries("derived.yaml", by_id, ("derived",), schema.DerivedSpec, index=True)
        derived = {k: DerivedFact(d.id, d.description, list(d.values), list(d.sources)) for k, d in declared.items()}
        facts = self.entries(
            "facts.yaml", self.top("facts.yaml", schema.FactsFile, "facts", {}), ("facts",), schema.FactSpec
        )
        raw_cards = self.read("cards.yaml")
        self.validate("cards.yaml", schema.CardsFile, raw_cards)
        cards = raw_cards if isinstance(raw_cards, Mapping) else {}

        rules: list[Rule] = []
        self.rule_ids: set[str] = set()  # every rule's id, valid or not (a broken rule is reported once)
        located: list[tuple[Rule, schema.RuleSpec, int]] = []
        for path in sorted(self.root.glob("rules-*.yaml")):
            raw = self.read(path.name)
            if raw is None or self.validate(path.name, schema.RulesFile, raw) is None:
                continue
            for index, raw_rule in enumerate(raw["rules"]):
                rid = str(raw_rule.get("id", "")) if isinstance(raw_rule, Mapping) else ""
                self.rule_ids.add(rid)
                spec = self.validate(path.name, schema.RuleSpec, raw_rule, ("rules", index), rid)
                if spec is not None:
                    rule = _rule(spec, raw_rule, path.name, index)
                    rules.append(rule)
                    located.append((rule, spec, index))
        base = RuleBase(
            rules,
            derived,
            thresholds,
            cards.get("cards", {}),
            cards.get("suggestions", {}),
            list(cards.get("override_reasons", [])),
            hashlib.sha256("\n".join(self.texts[k] for k in sorted(self.texts)).encode()).hexdigest()[:12],
            cards.get("draft_suggestions", {}),
            facts,
            cards.get("decisions", {}),
            cards.get("references", {}),
            {k: list(v) for k, v in (cards.get("withhold") or {}).items()},
        )
        self.check_facts(base)
        self.check_cards(base)
        for rule, spec, index in located:
            self.check_rule(base, rule, spec, ("rules", index))
        return base

    def top(self, name: str, model: type[schema.Strict], key: str, empty: Any) -> Any:
        """The ``key`` entries of a file whose other top-level keys are validated by ``model``."""
        raw = self.read(name)
        if raw is None:
            return empty
        if not isinstance(raw, Mapping):
            self.problem(name, (), f"expected a mapping with {key!r}")
            return empty
        self.validate(name, model, {**raw, key: empty})
        return raw.get(key, empty)

    def entries(
        self, name: str, raw: Any, at: tuple[str | int, ...], model: type[Any], *, index: bool = False
    ) -> dict[str, Any]:
        """Each entry of a mapping validated on its own: the valid ones (the others are problems, and broken)."""
        if not isinstance(raw, Mapping):
            self.problem(name, at, "expected a mapping of entries")
            return {}
        out = {}
        for i, (key, value) in enumerate(raw.items()):
            spec = self.validate(name, model, value, at + ((i,) if index else (str(key),)))
            if spec is None:
                self.broken.add(str(key))
            else:
                out[str(key)] = spec
        return out

    # -- cross-file checks

    def check_facts(self, base: RuleBase) -> None:
        from service.facts.extract import catalogue_fact_ids  # the extractor asserts the facts declared here

        asserted = set(catalogue_fact_ids())
        for fid in sorted(set(base.facts) - asserted):
            self.problem("facts.yaml", ("facts", fid), "declared, but no extractor asserts it (facts/extract.py)")
        for fid in sorted(asserted - set(base.facts) - self.broken):
            self.problem("facts.yaml", ("facts",), f"{fid}: asserted by the extractor but not declared")
        for fid, spec in base.facts.items():
            if spec.window is None and any(s.resource in DATED_RESOURCES and not s.any_age for s in spec.sources):
                self.problem(
                    "facts.yaml",
                    ("facts", fid),
                    "read from a dated record: declare its window: (or any_age: true on that source, saying why)",
                )
            if spec.horizon is None and any(s.resource == "RiskAssessment" for s in spec.sources):
                self.problem("facts.yaml", ("facts", fid), "a RiskAssessment prediction declares its horizon:")
            if spec.window is not None:
                self.check_days(base, ("facts", fid, "window"), spec.window)
            if spec.window_if_false is not None:
                self.check_days(base, ("facts", fid, "window_if_false"), spec.window_if_false)
                if spec.type != "boolean" or spec.window is None:
                    self.problem("facts.yaml", ("facts", fid, "window_if_false"), "only beside a window:, on a boolean")
            if spec.horizon is not None:
                self.check_days(base, ("facts", fid, "horizon", "low"), spec.horizon.low)
                self.check_days(base, ("facts", fid, "horizon", "high"), spec.horizon.high)

    def check_days(self, base: RuleBase, at: tuple[str | int, ...], name: str) -> None:
        """A window or horizon names a threshold counted in days."""
        threshold = base.thresholds.get(name)
        if threshold is None:
            self.problem("facts.yaml", at, f"unknown threshold {name!r}")
        elif threshold["unit"] != "days":
            self.problem("facts.yaml", at, f"threshold {name!r} is in {threshold['unit']!r}, not days")

    def check_cards(self, base: RuleBase) -> None:
        ids = self.rule_ids
        for name, group in base.cards.items():
            for i, rid in enumerate(group.get("order", [])):
                if rid not in ids:
                    self.problem("cards.yaml", ("cards", name, "order", i), f"no rule {rid}")
            for i, target in enumerate(group.get("suppresses", [])):
                if target not in base.cards:
                    self.problem("cards.yaml", ("cards", name, "suppresses", i), f"no card group {target!r}")
            for key in ("decision", "needs_data_to"):
                if key in group and group[key] not in base.decisions:
                    self.problem("cards.yaml", ("cards", name, key), f"unknown decision {group[key]!r}")
        for rid, withheld in base.withhold.items():
            for i, target in enumerate([rid, *withheld]):
                if target not in ids:
                    self.problem("cards.yaml", ("withhold", rid) + ((i - 1,) if i else ()), f"no rule {target}")

    def check_rule(self, base: RuleBase, rule: Rule, spec: schema.RuleSpec, at: tuple[str | int, ...]) -> None:
        file = rule.file

        def problem(path: tuple[str | int, ...], message: str) -> None:
            self.problem(file, path, message, rule.id)

        multi = spec.match_any is not None
        for b, branch in enumerate(spec.branches):
            where = at + (("match_any", b) if multi else ("match",))
            for alias, pattern in branch.items():
                if {pattern.target, str(pattern.operand)} & self.broken:
                    continue  # its declaration is broken, and reported
                wrong = _pattern_problem(base, pattern, branch)
                if wrong:
                    problem(where + (alias, *wrong[0]), wrong[1])
        if spec.derive:
            d = base.derived.get(spec.derive.fact)
            if d is None:
                problem(at + ("derive", "fact"), f"{spec.derive.fact} is not declared in derived.yaml")
            elif _as_value(spec.derive.value) not in d.values:
                problem(at + ("derive", "value"), f"{d.id} takes {', '.join(d.values)}, not {spec.derive.value!r}")
        if spec.conclude:
            c = spec.conclude
            group = base.cards.get(c.card)
            if group is None:
                problem(at + ("conclude", "card"), f"no card group {c.card!r} in cards.yaml")
            elif rule.id not in group.get("order", []):
                problem(at + ("conclude", "card"), f"{rule.id} is not in the order of card group {c.card}")
            for key, known in (("suggestions", base.suggestions), ("draft_suggestions", base.draft_suggestions)):
                for i, name in enumerate(getattr(c, key)):
                    if name not in known:
                        problem(at + ("conclude", key, i), f"no {key[:-1].replace('_', ' ')} {name!r}")
            for i, name in enumerate(c.thresholds):
                if name not in base.thresholds and name not in self.broken:
                    problem(at + ("conclude", "thresholds", i), f"unknown threshold {name!r}")


def _pattern_problem(
    base: RuleBase, p: schema.Pattern, branch: Mapping[str, schema.Pattern]
) -> tuple[tuple[str, ...], str] | None:
    """What is wrong with one pattern, checked against the fact it reads: (path inside it, message), or None."""
    op, operand = p.op, p.operand
    if p.same_level is not None:
        other = branch.get(p.same_level)
        if other is None:
            return ("same_level",), f"no pattern {p.same_level!r} in this match"
        for fid in (p.target, other.target):
            fact = base.facts.get(fid)
            if fact is not None and fact.per != "level":
                return ("same_level",), f"{fid} is a per-patient fact; same_level needs per-level facts"
    if op in {"is", "not"} and isinstance(operand, str) and operand in base.thresholds:
        return (op,), f"{operand!r} is a threshold: compare it with gte/gt/lte/lt, not {op}"
    if p.derived is not None:
        d = base.derived.get(p.derived)
        if d is None:
            return ("derived",), f"{p.derived} is not declared in derived.yaml"
        if op not in {"is", "in", "not"}:
            return (op,), f"derived fact {d.id}: only is, in or not"
        takes = [*d.values, "false"]
        for value in operand if op == "in" else [operand]:
            if _as_value(value) not in takes:
                return (op,), f"{d.id} takes {', '.join(takes)}, never {value!r}"
        return None
    fact = base.facts.get(p.target)
    if fact is None:
        return ("fact",), f"{p.target} is not declared in facts.yaml"
    if op in {"unknown", "known"}:
        return None
    if op in NUMERIC:
        if fact.type != "number":
            return (op,), f"{p.target} is a {fact.type} fact: {op} compares numbers only"
        if isinstance(operand, bool):
            return (op,), "needs a number or a threshold name"
        if isinstance(operand, str) and operand not in base.thresholds:
            return (op,), f"unknown threshold {operand!r}"
        return None
    for value in operand if op == "in" else [operand]:
        wrong = _value_problem(fact, value)
        if wrong:
            return (op,), f"{p.target}: {wrong}"
    return None


def _value_problem(fact: schema.FactSpec, value: Any) -> str | None:
    if fact.type == "boolean" and not isinstance(value, bool):
        return f"a boolean fact is true or false, not {value!r}"
    if fact.type == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"a number fact compares with numbers, not {value!r}"
    if fact.type == "enum" and value not in fact.values:
        return f"takes {', '.join(fact.values)}, never {value!r}"
    if fact.type == "string" and not isinstance(value, str):
        return f"a string fact compares with text, not {value!r}"
    return None


def _rule(spec: schema.RuleSpec, raw: Mapping[str, Any], file: str, index: int) -> Rule:
    branches = [
        [
            Atom(
                alias,
                p.target,
                p.derived is not None,
                p.op,
                _derived_operand(p) if p.derived is not None else p.operand,
                p.same_level,
                p.src,
                p.src_not,
            )
            for alias, p in branch.items()
        ]
        for branch in spec.branches
    ]
    derive = (spec.derive.fact, _as_value(spec.derive.value)) if spec.derive else None
    conclude = dict(raw["conclude"]) if spec.conclude else None
    return Rule(
        spec.id,
        spec.title,
        spec.catalogue,
        list(spec.sources),
        branches,
        derive,
        conclude,
        spec.unknown_variant,
        file,
        index=index,
    )


def _derived_operand(p: schema.Pattern) -> Any:
    return [_as_value(v) for v in p.operand] if p.op == "in" else _as_value(p.operand)


def _as_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _schema_problems(file: str, exc: ValidationError, data: Any, prefix: tuple[str | int, ...]) -> list[Problem]:
    """pydantic's errors as problems on the YAML path (union-member tags dropped, one problem per path)."""
    by_path: dict[tuple[str | int, ...], list[str]] = {}
    for err in exc.errors():
        path = _data_path(data, err["loc"], err["type"])
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        by_path.setdefault(path, [])
        if message not in by_path[path]:
            by_path[path].append(message)
    if prefix == () and file == "thresholds.yaml":
        return [Problem(file, path[1:], "; ".join(msgs)) for path, msgs in by_path.items()]
    return [Problem(file, prefix + path, "; ".join(msgs)) for path, msgs in by_path.items()]


def _data_path(data: Any, loc: tuple[Any, ...], kind: str) -> tuple[str | int, ...]:
    """The part of pydantic's ``loc`` that walks ``data`` (its union tags such as ``int`` are not keys)."""
    path: list[str | int] = []
    node = data
    for i, step in enumerate(loc):
        in_mapping = isinstance(node, Mapping) and step in node
        if in_mapping or (isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)):
            node = node[step]
        elif i == len(loc) - 1 and kind in {"missing", "extra_forbidden"}:
            path.append(step)
            break
        else:
            continue
        path.append(step)
    return tuple(path)


def _compose(text: str) -> Any:
    try:
        return yaml.compose(text, Loader=_SafeLoader)
    except yaml.YAMLError:
        return None


def _line_of(node: Any, path: tuple[str | int, ...]) -> int | None:
    """The line of ``path`` in a composed YAML document (a key's own line), else of its nearest parent."""
    if node is None:
        return None
    line: int = node.start_mark.line + 1
    for step in path:
        if isinstance(node, yaml.MappingNode):
            hit = next(((k, v) for k, v in node.value if k.value == str(step)), None)
            if hit is None:
                return line
            line, node = hit[0].start_mark.line + 1, hit[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _stratify(base: RuleBase) -> None:
    derivers: dict[str, list[Rule]] = {}
    for r in base.rules:
        if r.derive:
            derivers.setdefault(r.derive[0], []).append(r)
    memo: dict[int, int] = {}

    def stratum(rule: Rule, path: tuple[str, ...]) -> int:
        if id(rule) in memo:
            return memo[id(rule)]
        if rule.id in path:
            raise RuleError(f"cycle through derived facts: {' -> '.join(path + (rule.id,))}")
        level = 0
        for did in rule.reads_derived:
            for dep in derivers.get(did, []):
                level = max(level, stratum(dep, path + (rule.id,)) + 1)
            if did not in derivers:
                raise RuleError(f"{rule.id}: nothing derives {did}")
        memo[id(rule)] = level
        return level

    for r in base.rules:
        r.stratum = stratum(r, ())


# ----------------------------------------------------------------------------- durable-rules JSON


def durable_definitions(base: RuleBase) -> list[dict[str, dict[str, Any]]]:
    """One durable-rules ruleset definition per stratum: ``{rule_key: {"all": [...], "run": key}}``."""
    out: list[dict[str, dict[str, Any]]] = [{} for _ in range(base.strata)]
    for index, rule in enumerate(base.rules):
        for b, branch in enumerate(rule.branches):
            key = f"{index}:{b}:t"
            out[rule.stratum][key] = {"all": [_pattern(a, base, possible=False) for a in branch], "run": key}
            if rule.derive and rule.unknown_variant and _unknown_ranks_below(base, rule):
                pkey = f"{index}:{b}:u"
                out[rule.stratum][pkey] = {"all": [_pattern(a, base, possible=True) for a in branch], "run": pkey}
    return out


def _unknown_ranks_below(base: RuleBase, rule: Rule) -> bool:
    assert rule.derive
    values = base.derived[rule.derive[0]].values
    return "unknown" in values and values.index("unknown") > values.index(rule.derive[1])


def _pattern(atom: Atom, base: RuleBase, *, possible: bool) -> dict[str, Any]:
    terms: list[dict[str, Any]] = [{"fid": atom.target}]
    if atom.same_level:
        terms.append({"lvl": {atom.same_level: "lvl"}})
    if atom.src:
        terms.append({"src": atom.src})
    if atom.src_not:
        terms.append({"$neq": {"src": atom.src_not}})
    if atom.derived:
        terms.append(_derived_test(atom, possible))
    else:
        terms.append(_fact_test(atom, base, possible))
    return {atom.alias: {"$and": terms}}


def _value_test(atom: Atom, base: RuleBase) -> dict[str, Any]:
    op, operand = atom.op, atom.operand
    if op == "is":
        return {"v": operand}
    if op == "in":
        return {"$or": [{"v": v} for v in operand]} if len(operand) > 1 else {"v": operand[0]}
    if op == "not":
        return {"$neq": {"v": operand}}
    value = base.thresholds[operand]["value"] if isinstance(operand, str) else operand
    return {NUMERIC[op]: {"v": value}}


def _fact_test(atom: Atom, base: RuleBase, possible: bool) -> dict[str, Any]:
    if atom.op == "unknown":
        return {"known": not bool(atom.operand)}
    if atom.op == "known":
        return {"known": bool(atom.operand)}
    test = {"$and": [{"known": True}, _value_test(atom, base)]}
    return {"$or": [{"known": False}, test]} if possible else test


def _derived_test(atom: Atom, possible: bool) -> dict[str, Any]:
    values = list(atom.operand) if atom.op == "in" else [atom.operand]
    if atom.op == "not":
        test: dict[str, Any] = {"$neq": {"v": atom.operand}}
        return test
    if atom.op not in {"is", "in"}:
        raise RuleError(f"derived fact {atom.target}: only is/in/not comparisons")
    if possible and "unknown" not in values:
        values.append("unknown")
    return {"$or": [{"v": v} for v in values]} if len(values) > 1 else {"v": values[0]}
