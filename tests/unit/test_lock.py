"""constraints.txt is the lock: it pins every dependency the project declares, and the test
environment (`make venv`) runs exactly those versions."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

from tests.helpers import ROOT


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _locked() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return {
        _name(line): line.split("==", 1)[1] for line in lines if line.strip() and not line.startswith("#")
    }


def test_every_declared_dependency_is_locked():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(requirement) for requirement in project["dependencies"]}
    declared |= {
        _name(requirement) for extra in project["optional-dependencies"].values() for requirement in extra
    }
    missing = declared - {"jobpool"} - set(_locked())
    assert not missing, f"{sorted(missing)} not in constraints.txt: run `make lock`"


def test_the_environment_runs_the_locked_versions():
    locked = _locked()
    installed = {_name(dist.metadata["Name"]): dist.version for dist in importlib.metadata.distributions()}
    drift = {
        name: (version, installed[name])
        for name, version in locked.items()
        if name in installed and installed[name] != version
    }
    assert not drift, f"installed versions differ from constraints.txt: {drift} (make venv)"
