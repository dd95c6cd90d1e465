"""Alembic migrations build exactly the models' schema, on SQLite and on PostgreSQL (own database)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from support.gunicorn import spinecds_command
from support.scratch_db import scratch_postgres

from service.db import init_db, metadata
from service.migrations import alembic_config, current_revision, head_revision, upgrade


def _diff(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_one_linear_history_ending_at_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_heads() == [head_revision()], "exactly one head (no forgotten merge)"
    revisions = list(script.walk_revisions())
    assert revisions[-1].down_revision is None


def test_empty_sqlite_upgrades_to_exactly_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    before, after = upgrade(url)
    assert (before, after) == (None, head_revision())
    assert _diff(url) == []
    assert _tables(url) == set(metadata.tables) | {"alembic_version"}


def test_downgrade_to_base_and_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    assert _tables(url) == {"alembic_version"}
    upgrade(url)
    assert _diff(url) == []


@pytest.mark.parametrize("tables", [None, ("feedback", "issued_card")], ids=["all-models", "first-release"])
def test_database_made_before_migrations_is_adopted(tmp_path: Path, tables: tuple[str, ...] | None) -> None:
    """A database the app created with create_all (every release before migrations) is stamped, then upgraded."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    metadata.create_all(engine, tables=[metadata.tables[t] for t in tables] if tables else None)
    engine.dispose()
    _before, after = upgrade(url)
    assert after == head_revision()
    assert _diff(url) == []


def test_app_leaves_a_migrated_database_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'managed.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")  # managed, but behind this build
    engine = create_engine(url)
    init_db(engine)
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}, "init_db must not create_all"
    assert current_revision(engine) is None
    engine.dispose()


def test_ready_is_503_until_a_managed_database_is_migrated(tmp_path: Path) -> None:
    from service.app import create_app

    url = f"sqlite:///{tmp_path / 'behind.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    app = create_app({"database_url": url})
    with app.test_client() as client:
        response = client.get("/health/ready")
        assert response.status_code == 503
        assert "spinecds migrate" in response.get_json()["issue"][0]["diagnostics"]
        upgrade(url)
        assert client.get("/health/ready").status_code == 200
        engine = create_engine(url)  # a newer release migrated ahead (rolling update): this one stays ready
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed9999'"))
        engine.dispose()
        assert client.get("/health/ready").status_code == 200


def test_empty_postgres_upgrades_to_exactly_the_models() -> None:
    with scratch_postgres("spinecds_migrate") as url:
        assert upgrade(url) == (None, head_revision())
        assert _diff(url) == []
        assert _tables(url) == set(metadata.tables) | {"alembic_version"}
        command.downgrade(alembic_config(url), "base")
        assert _tables(url) == {"alembic_version"}


def test_concurrent_migrators_on_postgres_both_succeed() -> None:
    """One `spinecds migrate` per pod: the advisory lock makes the others wait, then find nothing to do."""
    with scratch_postgres("spinecds_migrate") as url:
        env = {**os.environ, "SPINECDS_DATABASE_URL": url}
        runs = [
            subprocess.Popen(
                [*spinecds_command(), "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            for _ in range(3)
        ]
        outputs = [run.communicate(timeout=120)[0].decode() for run in runs]
        assert [run.returncode for run in runs] == [0, 0, 0], outputs
        assert all(out.strip().endswith(f"-> {head_revision()}") for out in outputs), outputs
        assert "spinecds:spinecds" not in "".join(outputs), "credentials must not be printed"
        assert _diff(url) == []


@pytest.mark.parametrize("table", sorted(metadata.tables))
def test_every_model_table_is_created_by_some_migration(tmp_path: Path, table: str) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    upgrade(url)
    assert table in _tables(url)
