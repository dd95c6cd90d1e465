"""Database migrations (alembic), shipped inside the package so ``spinecds migrate`` works from a wheel.

Production databases are created and upgraded only by migrations (``spinecds migrate``); the app
then never changes their schema. A database without an ``alembic_version`` table is a development
database: ``service.db.init_db`` creates its tables from ``service.db.metadata`` (SQLAlchemy Core tables;
there are no ORM classes). ``upgrade`` adopts such a database (or one created before migrations existed)
by stamping the first revision when its tables are already there.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from alembic.config import Config

# alembic is imported inside the functions that use it: a development database (no version table)
# never needs it, and `spinecds serve` starts ~0.15 s sooner without it (docs/performance.md)

SCRIPT_LOCATION = str(Path(__file__).resolve().parent)
# Databases made by create_all before migrations existed: the newest revision whose tables are all there
# is stamped, then the rest is applied. Newer revisions need no entry: from this release on, production
# databases are created by migrations.
ADOPTABLE = (
    ("0002", frozenset({"feedback", "issued_card", "used_jti"})),
    ("0001", frozenset({"feedback", "issued_card"})),
)
VERSION_TABLE = "alembic_version"


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@cache
def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, "no migrations found"
    return head


def is_managed(engine: Engine) -> bool:
    """True when the database is under migrations (has an alembic version table)."""
    return inspect(engine).has_table(VERSION_TABLE)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade the database at ``url``; returns (revision before, revision after)."""
    from alembic import command

    config = alembic_config(url)
    engine = create_engine(url)
    try:
        if not is_managed(engine):
            tables = set(inspect(engine).get_table_names())
            adopt = next((rev for rev, needed in ADOPTABLE if needed <= tables), None)
            if adopt:
                command.stamp(config, adopt)
        before = current_revision(engine) if is_managed(engine) else None
        command.upgrade(config, revision)
        return before, current_revision(engine)
    finally:
        engine.dispose()


@cache
def known_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return frozenset(rev.revision for rev in script.walk_revisions())


def schema_problem(conn: Connection) -> str | None:
    """Why a migrated database is too old for this build (None when it fits or is a development database).

    A revision this build does not know is newer: migrations are additive, so the previous release
    keeps serving while a rolling update migrates ahead of it.
    """
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    from alembic.runtime.migration import MigrationContext

    current = MigrationContext.configure(conn).get_current_revision()
    if current == head_revision() or (current is not None and current not in known_revisions()):
        return None
    return f"database schema is at revision {current}, this build needs {head_revision()}: run `spinecds migrate`"
