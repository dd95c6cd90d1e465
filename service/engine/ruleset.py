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
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# libyaml's safe loader is ~7x faster than the pure-Python one (worker cold start)
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

COMPARATORS = ("is", "in", "not", "gte", "gt", "lte", "lt", "unknown", "known")
NUMERIC = {"gte": "$gte", "gt": "$gt", "lte": "$lte", "lt": "$lt"}
INDICATORS = ("info", "warning", "critical")


class RuleError(ValueError):
    pass


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

    @property
    def reads_derived(self) -> set[str]:
        return {a.target for b in self.branches for a in b if a.derived}

    @property
    def reads_facts(self) -> set[str]:
        return {a.target for b in self.branches for a in b if not a.derived}

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
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)  # cards.yaml: what a clinician sees
    references: dict[str, dict[str, Any]] = field(default_factory=dict)  # cards.yaml: cited works by key
    withhold: dict[str, list[str]] = field(default_factory=dict)  # cards.yaml: a fired rule withholds others

    def by_id(self, rule_id: str) -> list[Rule]:
        return [r for r in self.rules if r.id == rule_id]

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
    root = Path(rules_dir)
    texts: list[str] = []

    def read(path: Path) -> Any:
        text = path.read_text(encoding="utf-8")
        texts.append(text)
        return yaml.load(text, Loader=_SafeLoader)  # a safe loader

    thresholds = {k: dict(v) for k, v in read(root / "thresholds.yaml").items()}
    for name, value in (threshold_overrides or {}).items():
        if name not in thresholds:
            raise RuleError(f"thresholds file: unknown threshold {name!r}")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise RuleError(f"thresholds file: {name} must be a number")
        thresholds[name]["value"] = value
        thresholds[name]["local_default"] = False
    for spec in thresholds.values():
        spec.setdefault("local_default", True)
    derived_doc = read(root / "derived.yaml")
    derived = {
        d["id"]: DerivedFact(
            d["id"],
            d.get("description", ""),
            [str(v) for v in d.get("values", ["true", "unknown"])],
            list(d.get("sources", [])),
        )
        for d in derived_doc["derived"]
    }
    cards_doc = read(root / "cards.yaml")
    rules: list[Rule] = []
    for path in sorted(root.glob("rules-*.yaml")):
        doc = read(path)
        for raw in doc.get("rules", []):
            rules.append(_parse_rule(raw, path.name))
    base = RuleBase(
        rules,
        derived,
        thresholds,
        cards_doc.get("cards", {}),
        cards_doc.get("suggestions", {}),
        list(cards_doc.get("override_reasons", [])),
        hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12],
        cards_doc.get("draft_suggestions", {}),
        cards_doc.get("decisions", {}),
        cards_doc.get("references", {}),
        {k: list(v) for k, v in cards_doc.get("withhold", {}).items()},
    )
    _check(base)
    _stratify(base)
    return base


def _parse_rule(raw: Mapping[str, Any], file: str) -> Rule:
    rid = raw.get("id")
    if not isinstance(rid, str):
        raise RuleError(f"{file}: rule without id")
    if "match" in raw and "match_any" in raw:
        raise RuleError(f"{rid}: use either match or match_any")
    raw_branches = raw.get("match_any") or [raw.get("match")]
    branches = [[_parse_atom(rid, alias, spec) for alias, spec in (b or {}).items()] for b in raw_branches]
    if not all(branches):
        raise RuleError(f"{rid}: empty match")
    derive = None
    if "derive" in raw:
        d = raw["derive"]
        derive = (d["fact"], _as_value(d.get("value", True)))
    conclude = raw.get("conclude")
    if derive is None and conclude is None:
        raise RuleError(f"{rid}: a rule needs derive, conclude or both")
    return Rule(
        rid,
        raw.get("title", rid),
        raw.get("catalogue", ""),
        list(raw.get("sources", [])),
        branches,
        derive,
        conclude,
        bool(raw.get("unknown_variant", True)),
        file,
    )


def _as_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_atom(rid: str, alias: str, spec: Mapping[str, Any]) -> Atom:
    if not isinstance(spec, Mapping):
        raise RuleError(f"{rid}.{alias}: pattern must be a mapping")
    if ("fact" in spec) == ("derived" in spec):
        raise RuleError(f"{rid}.{alias}: name exactly one of fact or derived")
    ops = [k for k in COMPARATORS if k in spec]
    if len(ops) != 1:
        raise RuleError(f"{rid}.{alias}: exactly one comparator of {COMPARATORS}")
    extra = set(spec) - set(COMPARATORS) - {"fact", "derived", "same_level", "src", "src_not"}
    if extra:
        raise RuleError(f"{rid}.{alias}: unknown keys {sorted(extra)}")
    derived = "derived" in spec
    op = ops[0]
    operand = spec[op]
    if derived:
        operand = [_as_value(v) for v in operand] if op == "in" else _as_value(operand)
    return Atom(
        alias,
        spec.get("derived") or spec["fact"],
        derived,
        op,
        operand,
        spec.get("same_level"),
        spec.get("src"),
        spec.get("src_not"),
    )


def _check(base: RuleBase) -> None:
    from service.facts.extract import catalogue_fact_ids  # the extractor defines the fact layer

    facts = set(catalogue_fact_ids())
    for name, group in base.cards.items():
        if not set(group.get("orders", [])) <= {"va", "rt", "other"}:
            raise RuleError(f"card group {name}: orders must list va, rt and/or other")
        for key in ("decision", "needs_data_to"):
            if key in group and group[key] not in base.decisions:
                raise RuleError(f"card group {name}: {key} names unknown decision {group[key]}")
    for rule in base.rules:
        for fid in rule.reads_facts - facts:
            raise RuleError(f"{rule.id}: unknown fact {fid}")
        for did in rule.reads_derived - set(base.derived):
            raise RuleError(f"{rule.id}: unknown derived fact {did}")
        if rule.derive and rule.derive[0] not in base.derived:
            raise RuleError(f"{rule.id}: derives undeclared {rule.derive[0]}")
        if rule.derive and rule.derive[1] not in base.derived[rule.derive[0]].values:
            raise RuleError(f"{rule.id}: value {rule.derive[1]} not declared for {rule.derive[0]}")
        for name in rule.thresholds:
            if name not in base.thresholds:
                raise RuleError(f"{rule.id}: unknown threshold {name}")
        if rule.conclude:
            c = rule.conclude
            if c.get("card") not in base.cards:
                raise RuleError(f"{rule.id}: unknown card group {c.get('card')}")
            if c.get("indicator") not in INDICATORS:
                raise RuleError(f"{rule.id}: indicator must be one of {INDICATORS}")
            for s in c.get("suggestions", []):
                if s not in base.suggestions:
                    raise RuleError(f"{rule.id}: unknown suggestion {s}")
            for s in c.get("draft_suggestions", []):
                spec = base.draft_suggestions.get(s)
                if spec is None:
                    raise RuleError(f"{rule.id}: unknown draft suggestion {s}")
                if spec.get("action") not in {"delete", "update"}:
                    raise RuleError(f"draft suggestion {s}: action must be delete or update")
        for branch in rule.branches:
            aliases = {a.alias for a in branch}
            for a in branch:
                if a.same_level and a.same_level not in aliases:
                    raise RuleError(f"{rule.id}.{a.alias}: same_level refers to unknown alias")


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


def definitions_json(base: RuleBase) -> str:
    return json.dumps(durable_definitions(base), sort_keys=True)
