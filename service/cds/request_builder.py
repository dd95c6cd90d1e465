"""One way to build a CDS Hooks request from a patient's FHIR resources, as an EHR answering our prefetch
templates would send it.

Everything that makes requests goes through here: the console's try-it API and ``spinecds evaluate``
(``subjects_from_json``; ``service/batch/inputs.py`` only reads the files), the patient-case tests
(``tests/support/cases.py``), the fixture tests and the benchmark (``bench/bodies.py``).

Recognised records (``subjects_from_json``):

* a CDS Hooks request (``{"hook": ..., "context": ..., "prefetch": ...}``): used as is, except that
  ``fhirServer``/``fhirAuthorization`` are dropped (offline: only the prefetch counts);
* a FHIR Bundle (any type; ``entry[].resource``): one request per Patient in it;
* a patient case file (``{"resources": [...]}``, the format of ``tests/cases``): one request per Patient;
* a Patient resource.

A Bundle or case file is read as the patient's whole record, so every prefetch category is documented (an
empty list is an empty list). A record of only some resource types (an NDJSON export of some types:
``exported``) documents only the categories of those types; the rest stay unknown, as with a missing key.

Routing (``prefetch_key``): a resource goes into the prefetch key whose template
(``service/cds/definitions.PREFETCH``) would select it: the template's resource type and, where the template
searches by ``code=``, one of the template's codes (``system|code``, or ``system|`` for a whole CodeSystem),
so the three Observation keys are told apart by the codes the service itself asks for, never by a copied list.
Other search parameters (status, clinical status, category) are not applied: an EHR may send more than it was
asked for and the service must read that correctly. A Medication travels in ``meds`` as a ``_include`` returns
it (``search.mode`` include); a resource no template selects travels in the extra key ``other`` (the service
reads extra keys as extra data, as it would from an EHR that sends its whole chart).

Ownership (``patient_of``, ``split_by_patient``): which patient a resource is about, read from the element
the service's intake reads (``service.fhir.pool.PATIENT_ELEMENT``) with the same reference forms: relative
``Patient/A``, absolute ``https://ehr/fhir/Patient/A`` (also ``/_history/n``), and ``urn:uuid:``/``urn:oid:``
resolved through a Bundle entry's ``fullUrl`` (or ``urn:uuid:A`` when nothing resolves it, the convention of
converters that mint fullUrls from ids). Resources without a patient reference (a Medication, or one that
references nothing) belong to the patient of a one-patient record.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from service.fhir.pool import PATIENT_ELEMENT

from .definitions import PREFETCH, SERVICES, template_type

# hook -> the id of the service that answers it
SERVICE_FOR_HOOK: dict[str, str] = {s.hook: s.id for s in SERVICES.values()}
ORDER_HOOKS = frozenset({"order-select", "order-sign"})
EXTRA_KEY = "other"  # resources no template selects
RECORD_USER = "Practitioner/spinecds-offline"  # the user of requests built from a record (console, evaluate)
# types no template searches that travel with a search's matches, as `_include` returns them
INCLUDED_WITH = {"Medication": "meds"}  # the target of MedicationRequest.medicationReference


class UnknownHook(ValueError):
    """A hook no service here answers."""


class BadInput(ValueError):
    """The data cannot be read as any of the recognised records (console: 400; ``spinecds evaluate``: exit 2)."""


@dataclass(frozen=True)
class Subject:
    """One evaluation to run: a label without patient data, and the request (or why there is none)."""

    label: str
    service_id: str | None
    body: dict[str, Any] | None
    error: str | None = None


@dataclass(frozen=True)
class Template:
    """What one prefetch template selects: a resource type and, when it searches by code, those codes."""

    key: str
    resource_type: str
    codes: frozenset[tuple[str, str]] | None  # (system, code); code "" = the whole system; None = any code

    def selects(self, resource: Mapping[str, Any]) -> bool:
        if resource.get("resourceType") != self.resource_type:
            return False
        if self.codes is None:
            return True
        return any((system, code) in self.codes or (system, "") in self.codes for system, code in _codings(resource))


def _template(key: str, template: str) -> Template:
    rtype, is_search = template_type(key)
    if not is_search:
        return Template(key, rtype, None)
    params = parse_qsl(template.split("?", 1)[1], keep_blank_values=True)
    tokens = [token for name, value in params if name == "code" for token in value.split(",")]
    if not tokens:
        return Template(key, rtype, None)
    codes = {tuple(token.split("|", 1)) for token in tokens if "|" in token}
    return Template(key, rtype, frozenset((system, code) for system, code in codes))


TEMPLATES: tuple[Template, ...] = tuple(_template(key, template) for key, template in PREFETCH.items())
# resource type -> the prefetch keys whose templates search it (Observation: three, told apart by code)
KEYS_FOR_TYPE: dict[str, tuple[str, ...]] = {}
for _t in TEMPLATES:
    KEYS_FOR_TYPE[_t.resource_type] = (*KEYS_FOR_TYPE.get(_t.resource_type, ()), _t.key)


def _codings(resource: Mapping[str, Any]) -> Iterable[tuple[Any, Any]]:
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, Mapping) else None
    for coding in codings if isinstance(codings, list) else ():
        if isinstance(coding, Mapping):
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, (str, type(None))):  # a malformed coding selects nothing
                yield system, code


def service_for(hook: str) -> str:
    """The id of the service answering ``hook``; UnknownHook when none does."""
    try:
        return SERVICE_FOR_HOOK[hook]
    except KeyError:
        raise UnknownHook(f"hook {hook!r} is not served here (we answer {', '.join(SERVICE_FOR_HOOK)})") from None


def prefetch_key(resource: Mapping[str, Any]) -> str:
    """The prefetch key whose template selects ``resource`` (``other`` when none does)."""
    rtype = resource.get("resourceType")
    if isinstance(rtype, str) and rtype in INCLUDED_WITH:
        return INCLUDED_WITH[rtype]
    return next((t.key for t in TEMPLATES if t.selects(resource)), EXTRA_KEY)


def documented_keys(types: Iterable[str]) -> set[str]:
    """The prefetch keys a record holding only these resource types documents (an NDJSON export of some types)."""
    return {"patient"} | {key for rtype in types for key in KEYS_FOR_TYPE.get(rtype, ())}


def referenced_patient(reference: str, aliases: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The id of the Patient a reference string points at, or None (another type, a search, a contained one)."""
    target = aliases.get(reference)
    if target is not None:
        return str(target.get("id")) if target.get("resourceType") == "Patient" else None
    if reference.startswith("urn:uuid:"):
        return reference.removeprefix("urn:uuid:") or None
    if reference.startswith("urn:") or "?" in reference or "#" in reference:
        return None
    parts = reference.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return parts[-1] if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] else None


