"""Rule conditions as FHIRPath, so that other FHIR tools can execute the published PlanDefinitions.

A condition is evaluated against ``%facts``: a FHIR R4 ``Parameters`` resource holding every fact of
one evaluation (``facts_parameters``), one parameter per fact and level::

    {"name": "F-PAIN", "part": [{"name": "level", "valueString": "*"},
                                 {"name": "known", "valueBoolean": true},
                                 {"name": "value", "valueInteger": 8},
                                 {"name": "source", "valueString": "bone-scan"}]}

Derived facts (``D-*``) are parameters of the same shape, always known, with the value they took
("false" when no rule derived them). A rule's variants and ``match_any`` branches are OR-ed in one
expression; the atoms of a branch are AND-ed; atoms joined by ``same_level`` must hold at one
vertebral level (the intersection of their levels is not empty). The expression is true exactly
when the rule fires definitely in the engine (an unknown fact never satisfies a value test), which
``tests/test_plandefinition.py`` checks on every patient case with fhirpathpy.
"""

from __future__ import annotations

from typing import Any

from service.engine.ruleset import NUMERIC, Atom, Rule, RuleBase
from service.engine.runtime import Evaluation

LANGUAGE = "text/fhirpath"
FHIRPATH_OPS = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _part(name: str) -> str:
    return f"part.where(name = '{name}')"


def _test(atom: Atom, base: RuleBase) -> list[str]:
    """The FHIRPath filters, applied in turn, a fact parameter must pass to satisfy ``atom`` (definitely).

    Chained ``where`` calls, not one ``and``: FHIRPath engines may evaluate both sides of ``and``, and a
    comparison of another fact's value (a string) with a number is a type error.
    """
    terms = [f"name = '{atom.target}'"]
    if atom.src:
        terms.append(f"{_part('source')}.where(value = {_literal(atom.src)}).exists()")
    if atom.src_not:
        terms.append(f"{_part('source')}.where(value = {_literal(atom.src_not)}).empty()")
    value = f"{_part('value')}.value"
    if atom.derived:
        values = list(atom.operand) if atom.op == "in" else [atom.operand]
        if atom.op == "not":
            terms.append(f"{value} != {_literal(atom.operand)}")
        else:
            terms.append(" or ".join(f"{value} = {_literal(v)}" for v in values))
        return terms
    known = f"{_part('known')}.value"
    if atom.op == "unknown":
        terms.append(f"{known} = {_literal(not bool(atom.operand))}")
    elif atom.op == "known":
        terms.append(f"{known} = {_literal(bool(atom.operand))}")
    else:
        terms.append(f"{known} = true")
        if atom.op == "is":
            terms.append(f"{value} = {_literal(atom.operand)}")
        elif atom.op == "in":
            terms.append(" or ".join(f"{value} = {_literal(v)}" for v in atom.operand))
        elif atom.op == "not":
            terms.append(f"{value} != {_literal(atom.operand)}")
        elif atom.op in NUMERIC:
            operand = atom.operand
            number = base.thresholds[operand]["value"] if isinstance(operand, str) else operand
            terms.append(f"{value} {FHIRPATH_OPS[atom.op]} {_literal(number)}")
    return terms


def _matching(atom: Atom, base: RuleBase) -> str:
    return "%facts.parameter" + "".join(f".where({term})" for term in _test(atom, base))


def _components(branch: list[Atom]) -> list[list[Atom]]:
    """Atoms joined by same_level, transitively, form one component (they share one level)."""
    parent = {a.alias: a.alias for a in branch}

    def root(alias: str) -> str:
        while parent[alias] != alias:
            alias = parent[alias]
        return alias

    for a in branch:
        if a.same_level and a.same_level in parent:
            parent[root(a.alias)] = root(a.same_level)
    groups: dict[str, list[Atom]] = {}
    for a in branch:
        groups.setdefault(root(a.alias), []).append(a)
    return list(groups.values())


def branch_expression(branch: list[Atom], base: RuleBase) -> str:
    terms = []
    for component in _components(branch):
        if len(component) == 1:
            terms.append(f"{_matching(component[0], base)}.exists()")
            continue
        levels = [f"{_matching(a, base)}.{_part('level')}.value" for a in component]
        joined = levels[0] + "".join(f".intersect({lv})" for lv in levels[1:])
        terms.append(f"({joined}).exists()")
    return " and ".join(terms)


def condition_expression(rules: list[Rule], base: RuleBase) -> str:
    """One boolean FHIRPath expression: true when any variant/branch of the rule ID holds."""
    branches = [branch_expression(b, base) for r in rules for b in r.branches]
    if len(branches) == 1:
        return branches[0]
    return " or ".join(f"({b})" for b in branches)


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, float):
        return {"valueDecimal": value}
    return {"valueString": str(value)}


def facts_parameters(evaluation: Evaluation) -> dict[str, Any]:
    """The ``%facts`` of one evaluation: every fact and every derived fact as a Parameters resource."""
    parameters = []
    for fact in evaluation.facts:
        parts: list[dict[str, Any]] = [
            {"name": "level", "valueString": fact.level},
            {"name": "known", "valueBoolean": fact.known},
        ]
        if fact.known and fact.value is not None:
            parts.append({"name": "value", **_value(fact.value)})
        if fact.source:
            parts.append({"name": "source", "valueString": fact.source})
        parameters.append({"name": fact.fid, "part": parts})
    for did, derived in sorted(evaluation.derived.items()):
        parameters.append(
            {
                "name": did,
                "part": [
                    {"name": "level", "valueString": "*"},
                    {"name": "known", "valueBoolean": True},
                    {"name": "value", "valueString": derived.value},
                ],
            }
        )
    return {"resourceType": "Parameters", "parameter": parameters}
