"""A pytest plugin that breaks the product on purpose (``scripts/mutation`` loads it with ``-p``).

``SPINECDS_MUTATION`` names one mutation; the plugin applies it when pytest loads it, before the
tests import the app, so the app the tests build carries the breakage:

* ``cards-empty``: ``build_cards`` returns no card;
* ``rule:<ID>``: the rule(s) with that ID are removed from the loaded rule base;
* ``threshold:<name>:<+1|-1>``: the threshold is off by one (a fraction: by 10 %);
* ``fact-unknown:<F-ID>``: the extractor asserts that fact as unknown, always;
* ``negate:<rule index>:<branch>:<alias>``: that ``is:`` pattern becomes ``not:``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import service.cards.build as build
import service.engine.ruleset as ruleset
import service.facts.extract as extract
from service.facts.model import unknown

MUTATION = os.environ.get("SPINECDS_MUTATION", "")
_load = ruleset.load_rulebase


def _mutated_rulebase(*args: Any, **kwargs: Any) -> ruleset.RuleBase:
    base = _load(*args, **kwargs)
    kind, _, what = MUTATION.partition(":")
    if kind == "rule":
        base.rules = [r for r in base.rules if r.id != what]
    elif kind == "threshold":
        name, _, step = what.rpartition(":")
        value = base.thresholds[name]["value"]
        delta = 1 if isinstance(value, int) else abs(value) * 0.1
        base.thresholds[name]["value"] = value + (delta if step == "+1" else -delta)
    elif kind == "negate":
        index, branch, alias = what.split(":")
        rule = base.rules[int(index)]
        atoms = rule.branches[int(branch)]
        rule.branches[int(branch)] = [replace(a, op="not") if a.alias == alias else a for a in atoms]
    return base


def _no_cards(*_args: Any, **_kwargs: Any) -> list[dict[str, Any]]:
    return []


def _unknown_fact(fid: str) -> None:
    for i, fn in enumerate(extract._ORDERED):

        def wrapped(inp: extract.ExtractionInput, fn: extract.Extractor = fn) -> list[Any]:
            facts = fn(inp)
            return [unknown(f.fid, "mutation", level=f.level) if f.fid == fid else f for f in facts]

        extract._ORDERED[i] = wrapped


if MUTATION == "cards-empty":
    build.build_cards = _no_cards
elif MUTATION.startswith("fact-unknown:"):
    _unknown_fact(MUTATION.partition(":")[2])
elif MUTATION:
    ruleset.load_rulebase = _mutated_rulebase
