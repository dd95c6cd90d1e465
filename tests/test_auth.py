"""CDS Hooks JWT authentication of EHR clients: golden tokens, sandbox tokens, and attacks.

Real parts only: the app with SPINECDS_AUTH=required and an issuers file, keys from the spec and
the CDS Hooks sandbox, JWK Sets served by a real HTTP server on loopback, the replay store in a
real database. Every refusal is checked for the *reason* logged, so a test cannot pass because a
token was refused for some other reason than the one it probes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from support.cases import CASES_DIR, build_request
from support.fhir_server import FhirTestServer
from support.jwt_tools import (
    DROP,
    FIXTURES,
    SANDBOX_ISS,
    SANDBOX_KID,
    SPEC_ISS,
    SPEC_JKU,
    SPEC_TOKEN,
    Client,
    b64,
    raw_token,
    sign_with_secret,
)

from service.app import create_app

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
T = NOW.timestamp()
BASE = "https://cds.example.org"
SERVICE = "spine-metastasis-review"
ENDPOINT = f"{BASE}/cds-services/{SERVICE}"
UNAUTHORIZED = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "login", "diagnostics": "authentication required"}],
}
RSA_ISS = "https://ehr.example.org"
TENANT_ISS = "https://closed.example.org"
ES256_ISS = "https://es256.example.org"
JKU_ISS = "https://jku.example.org"


class World:
    """Everything the tests need: the clients (EHRs), the JWKS server, the app."""

    def __init__(self, tmp: Path, jwks_server: FhirTestServer) -> None:
        self.tmp = tmp
        self.jwks_server = jwks_server
        self.sandbox = Client.sandbox()
        self.spec = Client.spec_example()
        self.rsa = Client.generated(RSA_ISS, "RS384")
        self.tenant = Client.generated(TENANT_ISS, "ES384")
        self.es256 = Client.generated(ES256_ISS, "ES256")
        self.attacker = Client.generated("https://attacker.example", "ES384")
        self.jku_client = Client.generated(JKU_ISS, "ES384")
        self.jku_client.jku = jwks_server.url("/jku/jwks.json")
        jwks_server.serve_json("/jku/jwks.json", self.jku_client.jwks())
        jwks_server.serve_json("/ehr/jwks.json", self.rsa.jwks())
        jwks_server.serve_json("/attacker/jwks.json", self.attacker.jwks())
        (tmp / "closed-jwks.json").write_text(json.dumps(self.tenant.jwks()))
        (tmp / "es256-jwks.json").write_text(json.dumps(self.es256.jwks()))
        self.issuers = {
            "issuers": [
                {
                    "iss": SANDBOX_ISS,
                    "jwks_file": str(FIXTURES / "sandbox-jwks.json"),
                    "jku_allowlist": [self.sandbox.jku],
                },
                {"iss": SPEC_ISS, "jwks_file": str(FIXTURES / "spec-example-jwks.json"), "jku_allowlist": [SPEC_JKU]},
                {"iss": RSA_ISS, "jwks_uri": jwks_server.url("/ehr/jwks.json")},
                {"iss": TENANT_ISS, "jwks_file": "closed-jwks.json", "tenants": ["t1", "t2"]},
                {"iss": ES256_ISS, "jwks_file": "es256-jwks.json"},
                {"iss": JKU_ISS, "jku_allowlist": [self.jku_client.jku]},
            ]
        }

    def app(self, name: str, **settings: Any) -> Flask:
        path = self.tmp / f"{name}-issuers.yaml"
        path.write_text(yaml.safe_dump(self.issuers))
        return create_app(
            {
                "database_url": f"sqlite:///{self.tmp / name}.db",
                "public_base_url": BASE,
                "auth": "required",
                "issuers_file": str(path),
                **settings,
            },
            clock=lambda: NOW,
        )


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[FhirTestServer]:
    with FhirTestServer() as server:
        yield server


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, jwks_server: FhirTestServer) -> World:
    return World(tmp_path_factory.mktemp("auth"), jwks_server)


@pytest.fixture(scope="module")
def app(world: World) -> Flask:
    return world.app("main")


def _call(app: Flask, token: str | None, path: str = f"/cds-services/{SERVICE}", **kwargs: Any) -> Any:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    headers.update(kwargs.pop("headers", {}))
    if path.endswith("/cds-services"):
        return app.test_client().get(path, headers=headers)
    body = kwargs.pop("json", None)
    if body is None:
        _, body = build_request(json.loads((CASES_DIR / "va-22-worked-example-eligible.json").read_text()))
    return app.test_client().post(path, json=body, headers=headers)


def _refused(response: Any, caplog: pytest.LogCaptureFixture, reason: str, token: str | None = None) -> None:
    assert response.status_code == 401, response.get_json()
    assert response.get_json() == UNAUTHORIZED  # the same body whatever the reason: nothing leaks
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("JWT refused:")]
    assert refusals and refusals[-1].startswith(f"JWT refused: {reason} "), refusals
    if token:
        assert all(token not in r.getMessage() for r in caplog.records), "the token was logged"
        assert all(token[-40:] not in r.getMessage() for r in caplog.records), "part of the token was logged"


# ---------------------------------------------------------------------------------------------- golden


def test_spec_example_token_valid_signature_but_expired(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    response = _call(app, SPEC_TOKEN, "/cds-services/some-service")
    _refused(response, caplog, "expired", SPEC_TOKEN)


def test_spec_example_token_verifies_when_the_clock_is_frozen_at_its_time(world: World) -> None:
    """The same token is accepted (then 404: no such service) at 2015-01-29 with a lifetime cap lifted,
    which proves the refusal above is for expiry and the signature check is right."""
    from service.auth.issuers import load_issuers
    from service.auth.replay import ReplayStore
    from service.auth.verifier import JwtVerifier
    from service.db import init_db, make_engine

    path = world.tmp / "spec-only.json"
    path.write_text(json.dumps({"issuers": [world.issuers["issuers"][1]]}))
    db = make_engine(f"sqlite:///{world.tmp / 'frozen.db'}")
    init_db(db)
    verifier = JwtVerifier(
        load_issuers(str(path), frozenset({"ES384"})),
        ReplayStore(db),
        leeway=60,
        max_lifetime=float("inf"),
        now=lambda: 1422568800.0,
    )
    client = verifier.verify(f"Bearer {SPEC_TOKEN}", "https://cds.example.org/cds-services/some-service")
    assert (client.iss, client.kid, client.tenant) == (SPEC_ISS, "example-kid", "2ddd6c3a-8e9a-44c6-a305-52111ad302a2")


def test_sandbox_tokens_on_discovery_service_and_feedback(app: Flask) -> None:
    sandbox = Client.sandbox()
    discovery = _call(app, sandbox.mint(f"{BASE}/cds-services", T), "/cds-services")
    assert discovery.status_code == 200
    assert {s["id"] for s in discovery.get_json()["services"]} >= {SERVICE}
    service = _call(app, sandbox.mint(ENDPOINT, T))
    assert service.status_code == 200, service.get_json()
    card = service.get_json()["cards"][0]["uuid"]
    feedback = app.test_client().post(
        f"/cds-services/{SERVICE}/feedback",
        json={"feedback": [{"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-06-01T12:00:00Z"}]},
        headers={"Authorization": f"Bearer {sandbox.mint(ENDPOINT + '/feedback', T)}"},
    )
    assert feedback.status_code == 200, feedback.get_json()


def test_the_sandbox_jwks_is_the_public_half_of_its_private_key() -> None:
    sandbox = Client.sandbox()
    published = json.loads((FIXTURES / "sandbox-jwks.json").read_text())["keys"][0]
    mine = sandbox.public_jwk()
    assert (published["kid"], published["x"], published["y"]) == (SANDBOX_KID, mine["x"], mine["y"])


def test_rs384_with_keys_from_a_jwks_uri(app: Flask, world: World) -> None:
    response = _call(app, world.rsa.mint(ENDPOINT, T))
    assert response.status_code == 200, response.get_json()


def test_allowlisted_jku_is_honoured(app: Flask, world: World) -> None:
    before = [r.path for r in world.jwks_server.requests].count("/jku/jwks.json")
    assert _call(app, world.jku_client.mint(ENDPOINT, T)).status_code == 200
    assert _call(app, world.jku_client.mint(ENDPOINT, T)).status_code == 200
    fetched = [r.path for r in world.jwks_server.requests].count("/jku/jwks.json") - before
    assert fetched <= 1  # fetched once (or already cached), not per call


def test_tenant_on_the_list_is_accepted(app: Flask, world: World) -> None:
    assert _call(app, world.tenant.mint(ENDPOINT, T, tenant="t2")).status_code == 200


def test_leeway_accepts_small_clock_skew(app: Flask, world: World) -> None:
    assert _call(app, world.sandbox.mint(ENDPOINT, T, iat=int(T) + 30)).status_code == 200
    assert _call(app, world.sandbox.mint(ENDPOINT, T, exp=int(T) - 30)).status_code == 200


def test_aud_may_be_a_list_holding_the_endpoint(app: Flask, world: World) -> None:
    sandbox = world.sandbox
    token = sandbox.sign(
        sandbox.header(), sandbox.claims(ENDPOINT, T) | {"aud": ["https://other.example.org", ENDPOINT]}
    )
    assert _call(app, token).status_code == 200


def test_es256_accepted_only_when_configured(world: World, caplog: pytest.LogCaptureFixture) -> None:
    app = world.app("es256", jwt_algorithms="ES384,RS384,ES256")
    assert _call(app, world.es256.mint(ENDPOINT, T)).status_code == 200


def test_health_and_preflight_need_no_token(app: Flask) -> None:
    assert app.test_client().get("/health/live").status_code == 200
    preflight = app.test_client().options(
        f"/cds-services/{SERVICE}",
        headers={"Origin": "https://ehr.example.org", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert preflight.headers.get("Access-Control-Allow-Headers", "").startswith("Authorization")


# ---------------------------------------------------------------------------------------------- attacks

Attack = Callable[[World], "str | None"]


def _none_alg(w: World) -> str:
    return raw_token({"alg": "none", "typ": "JWT", "kid": SANDBOX_KID}, w.sandbox.claims(ENDPOINT, T))


def _none_alg_mixed_case(w: World) -> str:
    return raw_token({"alg": "nOnE", "typ": "JWT", "kid": SANDBOX_KID}, w.sandbox.claims(ENDPOINT, T), b"x")


def _hs256_with_public_key(w: World) -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": w.rsa.kid}
    return sign_with_secret(header, w.rsa.claims(ENDPOINT, T), w.rsa.public_pem())


def _hs384_with_jwks_text(w: World) -> str:
    header = {"alg": "HS384", "typ": "JWT", "kid": SANDBOX_KID}
    secret = (FIXTURES / "sandbox-jwks.json").read_bytes()
    return sign_with_secret(header, w.sandbox.claims(ENDPOINT, T), secret)


def _rs256_not_configured(w: World) -> str:
    rs256 = Client(w.rsa.iss, w.rsa.kid, w.rsa.private_key, "RS256")
    return rs256.mint(ENDPOINT, T)


def _forged_signature(w: World) -> str:
    forger = Client(SANDBOX_ISS, SANDBOX_KID, w.attacker.private_key, "ES384", w.sandbox.jku)
    return forger.mint(ENDPOINT, T)


def _tampered_payload(w: World) -> str:
    head, _, sig = w.sandbox.mint(ENDPOINT, T).split(".")
    return f"{head}.{b64(json.dumps(w.sandbox.claims(ENDPOINT, T, exp=int(T) + 3000)))}.{sig}"


def _wrong_aud_other_service(w: World) -> str:
    return w.sandbox.mint(f"{BASE}/cds-services/spine-procedure-order-sign", T)


def _wrong_aud_discovery_url(w: World) -> str:
    return w.sandbox.mint(f"{BASE}/cds-services", T)


def _wrong_aud_other_host(w: World) -> str:
    return w.sandbox.mint(f"https://cds.attacker.example/cds-services/{SERVICE}", T)


def _wrong_iss(w: World) -> str:
    return w.attacker.mint(ENDPOINT, T)


def _iss_of_another_trusted_client(w: World) -> str:
    """The tenant EHR's key, claiming to be the sandbox: the sandbox's keys do not hold that kid."""
    return w.tenant.mint(ENDPOINT, T, iss=SANDBOX_ISS)


def _expired(w: World) -> str:
    return w.sandbox.mint(ENDPOINT, T, iat=int(T) - 600, exp=int(T) - 300)


def _iat_in_future(w: World) -> str:
    return w.sandbox.mint(ENDPOINT, T, iat=int(T) + 600, exp=int(T) + 900)


def _nbf_in_future(w: World) -> str:
    return w.sandbox.mint(ENDPOINT, T, nbf=int(T) + 600)


def _lifetime_too_long(w: World) -> str:
    return w.sandbox.mint(ENDPOINT, T, exp=int(T) + 7 * 86400)


def _exp_missing(w: World) -> str:
    return w.sandbox.mint(ENDPOINT, T, exp=DROP)


def _exp_as_string(w: World) -> str:
    return w.sandbox.mint(ENDPOINT, T, exp=str(int(T) + 300))


def _iat_missing(w: World) -> str:
    return w.sandbox.mint(ENDPOINT, T, iat=DROP)


def _jti_missing(w: World) -> str:
    return w.sandbox.mint(ENDPOINT, T, jti=DROP)


def _unknown_kid(w: World) -> str:
    # without jku: the sandbox's allowlisted jku is a public URL, and tests reach no network
    return w.sandbox.mint(ENDPOINT, T, header={"kid": "no-such-kid", "jku": DROP})


def _unknown_kid_at_allowlisted_jku(w: World) -> str:
    return w.jku_client.mint(ENDPOINT, T, header={"kid": "not-in-that-set"})


def _jku_only_issuer_without_jku(w: World) -> str:
    return w.jku_client.mint(ENDPOINT, T, header={"jku": DROP})


def _kid_missing(w: World) -> str:
    return w.sandbox.mint(ENDPOINT, T, header={"kid": DROP})


def _jku_not_allowlisted(w: World) -> str:
    """The attacker's own JWKS, on a reachable server, named in jku with a sandbox iss."""
    forger = Client(SANDBOX_ISS, w.attacker.kid, w.attacker.private_key, "ES384")
    return forger.mint(ENDPOINT, T, header={"jku": w.jwks_server.url("/attacker/jwks.json")})


