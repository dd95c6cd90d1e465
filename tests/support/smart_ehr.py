"""A test EHR on loopback: SMART App Launch 2.x authorization server + FHIR R4 server with writes.

``SmartEhr`` extends :class:`FhirTestServer` (read/search, request log) on one origin with

* ``GET /fhir/.well-known/smart-configuration`` (``code_challenge_methods_supported: ["S256"]``);
* ``GET /auth/authorize``: checks client id, redirect URI, ``aud``, the ``launch`` it issued,
  ``state`` and an S256 ``code_challenge``, then redirects to the app with a one-time code;
* ``POST /auth/token``: checks the code, redirect URI, client id and the PKCE verifier, and answers
  ``access_token``, ``patient``, ``scope``, an ``id_token`` whose ``fhirUser`` is the launching
  practitioner, and the launch's ``appContext`` (CDS Hooks link ``appContext``);
* ``POST /fhir/Observation``: 201 with the stored resource, or the OperationOutcome of ``refuse``
  (a callable the test sets) with 422; a write for another patient than the token's is refused (403);
* CORS on every answer, as an EHR serving a browser app from another origin must;
* ``ignore_patient_search``: searches ignore ``patient``/``subject`` (a broken EHR answering with
  every patient's data), to test that the app shows only the context patient's.

Every failed check is appended to ``problems`` (and answered 400), so a test can assert none occurred.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from .fhir_server import FHIR_JSON, FhirTestServer, _Handler, _HTTPServer, _operation_outcome

Resource = dict[str, Any]
Refusal = Callable[[Resource], Resource | None]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Launch:
    patient: str
    fhir_user: str | None
    app_context: str | None


@dataclass
class Grant:
    launch: Launch
    challenge: str
    redirect_uri: str
    scope: str


class _SmartHandler(_Handler):
    server: _SmartHTTPServer

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Expose-Headers", "Location, Content-Location")
        super().end_headers()

    def do_OPTIONS(self) -> None:  # CORS preflight
        self.send_response(HTTPStatus.NO_CONTENT)
        self.send_header("Access-Control-Allow-Methods", "GET, POST")
        self.send_header("Access-Control-Allow-Headers", "authorization, content-type, accept")
        self.send_header("Access-Control-Max-Age", "60")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if self.server.app.ignore_patient_search and url.query:  # a broken EHR: every patient's data
            kept = [(k, v) for k, v in parse_qsl(url.query, keep_blank_values=True) if k not in {"patient", "subject"}]
            self.path = f"{url.path}?{urlencode(kept)}"
        if url.path == "/auth/authorize":
            self.server.app._record(self)
            self._authorize({k: v[0] for k, v in parse_qs(url.query).items()})
            return
        super().do_GET()

    def do_POST(self) -> None:
        record = self.server.app._record(self)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        if path == "/auth/token":
            self._token({k: v[0] for k, v in parse_qs(body.decode()).items()})
        elif path == "/fhir/Observation":
            self._create(record.authorization, body)
        else:
            self._send_outcome(HTTPStatus.METHOD_NOT_ALLOWED, "not-supported", f"POST {path} not supported")

    do_PUT = do_PATCH = do_DELETE = _Handler._method_not_allowed

    # -- SMART

    def _fail(self, message: str) -> None:
        self.server.app.problems.append(message)
        self._send_bytes(HTTPStatus.BAD_REQUEST, message.encode(), "text/plain")

    def _authorize(self, q: dict[str, str]) -> None:
        ehr = self.server.app
        checks = {
            "response_type": q.get("response_type") == "code",
            "client_id": q.get("client_id") == ehr.client_id,
            "redirect_uri": q.get("redirect_uri") == ehr.redirect_uri,
            "aud": q.get("aud") == ehr.base_url,
            "launch": q.get("launch") in ehr.launches,
            "state": bool(q.get("state")),
            "code_challenge": bool(q.get("code_challenge")),
            "code_challenge_method": q.get("code_challenge_method") == "S256",
            "scope": "launch" in (q.get("scope") or "").split(),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            self._fail(f"authorize: bad {', '.join(bad)}")
            return
        code = secrets.token_urlsafe(16)
        with ehr._smart_lock:
            ehr.grants[code] = Grant(ehr.launches[q["launch"]], q["code_challenge"], q["redirect_uri"], q["scope"])
        location = f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}"
        self._send_bytes(HTTPStatus.FOUND, b"", "text/plain", {"Location": location})

    def _token(self, form: dict[str, str]) -> None:
        ehr = self.server.app
        with ehr._smart_lock:
            grant = ehr.grants.pop(form.get("code", ""), None)  # one-time
        if grant is None:
            self._fail("token: unknown or reused code")
            return
        verifier = form.get("code_verifier", "")
        checks = {
            "grant_type": form.get("grant_type") == "authorization_code",
            "redirect_uri": form.get("redirect_uri") == grant.redirect_uri,
            "client_id": form.get("client_id") == ehr.client_id,
            "code_verifier": bool(verifier) and b64url(hashlib.sha256(verifier.encode()).digest()) == grant.challenge,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            self._fail(f"token: bad {', '.join(bad)}")
            return
        token = ehr.issue_token(grant.launch.patient)
        answer: Resource = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": grant.scope,
            "patient": grant.launch.patient,
            "id_token": ehr.id_token(grant.launch.fhir_user),
            "need_patient_banner": True,
        }
        if grant.launch.app_context is not None:
            answer["appContext"] = grant.launch.app_context
        self._send_json(HTTPStatus.OK, answer, "application/json", {"Cache-Control": "no-store"})

    # -- FHIR write

    def _create(self, authorization: str | None, body: bytes) -> None:
        ehr = self.server.app
        patient = ehr.token_patient(authorization)
        if patient is None:
            self._send_outcome(HTTPStatus.UNAUTHORIZED, "login", "Missing or invalid bearer token")
            return
        try:
            resource = json.loads(body)
        except ValueError:
            self._send_outcome(HTTPStatus.BAD_REQUEST, "invalid", "body is not JSON")
            return
        if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
            self._send_outcome(HTTPStatus.BAD_REQUEST, "invalid", "not an Observation")
            return
        if (resource.get("subject") or {}).get("reference") != f"Patient/{patient}":
            ehr.problems.append("write for a patient other than the token's")
            self._send_outcome(HTTPStatus.FORBIDDEN, "forbidden", "subject is not the patient of this token")
            return
        refusal = ehr.refuse(resource) if ehr.refuse is not None else None
        if refusal is not None:
            self._send_json(HTTPStatus.UNPROCESSABLE_ENTITY, refusal)
            return
        resource["id"] = str(uuid.uuid4())
        resource["meta"] = {"versionId": "1"}
        ehr.add(resource)
        with ehr._smart_lock:
            ehr.written.append(resource)
        location = f"{ehr.base_url}/Observation/{resource['id']}/_history/1"
        self._send_json(HTTPStatus.CREATED, resource, FHIR_JSON, {"Location": location})


class _SmartHTTPServer(_HTTPServer):
    app: SmartEhr

    def __init__(self, app: SmartEhr) -> None:
        self.app = app
        super(_HTTPServer, self).__init__(("127.0.0.1", 0), _SmartHandler)


class SmartEhr(FhirTestServer):
    def __init__(self, *, client_id: str, redirect_uri: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.launches: dict[str, Launch] = {}
        self.grants: dict[str, Grant] = {}
        self.tokens: dict[str, str] = {}  # access token -> patient id
        self.written: list[Resource] = []
        self.problems: list[str] = []
        self.refuse: Refusal | None = None
        self.ignore_patient_search = False  # True: searches answer every patient's resources (a broken EHR)
        self._smart_lock = threading.Lock()
        self._id_token_key = secrets.token_bytes(32)

    def start(self) -> SmartEhr:
        if self._httpd is not None:
            raise RuntimeError("SmartEhr is already running")
        self._stopping.clear()
        self._httpd = _SmartHTTPServer(self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.serve_json(
            "/fhir/.well-known/smart-configuration",
            {
                "issuer": self.base_url,
                "authorization_endpoint": self.url("/auth/authorize"),
                "token_endpoint": self.url("/auth/token"),
                "grant_types_supported": ["authorization_code"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["launch", "openid", "fhirUser", "patient/*.rs", "patient/Observation.c"],
                "response_types_supported": ["code"],
                "capabilities": ["launch-ehr", "client-public", "context-ehr-patient", "sso-openid-connect"],
            },
        )
        return self

    def __enter__(self) -> SmartEhr:
        return self.start()

    def register_launch(self, patient: str, fhir_user: str | None, app_context: str | None) -> str:
        launch_id = secrets.token_urlsafe(12)
        self.launches[launch_id] = Launch(patient, fhir_user, app_context)
        return launch_id

    def issue_token(self, patient: str) -> str:
        token = secrets.token_urlsafe(24)
        with self._smart_lock:
            self.tokens[token] = patient
        return token

    def token_patient(self, authorization: str | None) -> str | None:
        scheme, _, token = (authorization or "").partition(" ")
        return self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None

    def _authorized(self, authorization: str | None) -> bool:
        return self.token_patient(authorization) is not None

    def id_token(self, fhir_user: str | None) -> str:
        """An OpenID Connect id_token (HS256, key private to this server: the app does not verify it);
        without ``fhirUser`` when ``fhir_user`` is None (an EHR that does not say who launched)."""
        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims: Resource = {"iss": self.base_url, "sub": "user-1", "aud": self.client_id}
        if fhir_user is not None:
            claims |= {"sub": fhir_user.rsplit("/", 1)[-1], "fhirUser": fhir_user}
        payload = b64url(json.dumps(claims).encode())
        signature = b64url(hmac.new(self._id_token_key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return f"{header}.{payload}.{signature}"


def refuse_code(code: str, diagnostics: str) -> Refusal:
    """A ``SmartEhr.refuse`` that refuses Observations with ``code`` (any system)."""

    def refuse(resource: Resource) -> Resource | None:
        codings = (resource.get("code") or {}).get("coding") or []
        if any(c.get("code") == code for c in codings):
            outcome = _operation_outcome("business-rule", diagnostics)
            return outcome
        return None

    return refuse
