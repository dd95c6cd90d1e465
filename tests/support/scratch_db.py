"""A private PostgreSQL database for one test (created through the spinecds role, dropped after).

Tests that count rows, migrate schemas or stop servers must not share ``spinecds_test`` with the
other suites running at the same time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from support.postgres import postgres_url


@contextmanager
def scratch_postgres(prefix: str = "spinecds_scratch") -> Iterator[str]:
    """Yield the URL of a new empty database; drop it (and its connections) afterwards."""
    admin_url = make_url(postgres_url())
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
