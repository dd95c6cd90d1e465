"""durable-rules behind one small interface: compile once, evaluate each request in isolation.

Design (see ../shared/engine/DURABLE-RULES-AND-FHIR-NOTES.md §1.11 and docs/architecture.md):
* ``_SyncHost`` never starts the default host's background timer threads, which would otherwise
  steal rule actions from request threads.
* facts are asserted with the C batch API (serialised once per request, with orjson); code 1 (some
  fact matched no rule) is normal;
  the matches are then drained in the calling thread (``_drain``: the C calls of durable's own
  action loop, without its Closure/Promise objects and a JSON round trip of the state per firing);
* one fresh state (``sid``) per stratum per request, deleted in ``finally`` (1,024 live states
  per ruleset at most; ~0.7 MB each);
* facts are small flat dicts (``fid``, ``known``, ``v``, ``lvl``, ``i``), never raw FHIR (a fact
  with >= 253 properties crashes the process);
* a rule's action is only its name: the matches are read, never acted on in the engine; derived
  facts are resolved between strata.
* the glibc allocator tuning of the notes (~1.7x faster) is applied through the environment
  (MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_) by ``spinecds serve`` before the process
  starts; calling mallopt() in-process after start corrupted the heap here (free(): invalid pointer).
* the C core holds the GIL: concurrency comes from worker processes (gunicorn), and a lock keeps
  the per-process result map consistent.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from service.facts.model import Fact

from .ruleset import Rule, RuleBase, durable_definitions

warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"durable\..*")

import durable_rules_engine  # noqa: E402
from durable import engine as durable_engine  # noqa: E402

Match = dict[str, dict[str, Any]]


class FactSetError(ValueError):
    """The facts handed to the engine are not a fact set: one fact id asserted twice at one level.

    Every pattern of a rule joins facts by id, so k copies of a fact list make a three-fact rule
    fire k**3 times (x32 gave 1.1 million firings, 50 s). The extractor asserts each fact once per
    level; anything else is refused before it reaches the engine.
    """


class _SyncHost(durable_engine.Host):  # type: ignore[misc]
    """A durable-rules host without background dispatch/timer threads."""

    def _run(self) -> None:  # the default starts threading.Timer loops
        return None

    def get_action(self, action_name: str) -> Callable[[Any], None]:
        def action(c: Any) -> None:  # durable needs one per rule; RuleEngine._drain reads the matches instead
            raise RuntimeError(f"durable-rules ran action {action_name} itself; RuleEngine._drain reads matches")

        return action


@dataclass
class Firing:
    rule: Rule
    facts: list[Fact]
    derived: list[DerivedValue]
    possible: bool
    value: str = ""  # the derived value this firing yields ("" for conclusions)

    def rule_ids(self) -> list[str]:
        ids = [self.rule.id]
        for d in self.derived:
            ids.extend(d.rule_ids())
        return ids

    def all_facts(self) -> list[Fact]:
        out = list(self.facts)
        for d in self.derived:
            out.extend(d.all_facts())
        return out


@dataclass
class DerivedValue:
    id: str
    value: str
    firings: list[Firing] = field(default_factory=list)

    def rule_ids(self) -> list[str]:
        return [rid for f in self.firings for rid in f.rule_ids()]

    def all_facts(self) -> list[Fact]:
        return [fact for f in self.firings for fact in f.all_facts()]


@dataclass
class Evaluation:
    facts: list[Fact]
    derived: dict[str, DerivedValue]
    conclusions: list[Firing]


class RuleEngine:
    """The compiled rule base (durable-rules; not SQLAlchemy's ``Engine``); ``evaluate`` is thread-safe."""

    _instances = 0

    def __init__(self, base: RuleBase) -> None:
        self.base = base
        self._lock = threading.Lock()
        self._host = _SyncHost()
        RuleEngine._instances += 1
        definitions = durable_definitions(base)
        self._names: list[str] = []
        for k, definition in enumerate(definitions):
            name = f"spinecds_{base.digest}_{RuleEngine._instances}_s{k}"
            self._host.set_rulesets({name: definition})
            self._names.append(name)
        self._rulesets = [self._host.get_ruleset(n) for n in self._names]
        # each stratum is sent only the facts and derived facts its rules read (less JSON, less matching)
        self._reads: list[tuple[frozenset[str], frozenset[str]]] = []
        for k in range(len(definitions)):
            rules = [r for r in base.rules if r.stratum == k]
            facts = frozenset(f for r in rules for f in r.reads_facts)
            derived = frozenset(d for r in rules for d in r.reads_derived)
            self._reads.append((facts, derived))
        # a derived fact is complete after the last stratum that derives it
        last: dict[str, int] = {}
        for rule in base.rules:
            if rule.derive:
                last[rule.derive[0]] = max(last.get(rule.derive[0], 0), rule.stratum)
        self._complete_after: dict[int, list[str]] = {}
        for did, stratum in sorted(last.items()):
            self._complete_after.setdefault(stratum, []).append(did)
        self._by_key: dict[str, tuple[Rule, bool]] = {}
        for index, rule in enumerate(base.rules):
            for b in range(len(rule.branches)):
                self._by_key[f"{index}:{b}:t"] = (rule, False)
                self._by_key[f"{index}:{b}:u"] = (rule, True)

    def evaluate(self, facts: Sequence[Fact]) -> Evaluation:
        _check_fact_set(facts)
        derived: dict[str, DerivedValue] = {}
        conclusions: list[Firing] = []
        candidates: dict[str, list[Firing]] = {}
        # the facts are serialised once per request; each stratum gets those its rules read, and the
        # derived facts so far
        fact_json = [(f.fid, _json(f.engine_dict(i))[1:]) for i, f in enumerate(facts)]
        for stratum, ruleset in enumerate(self._rulesets):
            reads_facts, reads_derived = self._reads[stratum]
            names = sorted(derived)
            payload = [text for fid, text in fact_json if fid in reads_facts] + [
                _json({"t": "d", "fid": name, "v": derived[name].value, "lvl": "*", "i": j})[1:]
                for j, name in enumerate(names)
                if name in reads_derived
            ]
            derived_in_order = [derived[n] for n in names]  # what the "i" of a derived fact in a match points to
            for key, match in self._run(ruleset, payload) if payload else []:
                rule, possible = self._by_key[key]
                firing = self._firing(rule, possible, match, facts, derived_in_order)
                if rule.derive:
                    firing.value = "unknown" if possible else rule.derive[1]
                    candidates.setdefault(rule.derive[0], []).append(firing)
                if rule.conclude and not possible:
                    conclusions.append(firing)
            for did in self._complete_after.get(stratum, []):
                derived[did] = self._resolve(did, candidates.pop(did, []))
        conclusions.sort(key=lambda f: (f.rule.id, [x.level for x in f.facts]))
        return Evaluation(list(facts), derived, conclusions)

    def _run(self, ruleset: Any, payload: list[str]) -> list[tuple[str, Match]]:
        """Assert ``payload`` (JSON objects without their opening brace) under a fresh state id."""
        sid = uuid.uuid4().hex
        head = '{"sid": "' + sid + '", '
        batch = "[" + ", ".join(head + item for item in payload) + "]"
        try:
            with self._lock:
                code, offset = durable_rules_engine.assert_facts(ruleset._handle, batch)
                if code == 2:
                    raise RuntimeError("durable-rules dropped a fact as a duplicate (hash collision)")
                found = _drain(ruleset._handle, offset)
            return _in_key_order(found)
        finally:
            with self._lock, contextlib.suppress(Exception):  # 309: the state was never created
                ruleset.delete_state(sid)

    def _resolve(self, did: str, fired: list[Firing]) -> DerivedValue:
        """Kleene OR over the rules deriving ``did``: the highest-precedence value wins, else false."""
        for value in self.base.derived[did].values:
            chosen = [f for f in fired if f.value == value]
            if chosen:
                return DerivedValue(did, value, chosen)
        return DerivedValue(did, "false", [])

    @staticmethod
    def _firing(
        rule: Rule, possible: bool, match: Match, facts: Sequence[Fact], derived_in_order: list[DerivedValue]
    ) -> Firing:
        used: list[Fact] = []
        used_derived: list[DerivedValue] = []
        for alias in sorted(match):
            item = match[alias]
            if item.get("t") == "d":
                used_derived.append(derived_in_order[int(item["i"])])
            else:
                used.append(facts[int(item["i"])])
        return Firing(rule, used, used_derived, possible)


def _drain(handle: int, offset: int) -> list[tuple[str, Match]]:
    """Every (rule key, match) of the state at ``offset``, in the order durable-rules yields them.

    The C calls of durable's own loop (``Ruleset.do_actions``/``_flush_actions``): start, then per match
    the state written back unchanged and the next match; durable's loop takes the first action of each
    message the same way.
    """
    found: list[tuple[str, Match]] = []
    started = durable_rules_engine.start_action_for_state(handle, offset)
    if not started:
        return found
    state, message = started[0], orjson.loads(started[1])
    while True:
        for key, match in message.items():
            found.append((key, dict(match)))
            break
        durable_rules_engine.update_state(handle, state)
        following = durable_rules_engine.complete_and_start_action(handle, offset)
        if not following:
            return found
        message = orjson.loads(following)


def _json(item: dict[str, Any]) -> str:
    """One fact for durable-rules as JSON (orjson; the standard library's encoder for an integer beyond 64 bits,
    e.g. a sum of values near the largest one read, where orjson refuses)."""
    try:
        return orjson.dumps(item).decode()
    except TypeError:
        return json.dumps(item)


def _in_key_order(found: list[tuple[str, Match]]) -> list[tuple[str, Match]]:
    """The matches by rule key, and matches of one key by their JSON (sorted keys): the same order whatever order
    durable-rules yields them in. Only the matches of a key that matched more than once are serialised."""
    repeated = {key for key, n in Counter(key for key, _ in found).items() if n > 1}
    return sorted(found, key=lambda km: (km[0], json.dumps(km[1], sort_keys=True) if km[0] in repeated else ""))


def _check_fact_set(facts: Sequence[Fact]) -> None:
    seen: set[tuple[str, str]] = set()
    for fact in facts:
        key = (fact.fid, fact.level)
        if key in seen:
            raise FactSetError(f"fact {fact.fid} asserted more than once at level {fact.level}")
        seen.add(key)