def _embedded_jwk(w: World) -> str:
    forger = Client(SANDBOX_ISS, w.attacker.kid, w.attacker.private_key, "ES384")
    return forger.mint(ENDPOINT, T, header={"jwk": w.attacker.public_jwk(), "jku": DROP})


def _typ_wrong(w: World) -> str:
    return w.sandbox.mint(ENDPOINT, T, header={"typ": "at+jwt"})


def _typ_missing(w: World) -> str:
    return w.sandbox.mint(ENDPOINT, T, header={"typ": DROP})


def _crit_header(w: World) -> str:
    return w.sandbox.mint(ENDPOINT, T, header={"crit": ["b64"], "b64": False})


def _tenant_wrong(w: World) -> str:
    return w.tenant.mint(ENDPOINT, T, tenant="t9")


def _tenant_missing(w: World) -> str:
    return w.tenant.mint(ENDPOINT, T)


def _malformed_header(w: World) -> str:
    _, body, sig = w.sandbox.mint(ENDPOINT, T).split(".")
    return f"{b64('{not json')}.{body}.{sig}"


def _header_not_an_object(w: World) -> str:
    return raw_token('["ES384"]', w.sandbox.claims(ENDPOINT, T), b"sig")


def _duplicate_alg_member(w: World) -> str:
    header = '{"alg": "ES384", "typ": "JWT", "kid": "' + SANDBOX_KID + '", "alg": "none"}'
    return raw_token(header, w.sandbox.claims(ENDPOINT, T), b"sig")


