"""The prefetch templates' code lists (service/cds/template_codes.json) are generated from the ValueSets in
fhir_profiles/ and ship with the package: an installed service (the image) has no source tree to read."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from service.cds import template_codes
from service.cds.definitions import PREFETCH
from service.facts.vocabulary import read_valueset

ROOT = Path(__file__).resolve().parent.parent


def test_template_codes_are_generated_from_the_current_valuesets() -> None:
    assert template_codes.GENERATED.read_text(encoding="utf-8") == template_codes.generate(ROOT / "fhir_profiles"), (
        "stale: run python -m service.cds.template_codes"
    )


def test_the_templates_list_every_code_of_their_valuesets() -> None:
    for key, vs_ids in template_codes.TEMPLATE_VALUESETS.items():
        for vs_id in vs_ids:
            for system, code in read_valueset(ROOT / "fhir_profiles" / f"ValueSet-{vs_id}.json").codes:
                assert f"{system}|{code}" in PREFETCH[key], (key, vs_id, code)


def test_the_templates_load_without_the_source_tree(tmp_path: Path) -> None:
    """What the image does: import the installed package, with fhir_profiles/ nowhere near it."""
    shutil.copytree(ROOT / "service", tmp_path / "service", ignore=shutil.ignore_patterns("__pycache__"))
    code = f"import service.cds.definitions as d; assert d.__file__.startswith({str(tmp_path)!r}); print(d.PREFETCH)"
    env = {"PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 0, result.stderr
