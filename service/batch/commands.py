"""``spinecds evaluate`` and ``spinecds rules``: the command-line side of offline evaluation."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from service.cds.request_builder import SERVICE_FOR_HOOK, BadInput, Subject
from service.config import ConfigError, Settings

from .inputs import iter_paths, load_path

if TYPE_CHECKING:
    from .evaluate import Outcome, Summary

TRACE_KEY = "org.spinecds.trace"

EXIT_OK, EXIT_ERRORS, EXIT_BAD_INPUT = 0, 1, 2


def add_parsers(sub: Any) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="evaluate FHIR Bundles, NDJSON exports or CDS Hooks request files offline (no server)",
        description="Exit codes: 0 every input evaluated; 1 some could not be evaluated (e.g. no Patient or "
        "Condition data); 2 bad input (unreadable, not a recognised format, invalid request).",
    )
    ev.add_argument("paths", nargs="+", type=Path, help="files, NDJSON folders, or folders of JSON files")
    ev.add_argument("--json", action="store_true", help="print results and summary as one JSON document")
    ev.add_argument("--hook", choices=sorted(SERVICE_FOR_HOOK), default="patient-view", help="hook for bundles")
    ev.add_argument("--now", help="evaluate as of this RFC 3339 instant (default: the current time)")
    progress = ev.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None, help="show a progress bar")
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")
    rules = sub.add_parser("rules", help="list the rule catalogue (ID, conclusion, sources)")
    rules.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    rules.add_argument(
        "--check",
        action="store_true",
        help="check every rule file (schema, facts, comparators, references); print each problem with file, "
        "line and path; exit 1 if there is any",
    )


def run_evaluate(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from service.cds.assemble import build_pipeline  # imported here: ``spinecds serve`` does not need these

    from .evaluate import Summary

    out, err = out or sys.stdout, err or sys.stderr
    try:
        clock = _clock(args.now)
        pipeline = build_pipeline(Settings.from_env(), clock, offline=True)
    except (ConfigError, ValueError) as exc:
        print(f"spinecds: {exc}", file=err)
        return EXIT_BAD_INPUT
    files = list(iter_paths(args.paths))
    show = args.progress if args.progress is not None else err.isatty()
    summary = Summary()
    results: list[dict[str, Any]] = []
    from tqdm import tqdm  # here, not at import: `spinecds serve` starts without it

    with tqdm(total=len(files), unit="file", file=err, disable=not show, leave=False) as bar:
        for path in files:
            for outcome in _outcomes(pipeline, path, args.hook):
                summary.add(outcome)
                if args.json:
                    results.append(outcome.as_json())
                else:
                    _print_outcome(outcome, out)
            bar.update(1)
    if args.json:
        json.dump({"results": results, "summary": summary.as_json()}, out, indent=2)
        out.write("\n")
    else:
        _print_summary(summary, out)
    return summary.exit_code


def _clock(now: str | None) -> Callable[[], datetime] | None:
    if now is None:
        return None
    try:
        instant = datetime.fromisoformat(now.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"--now: not an RFC 3339 instant: {now!r}") from exc
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return lambda: instant


def _outcomes(pipeline: Any, path: Path, hook: str) -> list[Outcome]:
    from .evaluate import Outcome, evaluate

    try:
        subjects: list[Subject] = load_path(path, hook)
    except BadInput as exc:
        return [Outcome(str(path), None, error=str(exc), bad_input=True)]
    return [evaluate(pipeline, s) for s in subjects]


def _print_outcome(outcome: Outcome, out: TextIO) -> None:
    service = f" [{outcome.service_id}]" if outcome.service_id else ""
    if outcome.error is not None:
        kind = "BAD INPUT" if outcome.bad_input else "ERROR"
        print(f"{outcome.label}{service}: {kind}: {outcome.error}", file=out)
        return
    print(f"{outcome.label}{service}: {len(outcome.cards)} card(s)", file=out)
    rows = [
        (card["indicator"], ", ".join(card["extension"][TRACE_KEY]["rules"]), card["summary"]) for card in outcome.cards
    ]
    _table(rows, ("indicator", "rules", "summary"), out, indent="  ")


def _table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...], out: TextIO, indent: str = "") -> None:
    if not rows:
        return
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header) - 1)]

    def line(cells: tuple[str, ...]) -> str:
        return indent + "  ".join([*(c.ljust(w) for c, w in zip(cells, widths, strict=False)), cells[-1]]).rstrip()

    print(line(header), file=out)
    print(line(tuple("-" * len(h) for h in header)), file=out)
    for row in rows:
        print(line(row), file=out)


def _print_summary(summary: Summary, out: TextIO) -> None:
    print("", file=out)
    print(
        f"Summary: {summary.inputs} evaluation(s), {summary.cards} card(s), {summary.errors} error(s), "
        f"{summary.bad_inputs} bad input(s)",
        file=out,
    )
    if summary.cards_per_rule:
        _table([(rule, str(n)) for rule, n in sorted(summary.cards_per_rule.items())], ("rule", "cards"), out, "  ")


def _check_rules(out: TextIO, err: TextIO) -> int:
    from service.engine.ruleset import check_rulebase

    try:
        settings = Settings.from_env()
        problems = check_rulebase(settings.rules_dir, settings.threshold_overrides)
    except ConfigError as exc:
        print(f"spinecds: {exc}", file=err)
        return EXIT_BAD_INPUT
    for problem in problems:
        print(problem, file=out)
    if problems:
        print(f"\n{len(problems)} problem(s) in {settings.rules_dir}", file=out)
        return EXIT_ERRORS
    print(f"rule base {settings.rules_dir}: no problems", file=out)
    return EXIT_OK


def run_rules(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    if args.check:
        return _check_rules(out, err)
    try:
        settings = Settings.from_env()
        from service.cds.assemble import load_rules
        from service.engine.catalogue import rule_catalogue

        catalogue = rule_catalogue(load_rules(settings))
    except (ConfigError, ValueError) as exc:
        print(f"spinecds: {exc}", file=err)
        return EXIT_BAD_INPUT
    if args.json:
        json.dump(catalogue, out, indent=2, ensure_ascii=False)
        out.write("\n")
        return EXIT_OK
    rows = [
        (
            r["id"],
            ", ".join([*r["concludes"], *r["derives"]]) or "-",
            ", ".join(r["sources"]),
            r["title"],
        )
        for r in catalogue["rules"]
    ]
    _table(rows, ("rule", "concludes/derives", "sources", "title"), out)
    print(f"\n{len(rows)} rules, rule base {catalogue['ruleBase']}", file=out)
    return EXIT_OK