def patient_of(resource: Mapping[str, Any], aliases: Mapping[str, Mapping[str, Any]] | None = None) -> str | None:
    """The id of the patient ``resource`` is about (a Patient: its own id); None when it names none."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) else None
    element = PATIENT_ELEMENT.get(rtype) if isinstance(rtype, str) else None
    ref = resource.get(element) if element else None
    text = ref.get("reference") if isinstance(ref, Mapping) else None
    return referenced_patient(text, aliases or {}) if isinstance(text, str) else None


def split_by_patient(
    resources: Iterable[Any], aliases: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, list[Mapping[str, Any]]]:
    """Patient id -> the resources about that patient (its Patient resource included when present).

    Every patient that is present or referenced gets an entry. A resource that names no patient belongs to the
    patient of a one-patient record (exactly one Patient resource); otherwise it is left out. Anything that is
    not a JSON object with a ``resourceType`` is left out.
    """
    clean = [r for r in resources if isinstance(r, Mapping) and isinstance(r.get("resourceType"), str)]
    present = [str(r["id"]) for r in clean if r["resourceType"] == "Patient" and isinstance(r.get("id"), str)]
    out: dict[str, list[Mapping[str, Any]]] = {pid: [] for pid in present}
    for resource in clean:
        owner = patient_of(resource, aliases)
        if owner is None and len(present) == 1:
            owner = present[0]
        if owner is not None:
            out.setdefault(owner, []).append(resource)
    return out


def searchset(resources: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A searchset Bundle of ``resources``; Medications as ``_include`` entries, not counted in ``total``."""
    entries = [
        {"resource": r, "search": {"mode": "include"}} if r.get("resourceType") in INCLUDED_WITH else {"resource": r}
        for r in resources
    ]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": sum(1 for e in entries if "search" not in e),
    }
    if entries:
        bundle["entry"] = entries
    return bundle


