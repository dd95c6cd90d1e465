"""The real PostgreSQL for storage tests: from SPINECDS_TEST_PG_URL, or a local Debian cluster."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

DEFAULT_URL = "postgresql+psycopg2://spinecds:spinecds@127.0.0.1:5432/spinecds_test"


def _try_start_local() -> str | None:
    if os.geteuid() != 0 or not shutil.which("pg_ctlcluster"):
        return None
    script = os.path.join(os.path.dirname(__file__), "..", "..", ".ci", "run")
    if not os.path.exists(script):
        return None
    cmds = [
        "pg_ctlcluster 15 main start || true",
        "for i in $(seq 1 20); do pg_isready -q && break; sleep 0.5; done",
        'su postgres -c "psql -qtc \\"SELECT 1 FROM pg_roles WHERE rolname=\'spinecds\'\\" | grep -q 1 || '
        'psql -qc \\"CREATE ROLE spinecds LOGIN PASSWORD \'spinecds\' CREATEDB\\""',
        'su postgres -c "psql -qtc \\"SELECT 1 FROM pg_database WHERE datname=\'spinecds_test\'\\" | grep -q 1 || '
        'createdb -O spinecds spinecds_test"',
    ]
    result = subprocess.run(" && ".join(cmds), shell=True, capture_output=True, timeout=60)
    return DEFAULT_URL if result.returncode == 0 else None


def postgres_url() -> str:
    """URL of a usable database, or skip (fail when SPINECDS_REQUIRE_PG=1, as in CI)."""
    url = os.environ.get("SPINECDS_TEST_PG_URL") or _try_start_local()
    if url:
        from sqlalchemy import create_engine, text

        try:
            with create_engine(url).connect() as conn:
                conn.execute(text("SELECT 1"))
            return url
        except Exception as exc:  # noqa: BLE001
            reason = f"PostgreSQL at {url.split('@')[-1]} not reachable: {type(exc).__name__}"
    else:
        reason = "no PostgreSQL: set SPINECDS_TEST_PG_URL or install Debian's postgresql"
    if os.environ.get("SPINECDS_REQUIRE_PG") == "1":
        pytest.fail(reason)
    pytest.skip(reason)
