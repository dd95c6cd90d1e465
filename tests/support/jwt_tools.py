"""Minting CDS Hooks client JWTs for tests: good ones, and every kind of bad one.

``Client`` holds a private key and its public JWK; ``mint`` signs with PyJWT, ``raw_token``
assembles a token from arbitrary header/payload/signature bytes (for what PyJWT refuses to make:
``alg: none``, duplicate members, broken base64 ...).
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures_auth"
SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SPEC_ISS = "https://fhir-ehr.example.com/"
SPEC_JKU = "https://fhir-ehr.example.com/jwk_uri"
SPEC_TOKEN = (FIXTURES / "spec-example-token.txt").read_text(encoding="utf-8").strip()


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def raw_token(header: dict[str, Any] | str, payload: dict[str, Any] | str, signature: bytes = b"") -> str:
    h = header if isinstance(header, str) else json.dumps(header)
    p = payload if isinstance(payload, str) else json.dumps(payload)
    return f"{b64(h)}.{b64(p)}.{b64(signature)}"


@dataclass
class Client:
    """A CDS client (EHR) with its signing key."""

    iss: str
    kid: str
    private_key: Any
    alg: str = "ES384"
    jku: str | None = None

    @classmethod
    def sandbox(cls) -> Client:
        pem = (FIXTURES / "sandbox-ecprivkey.pem").read_bytes()
        key = serialization.load_pem_private_key(pem, password=None)
        return cls(SANDBOX_ISS, SANDBOX_KID, key, "ES384", SANDBOX_JKU)

    @classmethod
    def spec_example(cls) -> Client:
        jwk = json.loads((FIXTURES / "spec-example-private.jwk.json").read_text(encoding="utf-8"))
        return cls(SPEC_ISS, "example-kid", jwt.PyJWK(jwk).key, "ES384", SPEC_JKU)

    @classmethod
    def generated(cls, iss: str, alg: str = "ES384", kid: str | None = None, rsa_bits: int = 2048) -> Client:
        curves = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
        if alg in curves:
            key: Any = ec.generate_private_key(curves[alg])
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        return cls(iss, kid or str(uuid.uuid4()), key, alg)

    def public_jwk(self, **extra: Any) -> dict[str, Any]:
        algo = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = algo.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": self.alg})
        jwk.update(extra)
        return jwk

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}

    def public_pem(self) -> bytes:
        return bytes(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def claims(self, aud: str, now: float, **overrides: Any) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": self.iss,
            "aud": aud,
            "exp": int(now) + 300,
            "iat": int(now),
            "jti": str(uuid.uuid4()),
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not _DROP}

    def header(self, **overrides: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": self.alg, "typ": "JWT", "kid": self.kid}
        if self.jku:
            header["jku"] = self.jku
        header.update(overrides)
        return {k: v for k, v in header.items() if v is not _DROP}

    def mint(self, aud: str, now: float, *, header: dict[str, Any] | None = None, **claims: Any) -> str:
        """A token signed with this client's key; ``header``/``claims`` override or (with DROP) remove members."""
        return self.sign(self.header(**(header or {})), self.claims(aud, now, **claims))

    def sign(self, header: dict[str, Any], payload: dict[str, Any]) -> str:
        """Sign any header and payload as given (the header's alg is not consulted: this client's is used)."""
        signing_input = f"{b64(json.dumps(header))}.{b64(json.dumps(payload))}"
        signature = jwt.get_algorithm_by_name(self.alg).sign(signing_input.encode(), self.private_key)
        return f"{signing_input}.{b64(signature)}"


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _Drop()
_DROP = DROP


def sign_with_secret(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """An HMAC token keyed with ``secret`` (e.g. a public key's PEM: the classic key-confusion attack)."""
    import hashlib
    import hmac

    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[header["alg"]]
    signing_input = f"{b64(json.dumps(header))}.{b64(json.dumps(payload))}"
    signature = hmac.new(secret, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(signature)}"
