"""pyproject.toml: the licence metadata in the form setuptools >= 77 takes without a deprecation notice."""

import tomllib

from tests.utils import REPO_ROOT


def test_licence_is_an_spdx_string_without_licence_classifiers():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    # a `license = {text = ...}` table or "License ::" classifiers make setuptools >= 77 print its deprecation box
    assert isinstance(project["project"]["license"], str) and project["project"]["license"] == "Apache-2.0"
    assert not [c for c in project["project"].get("classifiers", []) if c.startswith("License ::")]
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in project["build-system"]["requires"])