def build_request(
    hook: str,
    patient_id: str,
    resources: Iterable[Mapping[str, Any]],
    *,
    user: str,
    draft_orders: Iterable[Mapping[str, Any]] = (),
    documented: Collection[str] | None = None,
    null_keys: Iterable[str] = (),
    fhir_server: str | None = None,
    fhir_authorization: Mapping[str, Any] | None = None,
    hook_instance: str | None = None,
    patient_full_url: str | None = None,
) -> dict[str, Any]:
    """The CDS Hooks request of ``hook`` for patient ``patient_id`` whose data are ``resources``.

    ``prefetch.patient`` is the Patient of ``patient_id`` among ``resources`` (absent when it is not there);
    every other resource goes into the key ``prefetch_key`` names, each key a searchset Bundle (an empty one
    when the record has nothing for it: the record documents that category). ``documented`` limits the keys
    sent (default: every key); ``null_keys`` are sent as ``null`` (the EHR says: no data). At order hooks,
    ``draft_orders`` and the draft ServiceRequests among ``resources`` are the draft orders, all selected at
    order-select. ``patient_full_url``: the Patient's ``fullUrl`` in the record it came from; when the record's
    references need it to reach the patient (``urn:uuid:x`` for Patient ``a``), ``prefetch.patient`` is a
    one-entry searchset carrying it, so the service resolves them as in the record instead of setting the
    patient's data aside. ``fhir_server`` and ``fhir_authorization`` (the token for it) let the service fetch
    what the prefetch lacks. UnknownHook when no service answers ``hook``.
    """
    service_for(hook)
    keys = set(PREFETCH) if documented is None else set(documented)
    orders = list(draft_orders)
    patient: Mapping[str, Any] | None = None
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for resource in resources:
        rtype = resource.get("resourceType")
        if rtype == "Patient" and resource.get("id") == patient_id and patient is None:
            patient = resource
            continue
        if hook in ORDER_HOOKS and rtype == "ServiceRequest" and resource.get("status") == "draft":
            orders.append(resource)
            continue
        key = EXTRA_KEY if rtype == "Patient" else prefetch_key(resource)  # another patient: not a search result
        grouped.setdefault(key, []).append(resource)
    prefetch: dict[str, Any] = {}
    for key in PREFETCH:
        if key not in keys:
            continue
        if key == "patient":
            if patient is not None and patient_full_url and referenced_patient(patient_full_url, {}) != patient_id:
                prefetch[key] = {**searchset([patient]), "entry": [{"fullUrl": patient_full_url, "resource": patient}]}
            elif patient is not None:
                prefetch[key] = patient
            continue
        prefetch[key] = searchset(grouped.get(key, []))
    if grouped.get(EXTRA_KEY):
        prefetch[EXTRA_KEY] = searchset(grouped[EXTRA_KEY])
    prefetch.update({key: None for key in null_keys})
    context: dict[str, Any] = {"userId": user, "patientId": patient_id}
    if hook in ORDER_HOOKS:
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": o} for o in orders],
        }
        if hook == "order-select":
            context["selections"] = [f"{o.get('resourceType')}/{o.get('id')}" for o in orders]
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": hook_instance or str(uuid.uuid4()),
        "context": context,
        "prefetch": prefetch,
    }
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
    if fhir_authorization is not None:
        body["fhirAuthorization"] = dict(fhir_authorization)
    return body


