"""docs/scenario-reference.md is generated from the schema and the registry, and current;
every registered component (the toy ones included) is described in it."""

from __future__ import annotations

import subprocess
import sys

from abm import registry
from abm.reference import SECTIONS, scenario_reference
from tests.conftest import ROOT

REFERENCE = ROOT / "docs" / "scenario-reference.md"


def test_wsf_schema_prints_the_reference_in_the_repository():
    # A fresh interpreter: the built-in registry alone (this session's also holds the toy
    # components of tests/toy_components.py, which the committed reference leaves out).
    done = subprocess.run([sys.executable, "-m", "abm.cli", "schema", "--markdown"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert REFERENCE.read_text(encoding="utf-8") == done.stdout, (
        "docs/scenario-reference.md is stale: run `wsf schema --markdown > "
        "docs/scenario-reference.md`"
    )


def test_every_field_and_every_component_is_described():
    text = scenario_reference()
    for path, model in SECTIONS:
        for name, info in model.model_fields.items():
            assert info.description, f"{path}.{name} has no description"
            assert f"| {name} |" in text
    for kind in registry.KINDS:
        for name, cls in registry.components(kind).items():
            assert f"`{name}`" in text and cls.describe() in text
            for param in cls.Params.model_fields:
                assert f"| {param} |" in text
