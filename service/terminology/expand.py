"""Generate ValueSet.expansion for the ValueSets in fhir_profiles/ from spec.yaml and the committed extracts.

expansion.contains = the ValueSet's own explicit compose concepts (local or single-source codes, each
with its verification status in compose) + the members spec.yaml selects from published value sets +
every ICD-10-CM descendant of the compose's ICD-10-CM is-a filters (simple-icd-10-cm).
expansion.parameter records each source (repository, commit, path, canonical url|version) and the
ICD-10-CM package version. The timestamp changes
only when the contents change, so regenerating from unchanged sources is a no-op (the staleness test).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .harvest import SOURCES, load_spec

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
PROFILES = Path(__file__).resolve().parents[2] / "fhir_profiles"
ICD_PACKAGE = "simple-icd-10-cm"

Member = tuple[str, str, str]  # system, code, display


def _words(names: Iterable[str]) -> re.Pattern[str] | None:
    names = list(names)
    if not names:
        return None
    return re.compile(r"(?<![\w-])(" + "|".join(re.escape(n) for n in names) + r")(?![\w-])", re.IGNORECASE)


def select(extract: Mapping[str, Any], rule: Mapping[str, Any]) -> list[Member]:
    """Members of one extract chosen by names/unless/codes (see spec.yaml)."""
    wanted, unwanted = _words(rule.get("names", [])), _words(rule.get("unless", []))
    codes = {str(c) for c in rule.get("codes", [])}
    out = []
    for c in extract["contains"]:
        display = c.get("display", "")
        if codes and c["code"] not in codes:
            continue
        if wanted and not wanted.search(display):
            continue
        if unwanted and unwanted.search(display):
            continue
        out.append((c["system"], c["code"], display))
    return out


def icd10cm_descendants(root: str) -> list[Member]:
    import simple_icd_10_cm as icd  # type: ignore[import-untyped]  # generator only; the service reads expansions

    if not icd.is_valid_item(root):
        raise ValueError(f"{root} is not an ICD-10-CM code")
    codes = [root, *icd.get_descendants(root)]
    return [(ICD10CM, icd.add_dot(c), icd.get_description(c)) for c in codes if icd.is_category_or_subcategory(c)]


def load_extract(key: str, sources: Path = SOURCES) -> dict[str, Any]:
    extract: dict[str, Any] = json.loads((sources / f"{key}.json").read_text(encoding="utf-8"))
    return extract


def compose_members(resource: Mapping[str, Any]) -> list[Member]:
    return [
        (inc["system"], c["code"], c.get("display", ""))
        for inc in resource.get("compose", {}).get("include", [])
        for c in inc.get("concept", [])
    ]


def compose_icd10cm_roots(resource: Mapping[str, Any]) -> list[str]:
    """The ICD-10-CM is-a filter values of the ValueSet's compose, in order."""
    return [
        f["value"]
        for inc in resource.get("compose", {}).get("include", [])
        if inc.get("system") == ICD10CM
        for f in inc.get("filter", [])
        if f.get("op") == "is-a"
    ]


def expansion_for(resource: Mapping[str, Any], entry: Mapping[str, Any], sources: Path = SOURCES) -> dict[str, Any]:
    members: dict[tuple[str, str], str] = {}
    params: list[dict[str, Any]] = []
    own = compose_members(resource)
    for system, code, display in own:
        members.setdefault((system, code), display)
    if own:
        own_note = "compose.include.concept of this ValueSet (see each concept's verification-status)"
        params.append({"name": "source", "valueString": own_note})
    for rule in entry.get("from", []):
        extract = load_extract(rule["source"], sources)
        chosen = select(extract, rule)
        if not chosen:
            raise ValueError(f"{resource['id']}: {rule} selects nothing from {rule['source']}")
        for system, code, display in chosen:
            members.setdefault((system, code), display)
        prov = extract["provenance"]
        how = "; ".join(f"{k}: {', '.join(map(str, rule[k]))}" for k in ("names", "unless", "codes") if k in rule)
        params.append(
            {
                "name": "source",
                "valueString": (
                    f"{prov['repository']}@{prov['commit']}:{prov['path']} ({prov['title']}, "
                    f"{prov['url']}|{prov['version']}, expansion {prov['expansionTimestamp']}): "
                    f"{len(chosen)} members" + (f" selected by {how}" if how else "")
                ),
            }
        )
    roots = compose_icd10cm_roots(resource)
    if roots:
        for root in roots:
            for system, code, display in icd10cm_descendants(root):
                members.setdefault((system, code), display)
        params.append(
            {
                "name": "source",
                "valueString": f"ICD-10-CM tree from PyPI {ICD_PACKAGE} {version(ICD_PACKAGE)}: "
                f"each code and every descendant of {', '.join(roots)}",
            }
        )
        params.append({"name": "used-codesystem", "valueUri": f"{ICD10CM}|{ICD_PACKAGE}-{version(ICD_PACKAGE)}"})
    contains = [{"system": s, "code": c, **({"display": d} if d else {})} for (s, c), d in sorted(members.items())]
    return {"parameter": params, "total": len(contains), "contains": contains}


def same(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    return old is not None and {k: v for k, v in old.items() if k != "timestamp"} == {
        k: v for k, v in new.items() if k != "timestamp"
    }


def generate(profiles: Path = PROFILES, sources: Path = SOURCES, *, write: bool) -> list[str]:
    """Regenerate every expansion spec.yaml names; return the ids whose committed expansion differs."""
    spec = load_spec()
    stale = []
    for path in sorted(profiles.glob("ValueSet-*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        vs_id = resource["id"]
        entry = spec["valuesets"].get(vs_id)
        if entry is None and not compose_icd10cm_roots(resource):
            continue  # compose only: explicit local codes, nothing to expand
        body = expansion_for(resource, entry or {}, sources)
        if same(resource.get("expansion"), body):
            continue
        stale.append(vs_id)
        if write:
            timestamp = datetime.now(UTC).replace(microsecond=0).isoformat()
            resource["expansion"] = {"timestamp": timestamp, **body}
            path.write_text(json.dumps(resource, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return stale
