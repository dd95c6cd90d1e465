"""Looks every standard code used by tests/cases-standard/*.json up in published sources and writes CODES.md.

Not part of the test run (it needs the mirrored repositories and the PyPI package simple-icd-10-cm):

    python -m venv /tmp/icd && /tmp/icd/bin/pip install 'simple-icd-10-cm==1.5.0'
    /tmp/icd/bin/python tests/cases-standard/verify_codes.py

Sources, in order of preference:
1. value-set expansions of cqframework/opioid-cds-r4 and cqframework/ecqm-content-r4 (the mirrored commits
   below): the first file whose expansion or compose lists the code, with its published display;
2. ICD-10-CM: the public-domain ICD-10-CM tree shipped by simple-icd-10-cm (code valid + description);
3. the mCODE IG FSH sources (HL7/fhir-mCODE-ig, mirrored commit below): `#code "display"` in input/fsh;
4. ../shared/fixtures (Synthea bundles, mCODE IG FSH, FHIR core examples): the first file naming the code;
5. SECONDARY below: a published page or IG example found by hand (status "secondary");
6. otherwise the project's own ValueSet (fhir_profiles) and RULE-CATALOGUE §4.2 - marked "not verified".
A display in a case that differs from the published one is reported (and fails the run).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))  # the code system names, from the service (standard library only)
from service.conformance.systems import CANONICAL  # noqa: E402

FIXTURES = ROOT.parent / "shared" / "fixtures"
if not FIXTURES.exists():
    FIXTURES = Path("/work/shared/fixtures")
MIRRORS = [
    ("cqframework/opioid-cds-r4", "/work/.mirror/cqframework+opioid-cds-r4/repo",
     "b29bdcbf6db6f3de26486dbc3820572ee9a78b89"),
    ("cqframework/ecqm-content-r4", "/work/.mirror/cqframework+ecqm-content-r4/repo",
     "04f5c4919ee8a56e24484c3269f74d47b03e3d75"),
]
MCODE_IG = ("HL7/fhir-mCODE-ig", "/work/.mirror/HL7+fhir-mCODE-ig/repo", "543477b5585f2dcc717820a2bea141ea85f03012")
SECONDARY = {
    ("LOINC", "26515-7"): "https://loinc.org/26515-7/ (Regenstrief LOINC 2.77 term page: Platelets:NCnc:Pt:Bld:Qn)",
    ("SNOMED CT", "293637006"): "CH EMR IG example `UC3-AllergyIntolerance-Contrast` (AllergyIntolerance.code = "
    "293637006 \"Allergy to contrast media (finding)\"); RULE-CATALOGUE §4.2 (HL7 CH RAD-Order IG)",
    ("SNOMED CT", "427811002"): "MII pathology IG FSH ValueSet `Additive` (`$SCT#427811002 \"Polymethyl methacrylate "
    "(substance)\"`); RULE-CATALOGUE §4.2",
}
# what the catalogue and the UCUM specification say where no expansion lists the code
NOTES = {
    ("UCUM", "10*3/uL"): "UCUM: 10*3 (thousand) per microlitre = 10*9/L (US Core CBC example unit)",
    ("UCUM", "/uL"): "UCUM: per microlitre; also in mCODE IG EX_ExtendedExample.fsh (`/uL`)",
    ("UCUM", "{INR}"): "UCUM: dimensionless with annotation {INR} (annotations are unity)",
    ("UCUM", "%"): "UCUM: percent",
    ("UCUM", "mo"): "UCUM: month (mean Julian month)",
    ("UCUM", "wk"): "UCUM: week",
    ("UCUM", "cGy"): "UCUM: centigray; mCODE radiotherapy dose extension is in cGy (RULE-CATALOGUE §4.1)",
}


def used_codes() -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}

    def walk(node: Any, case: str) -> None:
        if isinstance(node, dict):
            system, code = node.get("system"), node.get("code")
            if system in CANONICAL and isinstance(code, str):
                entry = out.setdefault((CANONICAL[system], code), {"displays": set(), "cases": set()})
                if node.get("display"):
                    entry["displays"].add(node["display"])
                entry["cases"].add(case)
            for value in node.values():
                walk(value, case)
        elif isinstance(node, list):
            for value in node:
                walk(value, case)

    for path in sorted(HERE.glob("std-*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        walk([data["resources"], data.get("draft_orders", [])], path.stem)
    return out


def expansion_index() -> dict[tuple[str, str], tuple[str, str, str]]:
    index: dict[tuple[str, str], tuple[str, str, str]] = {}
    for repo, gitdir, commit in MIRRORS:
        files = subprocess.run(["git", "-C", gitdir, "ls-tree", "-r", "--name-only", commit],
                               capture_output=True, text=True, check=True).stdout.split()
        for name in files:
            if "valueset" not in name.lower() or not name.endswith(".json") or "archive" in name:
                continue
            text = subprocess.run(["git", "-C", gitdir, "show", f"{commit}:{name}"], capture_output=True,
                                  text=True).stdout
            try:
                vs = json.loads(text)
            except ValueError:
                continue
            if not isinstance(vs, dict) or vs.get("resourceType") != "ValueSet":
                continue
            where = f"{repo}@{commit[:7]} `{name}` ({vs.get('title') or vs.get('name')})"
            concepts = [(c.get("system"), c) for c in vs.get("expansion", {}).get("contains", []) or []]
            for inc in vs.get("compose", {}).get("include", []):
                concepts += [(inc.get("system"), c) for c in inc.get("concept", []) or []]
            for system, concept in concepts:
                if system in CANONICAL:
                    key = (CANONICAL[system], concept.get("code"))
                    index.setdefault(key, (concept.get("display") or "", where, ""))
    return index


def mcode_hit(code: str) -> tuple[str, str] | None:
    repo, gitdir, commit = MCODE_IG
    found = subprocess.run(["git", "-C", gitdir, "grep", "-n", f"#{code} ", commit, "--", "input/fsh"],
                           capture_output=True, text=True).stdout.splitlines()
    if not found:
        return None
    line = found[0]
    path = line.split(":", 2)[1]
    display = line.split(f"#{code}", 1)[1].split('"')[1] if '"' in line.split(f"#{code}", 1)[1] else ""
    return display.replace("\\", ""), f"{repo}@{commit[:7]} `{path}`"


def fixture_hit(code: str) -> str | None:
    needle = f'"{code}"'
    for path in sorted(FIXTURES.rglob("*")):
        if path.is_file() and path.suffix in {".json", ".ndjson", ".fsh"}:
            text = path.read_text(encoding="utf-8", errors="replace")
            if needle in text or (path.suffix == ".fsh" and f"#{code} " in text) or f"#{code}\n" in text:
                return f"../shared/fixtures/{path.relative_to(FIXTURES)}"
    return None


def project_valuesets(code: str) -> list[str]:
    hits = []
    for path in sorted((ROOT / "fhir_profiles").glob("ValueSet-*.json")):
        vs = json.loads(path.read_text(encoding="utf-8"))
        for inc in vs.get("compose", {}).get("include", []):
            if any(c.get("code") == code for c in inc.get("concept", []) or []):
                hits.append(path.stem.removeprefix("ValueSet-"))
    return hits


def main() -> int:
    from importlib.metadata import version

    import simple_icd_10_cm as icd  # type: ignore[import-not-found]

    icd_version = version("simple-icd-10-cm")
    index = expansion_index()
    rows, problems = [], []
    for (system, code), info in sorted(used_codes().items()):
        display = sorted(info["displays"])[0] if info["displays"] else ""
        published, source, status = "", "", "verified"
        if (system, code) in index:
            published, source, _ = index[(system, code)]
        elif system == "ICD-10-CM" and icd.is_valid_item(code):
            published, source = icd.get_description(code), f"simple-icd-10-cm {icd_version} (ICD-10-CM tree)"
        elif (system, code) in NOTES:
            source, status = NOTES[(system, code)], "UCUM"
        elif system != "UCUM" and (mc := mcode_hit(code)):
            published, source = mc
        elif hit := fixture_hit(code):
            source = hit
        elif (system, code) in SECONDARY:
            source, status = SECONDARY[(system, code)], "secondary"
        else:
            vsets = project_valuesets(code)
            source = ("project ValueSet " + ", ".join(vsets) if vsets else "none") + " + RULE-CATALOGUE §4.2"
            status = "NOT verified against a published expansion"
        if system == "ICD-10-CM" and not icd.is_valid_item(code):
            problems.append(f"{code}: not a valid ICD-10-CM code")
        if published and display and " ".join(published.lower().split()) != " ".join(display.lower().split()):
            problems.append(f"{system} {code}: case display {display!r} != published {published!r}")
        cases = sorted(info["cases"])
        shown = ", ".join(c.removeprefix("std-") for c in cases[:3])
        shown += f" (+{len(cases) - 3})" if len(cases) > 3 else ""
        rows.append(f"| {system} | `{code}` | {published or display} | {status} | {source} | {shown} |")
    header = [
        "# Codes used by the standard-coded cases, and where each was verified",
        "",
        "Generated by `verify_codes.py` (see its docstring for the method); do not edit by hand.",
        "`tests/test_standard_cases.py` fails when a case uses a code this table does not list.",
        "",
        "| System | Code | Display (published where found) | Status | Source | Cases |",
        "|---|---|---|---|---|---|",
    ]
    (HERE / "CODES.md").write_text("\n".join(header + rows) + "\n", encoding="utf-8")
    print(f"{len(rows)} codes; {sum('NOT verified' in r for r in rows)} not verified")
    for problem in problems:
        print("PROBLEM", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
