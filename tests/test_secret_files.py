"""Secrets from files: SPINECDS_DATABASE_URL_FILE (Docker/podman secrets, Kubernetes Secret volumes),
so a password need not sit in the process environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.cli import main
from service.config import ConfigError, Settings


def test_database_url_is_read_from_the_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'from-file.db'}"
    secret = tmp_path / "database_url"
    secret.write_text(url + "\n")  # as `echo` and editors leave it
    assert Settings.from_env({"SPINECDS_DATABASE_URL_FILE": str(secret)}).database_url == url


def test_both_the_variable_and_its_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "database_url"
    secret.write_text("sqlite:///x.db")
    env = {"SPINECDS_DATABASE_URL_FILE": str(secret), "SPINECDS_DATABASE_URL": "sqlite:///y.db"}
    with pytest.raises(ConfigError, match="SPINECDS_DATABASE_URL_FILE and SPINECDS_DATABASE_URL are both set"):
        Settings.from_env(env)


def test_an_unreadable_file_names_the_variable_not_the_content(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SPINECDS_DATABASE_URL_FILE: cannot read") as refused:
        Settings.from_env({"SPINECDS_DATABASE_URL_FILE": str(tmp_path / "absent")})
    assert "FileNotFoundError" in str(refused.value)


def test_migrate_uses_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "database_url"
    secret.write_text(f"sqlite:///{tmp_path / 'migrated.db'}")
    monkeypatch.delenv("SPINECDS_DATABASE_URL", raising=False)
    monkeypatch.setenv("SPINECDS_DATABASE_URL_FILE", str(secret))
    assert main(["migrate"]) == 0
    assert (tmp_path / "migrated.db").is_file()
