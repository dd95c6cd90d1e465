"""Security settings: a mistake stops the start with a message naming the variable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.jwt_tools import FIXTURES

from service.config import ConfigError, Settings

SANDBOX_JWKS = str(FIXTURES / "sandbox-jwks.json")
ONE = {"issuers": [{"iss": "https://a", "jwks_file": SANDBOX_JWKS}]}
TWICE = {"issuers": [{"iss": "https://a", "jwks_file": SANDBOX_JWKS}, {"iss": "https://a", "jwks_file": SANDBOX_JWKS}]}


def _settings(tmp_path: Path, issuers: Any, suffix: str = ".json", **env: str) -> Settings:
    path = tmp_path / f"issuers{suffix}"
    path.write_text(issuers if isinstance(issuers, str) else json.dumps(issuers))
    environ = {"SPINECDS_AUTH": "required", "SPINECDS_ISSUERS_FILE": str(path), **env}
    return Settings.from_env(environ)


def test_the_issue_example_loads_as_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "closed-jwks.json").write_text(Path(SANDBOX_JWKS).read_text())
    example = {
        "issuers": [
            {"iss": "https://ehr.example.org", "jwks_uri": "https://ehr.example.org/.well-known/jwks.json"},
            {"iss": "https://closed.example.org", "jwks_file": "closed-jwks.json", "tenants": ["t1"]},
        ]
    }
    assert _settings(tmp_path, example).auth == "required"
    yaml_text = (
        "issuers:\n"
        "  - iss: https://ehr.example.org\n"
        "    jwks_uri: https://ehr.example.org/.well-known/jwks.json\n"
        "  - iss: https://closed.example.org\n"
        "    jwks_file: closed-jwks.json\n"
        "    tenants: [t1]\n"
    )
    assert _settings(tmp_path, yaml_text, ".yaml").issuers_file.endswith(".yaml")


def test_defaults_are_development_friendly_but_explicit() -> None:
    settings = Settings.from_env({})
    assert settings.auth == "disabled"
    assert settings.jwt_algorithms == "ES384,RS384"
    assert settings.fhir_server_allowlist == ""


@pytest.mark.parametrize(
    ("issuers", "env", "message"),
    [
        ({"issuers": []}, {}, "SPINECDS_ISSUERS_FILE"),
        ({"issuers": [{"iss": "https://a"}]}, {}, "needs jwks_uri, jwks_file or jku_allowlist"),
        ({"issuers": [{"iss": "https://a", "jwks_uri": "http://ehr.example.org/jwks"}]}, {}, "must use https"),
        ({"issuers": [{"iss": "https://a", "jwks_file": "missing.json"}]}, {}, "no such file"),
        ({"issuers": [{"iss": "https://a", "jwks_file": SANDBOX_JWKS, "tenant": ["t"]}]}, {}, "unknown field"),
        ({"issuers": [{"iss": "https://a", "jwks_file": SANDBOX_JWKS, "tenants": "t1"}]}, {}, "tenants"),
        (
            {
                "issuers": [
                    {"iss": "https://a", "jwks_file": SANDBOX_JWKS},
                    {"iss": "https://a", "jwks_file": SANDBOX_JWKS},
                ]
            },
            {},
            "listed twice",
        ),
        (
            {"issuers": [{"iss": "https://a", "jwks_file": SANDBOX_JWKS, "algorithms": ["ES256"]}]},
            {},
            "subset",
        ),
        (ONE, {"SPINECDS_JWT_ALGORITHMS": "HS256"}, "never"),
        (ONE, {"SPINECDS_JWT_ALGORITHMS": "none"}, "never"),
        (
            {"issuers": [{"iss": "https://a", "jwks_file": SANDBOX_JWKS}]},
            {"SPINECDS_JWT_ALGORITHMS": "EdDSA"},
            "unknown",
        ),
        (ONE, {"SPINECDS_AUTH": "maybe"}, "SPINECDS_AUTH"),
        (
            ONE,
            {"SPINECDS_FHIR_SERVER_ALLOWLIST": "https://ehr.example.org"},
            "SPINECDS_FHIR_SERVER_ALLOWLIST",
        ),
        (
            ONE,
            {"SPINECDS_FHIR_SERVER_ALLOWLIST": "ehr.example.org:99999"},
            "invalid port",
        ),
        ("issuers: [unclosed", {}, "not valid"),
    ],
)
def test_bad_security_settings_stop_the_start(tmp_path: Path, issuers: Any, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _settings(tmp_path, issuers, ".yaml" if isinstance(issuers, str) else ".json", **env)


def test_auth_required_needs_an_issuers_file() -> None:
    with pytest.raises(ConfigError, match="SPINECDS_ISSUERS_FILE"):
        Settings.from_env({"SPINECDS_AUTH": "required"})


def test_a_jwks_file_without_usable_keys_stops_the_start(tmp_path: Path) -> None:
    from service.app import create_app

    (tmp_path / "hmac.json").write_text(json.dumps({"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}))
    (tmp_path / "issuers.json").write_text(json.dumps({"issuers": [{"iss": "https://a", "jwks_file": "hmac.json"}]}))
    with pytest.raises(ConfigError, match="SPINECDS_ISSUERS_FILE.*no usable public signature key"):
        create_app(
            {
                "database_url": f"sqlite:///{tmp_path / 'x.db'}",
                "auth": "required",
                "issuers_file": str(tmp_path / "issuers.json"),
            }
        )


def test_the_issuers_file_and_allowlist_are_parsed_once_and_kept(tmp_path: Path) -> None:
    """What validation parsed is what the app uses: the issuers file gone after the settings were read
    changes nothing (the gate reads ``settings.trusted_issuers``, not the file again)."""
    from service.app import create_app

    settings = _settings(
        tmp_path,
        ONE,
        SPINECDS_FHIR_SERVER_ALLOWLIST="127.0.0.1:8080, Fhir.Example.org",
        SPINECDS_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
    )
    assert set(settings.trusted_issuers) == {"https://a"}
    assert settings.trusted_issuers["https://a"].algorithms == settings.jwt_algorithm_set == {"ES384", "RS384"}
    assert settings.fhir_servers.entries == {("127.0.0.1", 8080), ("fhir.example.org", None)}
    (tmp_path / "issuers.json").unlink()
    app = create_app(settings)  # reading the file again would fail: "cannot read"
    assert app.extensions["spinecds.auth"] is not None
    assert app.test_client().get("/cds-services").status_code == 401
    assert app.extensions["spinecds"].pipeline.limits.allowlist is settings.fhir_servers
    with pytest.raises(ConfigError, match="SPINECDS_ISSUERS_FILE: cannot read"):
        settings.with_overrides({"jwt_leeway_seconds": 30})  # new settings parse again


def test_a_thresholds_file_that_is_not_yaml_names_the_variable(tmp_path: Path) -> None:
    bad = tmp_path / "thresholds.yaml"
    bad.write_text("pain.moderate: [5\n")
    with pytest.raises(ConfigError, match="SPINECDS_THRESHOLDS_FILE: cannot read"):
        Settings.from_env({"SPINECDS_THRESHOLDS_FILE": str(bad)})
    bad.write_text("- 5\n")
    with pytest.raises(ConfigError, match="SPINECDS_THRESHOLDS_FILE: must contain a mapping"):
        Settings.from_env({"SPINECDS_THRESHOLDS_FILE": str(bad)})
    bad.write_text("pain.moderate: 5\n")
    assert Settings.from_env({"SPINECDS_THRESHOLDS_FILE": str(bad)}).threshold_overrides == {"pain.moderate": 5}