def _two_segments(w: World) -> str:
    return ".".join(w.sandbox.mint(ENDPOINT, T).split(".")[:2])


def _oversized(w: World) -> str:
    return w.sandbox.mint(ENDPOINT, T, padding="x" * 10_000)


def _garbage(w: World) -> str:
    return "not-a-jwt"


def _key_of_wrong_curve(w: World) -> str:
    """ES384 in the header, but the kid names the ES256 issuer's P-256 key (signed with it as ES256)."""
    signer = Client(ES256_ISS, w.es256.kid, w.es256.private_key, "ES256")
    return signer.sign(signer.header(alg="ES384"), signer.claims(ENDPOINT, T))


ATTACKS: list[tuple[str, Attack, str]] = [
    ("alg none", _none_alg, "alg_forbidden"),
    ("alg none, mixed case", _none_alg_mixed_case, "alg_forbidden"),
    ("HS256 keyed with the RSA public key PEM", _hs256_with_public_key, "alg_forbidden"),
    ("HS384 keyed with the JWKS text", _hs384_with_jwks_text, "alg_forbidden"),
    ("RS256 not configured", _rs256_not_configured, "alg_not_accepted"),
    ("signature by another key", _forged_signature, "bad_signature"),
    ("payload changed after signing", _tampered_payload, "bad_signature"),
    ("aud of another service", _wrong_aud_other_service, "aud"),
    ("aud of discovery on a service call", _wrong_aud_discovery_url, "aud"),
    ("aud of another host", _wrong_aud_other_host, "aud"),
    ("issuer not trusted", _wrong_iss, "unknown_issuer"),
    ("trusted iss, another client's key", _iss_of_another_trusted_client, "unknown_kid"),
    ("expired", _expired, "expired"),
    ("iat in the future", _iat_in_future, "iat_future"),
    ("nbf in the future", _nbf_in_future, "nbf"),
    ("lifetime of a week", _lifetime_too_long, "lifetime"),
    ("exp missing", _exp_missing, "exp_iat_missing"),
    ("exp a string", _exp_as_string, "exp_iat_missing"),
    ("iat missing", _iat_missing, "exp_iat_missing"),
    ("jti missing", _jti_missing, "jti_missing"),
    ("unknown kid", _unknown_kid, "unknown_kid"),
    ("unknown kid, allowlisted jku refreshed", _unknown_kid_at_allowlisted_jku, "unknown_kid"),
    ("jku-only issuer, token without jku", _jku_only_issuer_without_jku, "jku_missing"),
    ("kid missing", _kid_missing, "kid_missing"),
    ("jku not allowlisted", _jku_not_allowlisted, "jku_not_allowed"),
    ("key embedded in the header", _embedded_jwk, "unknown_kid"),
    ("typ not JWT", _typ_wrong, "typ"),
    ("typ missing", _typ_missing, "typ"),
    ("crit header", _crit_header, "crit_header"),
    ("tenant not on the list", _tenant_wrong, "tenant"),
    ("tenant missing where required", _tenant_missing, "tenant"),
    ("malformed header", _malformed_header, "bad_header"),
    ("header not an object", _header_not_an_object, "bad_header"),
    ("duplicate alg member", _duplicate_alg_member, "bad_header"),
    ("two segments", _two_segments, "malformed"),
    ("oversized token", _oversized, "oversized"),
    ("not a JWT", _garbage, "malformed"),
    ("key of the wrong curve for alg", _key_of_wrong_curve, "key_mismatch"),
]


