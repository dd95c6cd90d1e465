"""``spinecds`` command line: ``spinecds serve`` runs the production WSGI server (gunicorn)."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from typing import Any

from service.config import ConfigError, Settings


def _settings() -> Settings | None:
    """The settings from the environment, or None after saying what is wrong (the caller exits 2)."""
    try:
        return Settings.from_env()
    except ConfigError as exc:
        print(f"spinecds: configuration error: {exc}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    from service.serving import pause_gc_until_frozen, reexec_with_malloc_env

    reexec_with_malloc_env("service.cli")  # first: the process it replaces should do (and import) little
    pause_gc_until_frozen()
    try:
        return _start(args)
    finally:
        gc.enable()  # a refused start leaves the collector as it found it (a started one froze and re-enabled it)


def _start(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings is None:
        return 2
    from service.engine.build import UnpatchedEngineError, engine_description, require_patched_engine

    try:
        print(f"spinecds: engine {engine_description(require_patched_engine())}", file=sys.stderr)
    except UnpatchedEngineError as exc:
        print(f"spinecds: refusing to start: {exc}", file=sys.stderr)
        return 2
    # before prometheus_client is imported (it reads PROMETHEUS_MULTIPROC_DIR once, at import)
    from service.ops.metrics_dir import prepare_multiprocess_dir, remove_private_dir

    private_metrics_dir, master_pid = prepare_multiprocess_dir(), os.getpid()
    from service.app import create_app
    from service.ops.logging import configure_logging, gunicorn_logconfig
    from service.ops.metrics import worker_exited
    from service.serving import preloaded_app, server_options

    def in_worker(app: Any) -> None:
        # pooled connections opened by the master must not be shared across processes
        app.extensions["spinecds"].db.dispose(close=False)
        configure_logging(settings.log_level)  # see on_starting

    options = {
        **server_options(args.host, args.port, args.workers, args.threads),
        "logconfig_dict": gunicorn_logconfig(settings.log_level),
        # the app is built before gunicorn configures its logging, which leaves the root logger without the
        # app's JSON handler: put it back in the master and in every worker (else request, access and audit
        # lines were lost and warnings came out as plain text)
        "on_starting": lambda _arbiter: configure_logging(settings.log_level),
        "child_exit": lambda _arbiter, worker: worker_exited(worker.pid),
    }
    if settings.auth != "required":
        print(
            "spinecds: " + "!" * 72 + "\n"
            "spinecds: WARNING: CDS client authentication is DISABLED (SPINECDS_AUTH is not 'required').\n"
            "spinecds: Any caller that reaches this port can call the CDS services. Development only:\n"
            "spinecds: set SPINECDS_AUTH=required and SPINECDS_ISSUERS_FILE for a hospital network.\n"
            "spinecds: " + "!" * 72,
            file=sys.stderr,
        )
    if settings.fhir_servers.empty:
        print(
            "spinecds: note: SPINECDS_FHIR_SERVER_ALLOWLIST is empty: no fhirServer is ever called (prefetch only)",
            file=sys.stderr,
        )
    try:
        try:
            app = create_app(settings)  # in the master, as preload_app would: a broken rule base stops here
        except ConfigError as exc:
            from service.ops.logging import configure_logging

            configure_logging(settings.log_level)
            logging.getLogger("spinecds").critical("not starting: configuration error: %s", exc)
            return 2
        preloaded_app(lambda: app, options, after_fork=in_worker).run()
    finally:  # gunicorn exits through SystemExit, in the master and in each forked worker
        remove_private_dir(private_metrics_dir, master_pid)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings is None:
        return 2
    from sqlalchemy.exc import SQLAlchemyError

    from service.migrations import upgrade

    where = settings.database_url.split(":", 1)[0]  # never print credentials
    try:
        before, after = upgrade(settings.database_url, args.revision)
    except SQLAlchemyError as exc:
        print(f"spinecds: migration failed on the {where} database: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"spinecds: {where} database schema: {before or 'empty'} -> {after}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from service.conformance.validate import run

    settings = _settings()
    if settings is None:
        return 2
    code, output = run(args.input, as_json=args.json, profiles_dir=settings.profiles_dir)
    print(output, file=sys.stderr if code == 2 else sys.stdout)
    return code


def _coverage(args: argparse.Namespace) -> int:
    from pathlib import Path

    from service.batch.coverage import run
    from service.cds.assemble import load_rules

    settings = _settings()
    if settings is None:
        return 2
    try:
        facts = load_rules(settings).facts
    except ConfigError as exc:
        print(f"spinecds: configuration error: {exc}", file=sys.stderr)
        return 2
    code, report, problems = run(
        [Path(p) for p in args.paths], Path(settings.profiles_dir), facts, as_json=args.json, top=args.top
    )
    if report is not None:
        print(report)
    for problem in problems:
        print(problem, file=sys.stderr)
    return code
    print(report)
    if problems:
        print("spinecds coverage: " + problems, file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spinecds", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the CDS Hooks service under gunicorn")
    serve.add_argument("--host", default=os.environ.get("SPINECDS_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("SPINECDS_PORT", "8080")))
    serve.add_argument("--workers", type=int, default=int(os.environ.get("SPINECDS_WORKERS", str(os.cpu_count() or 2))))
    serve.add_argument("--threads", type=int, default=int(os.environ.get("SPINECDS_THREADS", "4")))
    migrate = sub.add_parser("migrate", help="create or upgrade the database schema (alembic) to this build")
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")
    from service.batch import commands as batch_commands

    batch_commands.add_parsers(sub)  # evaluate, rules
    validate = sub.add_parser("validate", help="check a Bundle / NDJSON folder against the spinecds profiles")
    validate.add_argument("input", help="Bundle or resource JSON, CDS Hooks request, NDJSON file or folder")
    validate.add_argument("--json", action="store_true", help="machine-readable report")
    coverage = sub.add_parser(
        "coverage",
        help="report which resources' codes the ValueSets recognise and which codes no ValueSet knows",
        description="Exit codes: 0 every input read; 2 some input unreadable or not a recognised format (named on "
        "stderr; the report covers the rest).",
    )
    coverage.add_argument("paths", nargs="+", help="Bundles, NDJSON files or folders, case files, CDS Hooks requests")
    coverage.add_argument("--json", action="store_true", help="machine-readable report")
    coverage.add_argument("--top", type=int, default=10, help="how many unrecognised codes to list per type")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "migrate":
        return _migrate(args)
    if args.command == "evaluate":
        return batch_commands.run_evaluate(args)
    if args.command == "rules":
        return batch_commands.run_rules(args)
    if args.command == "validate":
        return _validate(args)
    if args.command == "coverage":
        return _coverage(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
