"""Self-check for the spinecds terminology files in this folder.

Run:  .venv/bin/python fhir_tools/check_profiles.py
Parses every CodeSystem/ValueSet file as a fhir.resources R4B model and checks the local
conventions (ids, canonical URLs, verification-status extension, no SNOMED is-a filters,
level designations, .index.json consistency). Exit code 0 = all good.
"""

import json
import pathlib
import sys

from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.structuredefinition import StructureDefinition
from fhir.resources.R4B.valueset import ValueSet

HERE = pathlib.Path(__file__).resolve().parent.parent / "fhir_profiles"  # the FHIR package folder
BASE = "https://fhir.spinecds.org"
LOCAL = f"{BASE}/CodeSystem/spinecds-local"
VS_EXT = f"{BASE}/StructureDefinition/verification-status"
STATUSES = {"verified-authoritative", "verified-secondary", "single-source", "unverified"}
PREFIX_ISA_SYSTEMS = {"http://hl7.org/fhir/sid/icd-10-cm", "http://www.whocc.no/atc"}

errors: list[str] = []


def err(msg: str) -> None:
    errors.append(msg)


def status_of(element: dict) -> str | None:
    for ext in element.get("extension", []):
        if ext.get("url") == VS_EXT:
            return ext.get("valueCode")
    return None


def main() -> int:
    files = json.loads((HERE / ".index.json").read_text(encoding="utf-8"))["files"]
    index = {
        key: [{"file": f["filename"], "id": f["id"], "url": f["url"]} for f in files if f["resourceType"] == rtype]
        for key, rtype in (("codeSystems", "CodeSystem"), ("valueSets", "ValueSet"),
                           ("structureDefinitions", "StructureDefinition"))
    }
    listed = {e["file"] for e in index["codeSystems"] + index["valueSets"] + index.get("structureDefinitions", [])}
    on_disk = {p.name for pattern in ("CodeSystem-*.json", "ValueSet-*.json", "StructureDefinition-*.json")
               for p in HERE.glob(pattern)}
    if listed != on_disk:
        err(f".index.json / disk mismatch: {sorted(listed ^ on_disk)}")

    local_codes: set[str] = set()
    for entry in index["codeSystems"]:
        data = json.loads((HERE / entry["file"]).read_text(encoding="utf-8"))
        CodeSystem.model_validate(data)
        if data["id"] != entry["id"] or entry["file"] != f"CodeSystem-{data['id']}.json":
            err(f"{entry['file']}: id mismatch")
        if data["url"] != entry["url"]:
            err(f"{entry['file']}: url mismatch with index")
        if data["url"] != LOCAL:
            continue  # generated (override-reason) or small code lists without verification marks
        local_codes = {c["code"] for c in data["concept"]}
        if data.get("count") != len(data["concept"]):
            err(f"{entry['file']}: count != number of concepts")
        if data.get("status") not in {"draft", "active", "retired", "unknown"}:
            err(f"{entry['file']}: bad status")
        for c in data["concept"]:
            if status_of(c) not in STATUSES or not c.get("definition"):
                err(f"{entry['file']}: {c['code']} lacks verification status or definition")

    total = 0
    for entry in index["valueSets"]:
        fn = entry["file"]
        data = json.loads((HERE / fn).read_text(encoding="utf-8"))
        ValueSet.model_validate(data)
        vid = data["id"]
        if fn != f"ValueSet-{vid}.json" or entry["id"] != vid:
            err(f"{fn}: id mismatch")
        if data["url"] != f"{BASE}/ValueSet/{vid}" or entry["url"] != data["url"]:
            err(f"{fn}: url mismatch")
        for key in ("version", "status", "name", "title", "description", "compose"):
            if not data.get(key):
                err(f"{fn}: missing {key}")
        if data.get("status") not in {"draft", "active", "retired", "unknown"}:
            err(f"{fn}: bad status")
        for inc in data["compose"]["include"]:
            system = inc["system"]
            for f in inc.get("filter", []):
                if system not in PREFIX_ISA_SYSTEMS:
                    err(f"{fn}: is-a filter on {system} (only ICD-10-CM/ATC prefix is-a allowed)")
                if f.get("op") != "is-a" or f.get("property") != "concept":
                    err(f"{fn}: unexpected filter {f}")
                if status_of(inc) not in STATUSES:
                    err(f"{fn}: filter include without verification status")
            for c in inc.get("concept", []):
                total += 1
                if status_of(c) not in STATUSES:
                    err(f"{fn}: {system}|{c['code']} without verification status")
                if not c.get("display"):
                    err(f"{fn}: {system}|{c['code']} without display")
                if system == LOCAL and c["code"] not in local_codes:
                    err(f"{fn}: local code {c['code']} not in CodeSystem")
                if vid == "vertebral-levels":
                    labels = [d["value"] for d in c.get("designation", [])
                              if d.get("use", {}).get("code") == "vertebral-level"
                              and d["use"].get("system") == LOCAL]
                    if len(labels) != 1 or labels[0] not in local_codes:
                        err(f"{fn}: {system}|{c['code']} lacks a valid vertebral-level designation")

    for entry in index.get("structureDefinitions", []):
        data = json.loads((HERE / entry["file"]).read_text(encoding="utf-8"))
        StructureDefinition.model_validate(data)
        if data["url"] != f"{BASE}/StructureDefinition/{data['id']}" or entry["url"] != data["url"]:
            err(f"{entry['file']}: url mismatch")
        if not data.get("version") or data.get("status") != "draft":
            err(f"{entry['file']}: version missing or status not draft")
        for el in data["differential"]["element"]:
            vs = el.get("binding", {}).get("valueSet", "")
            if vs and not (HERE / f"ValueSet-{vs.rsplit('/', 1)[-1]}.json").exists():
                err(f"{entry['file']}: binding to unknown ValueSet {vs}")

    for e in errors:
        print("ERROR:", e)
    print(f"checked {len(index['codeSystems'])} CodeSystem(s), {len(index['valueSets'])} ValueSets, "
          f"{len(index.get('structureDefinitions', []))} StructureDefinitions, "
          f"{total} explicit ValueSet concepts: {'OK' if not errors else f'{len(errors)} error(s)'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