@pytest.mark.parametrize(("name", "attack", "reason"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_is_refused_with_401(
    app: Flask, world: World, caplog: pytest.LogCaptureFixture, name: str, attack: Attack, reason: str
) -> None:
    caplog.set_level(logging.INFO)
    before = len(world.jwks_server.requests)
    token = attack(world)
    _refused(_call(app, token), caplog, reason, token)
    if reason == "jku_not_allowed":
        assert not any(r.path.startswith("/attacker") for r in world.jwks_server.requests[before:])


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing_token"),
        ("Basic c3BpbmU6Y2Rz", "not_bearer"),
        ("Bearer", "not_bearer"),
        ("Bearer a.b.c extra", "not_bearer"),
    ],
)
def test_missing_or_non_bearer_authorization(
    app: Flask, caplog: pytest.LogCaptureFixture, header: str | None, reason: str
) -> None:
    caplog.set_level(logging.INFO)
    response = _call(app, None, headers={} if header is None else {"Authorization": header})
    _refused(response, caplog, reason)


def test_replayed_jti_is_refused(app: Flask, world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    token = world.sandbox.mint(ENDPOINT, T)
    assert _call(app, token).status_code == 200
    _refused(_call(app, token), caplog, "replay", token)


def test_same_jti_from_two_issuers_is_not_a_replay(app: Flask, world: World) -> None:
    jti = "shared-jti-between-issuers"
    assert _call(app, world.sandbox.mint(ENDPOINT, T, jti=jti)).status_code == 200
    assert _call(app, world.rsa.mint(ENDPOINT, T, jti=jti)).status_code == 200


def test_unknown_service_is_401_before_404(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    _refused(_call(app, None, "/cds-services/no-such-service"), caplog, "missing_token")


def test_auth_disabled_lets_calls_through_with_a_loud_warning(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    app = world.app("disabled", auth="disabled")
    assert any("AUTHENTICATION IS DISABLED" in r.getMessage() for r in caplog.records)
    assert _call(app, None).status_code == 200