def case_request(
    case: Mapping[str, Any],
    *,
    user: str,
    hook: str = "patient-view",
    resources: Iterable[Mapping[str, Any]] | None = None,
    hook_instance: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """(service id, request) of a patient case file (the format of ``tests/cases``, see its README).

    The case's own ``hook`` (else ``hook``), ``draft_orders``, ``missing_keys`` (categories the EHR could not
    send: left out) and ``null_keys`` (sent as ``null``) are applied; ``resources`` replaces the case's
    resources (e.g. one patient's share of them). ValueError when the case is not of that shape.
    """
    hook = _text(case.get("hook", hook), "hook")
    items = case.get("resources") if resources is None else list(resources)
    if not isinstance(items, list):
        raise ValueError("resources: must be an array of FHIR resources")
    clean = [r for r in items if isinstance(r, Mapping) and isinstance(r.get("resourceType"), str)]
    patient = next((r for r in clean if r["resourceType"] == "Patient" and isinstance(r.get("id"), str)), None)
    if patient is None:
        raise ValueError("no Patient resource with an id")
    missing = set(_texts(case, "missing_keys"))
    body = build_request(
        hook,
        str(patient["id"]),
        clean,
        user=user,
        draft_orders=[o for o in _list(case, "draft_orders") if isinstance(o, Mapping)],
        documented=[key for key in PREFETCH if key not in missing],
        null_keys=_texts(case, "null_keys"),
        hook_instance=hook_instance,
    )
    return service_for(hook), body


def _list(case: Mapping[str, Any], name: str) -> list[Any]:
    value = case.get(name, [])
    if not isinstance(value, list):
        raise ValueError(f"{name}: must be an array")
    return value


def _texts(case: Mapping[str, Any], name: str) -> list[str]:
    return [_text(item, name) for item in _list(case, name)]


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: must be a string, not {type(value).__name__}")
    return value


def subjects_from_json(data: Any, label: str, hook: str = "patient-view") -> list[Subject]:
    """The requests of a record (see the module docstring); BadInput when it is none of them."""
    if not isinstance(data, Mapping):
        raise BadInput(f"{label}: expected a JSON object (CDS Hooks request, Bundle or case file)")
    if "hook" in data and "context" in data:
        return [_from_hook_request(data, label)]
    if data.get("resourceType") == "Bundle":
        entries = data.get("entry", [])
        if not isinstance(entries, list):
            raise BadInput(f"{label}: Bundle.entry must be an array")
        pairs = [e for e in entries if isinstance(e, Mapping) and isinstance(e.get("resource"), Mapping)]
        aliases = {str(e["fullUrl"]): e["resource"] for e in pairs if isinstance(e.get("fullUrl"), str)}
        return subjects_from_resources([e["resource"] for e in pairs], label, hook, aliases=aliases)
    if isinstance(data.get("resources"), list):
        return _from_case(data, label, hook)
    if data.get("resourceType") == "Patient":
        return subjects_from_resources([data], label, hook)
    raise BadInput(f"{label}: not a CDS Hooks request, a FHIR Bundle, a case file or an NDJSON export")


def _from_hook_request(data: Mapping[str, Any], label: str) -> Subject:
    hook = data.get("hook")
    service_id = SERVICE_FOR_HOOK.get(hook) if isinstance(hook, str) else None
    if service_id is None:
        raise BadInput(f"{label}: hook {hook!r} is not served here (we answer {', '.join(SERVICE_FOR_HOOK)})")
    body = {k: v for k, v in data.items() if k not in ("fhirServer", "fhirAuthorization")}
    return Subject(label, service_id, body)


def _from_case(case: Mapping[str, Any], label: str, hook: str) -> list[Subject]:
    owned = split_by_patient(case["resources"])
    patients = _patients(case["resources"])
    try:
        if not patients:
            return [Subject(label, service_for(case.get("hook", hook)), None, "no Patient resource with an id")]
        subjects = []
        for index, pid in enumerate(patients, 1):
            service, body = case_request(case, user=RECORD_USER, hook=hook, resources=owned[pid])
            subjects.append(Subject(label if len(patients) == 1 else f"{label} #{index}", service, body))
    except (UnknownHook, ValueError, TypeError) as exc:
        raise BadInput(f"{label}: {exc}") from exc
    return subjects


def _patients(resources: Iterable[Any]) -> list[str]:
    """Ids of the Patient resources of a record, in order, each once."""
    ids = [r.get("id") for r in resources if isinstance(r, Mapping) and r.get("resourceType") == "Patient"]
    return list(dict.fromkeys(str(i) for i in ids if isinstance(i, str)))


def subjects_from_resources(
    resources: list[Any],
    label: str,
    hook: str = "patient-view",
    *,
    exported: set[str] | None = None,
    aliases: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Subject]:
    """One request per Patient of a record; ``exported`` limits the documented categories to those types."""
    try:
        service = service_for(hook)
    except UnknownHook as exc:
        raise BadInput(f"{label}: {exc}") from exc
    patients = _patients(resources)
    if not patients:
        return [Subject(label, service, None, "no Patient resource with an id")]
    owned = split_by_patient(resources, aliases)
    documented = None if exported is None else documented_keys(exported)
    full_urls = {str(r.get("id")): url for url, r in (aliases or {}).items() if r.get("resourceType") == "Patient"}
    return [
        Subject(
            label if len(patients) == 1 else f"{label} #{index}",
            service,
            build_request(
                hook, pid, owned[pid], user=RECORD_USER, documented=documented, patient_full_url=full_urls.get(pid)
            ),
        )
        for index, pid in enumerate(patients, 1)
    ]
