"""`pip install jobpool` into a fresh virtualenv, as the worker image does: the SDK, the CLI and
the worker work, the operator's packages are absent and `jobpool operator` says how to add them."""

import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from tests.helpers import ROOT


@pytest.fixture(scope="module")
def base_install(tmp_path_factory) -> Path:
    """bin/ of a virtualenv with the base profile of a copy of the sources."""
    work = tmp_path_factory.mktemp("base-install")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, work / name)
    shutil.copytree(
        ROOT / "operator", work / "operator", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    venv.create(work / "venv", with_pip=True)
    bin_dir = work / "venv" / "bin"
    subprocess.run(
        [
            bin_dir / "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--constraint",
            ROOT / "constraints.txt",
            str(work),
        ],
        check=True,
        timeout=600,
    )
    return bin_dir


def run(bin_dir: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(bin_dir / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60, cwd=bin_dir
    )


@pytest.mark.slow
def test_base_install_has_the_sdk_cli_and_worker(base_install):
    assert run(base_install, "python", "-c", "from jobpool import Client, AsyncClient").returncode == 0
    for command in ("worker", "submit", "status", "results"):
        assert run(base_install, "jobpool", command, "--help").returncode == 0, command


@pytest.mark.slow
def test_base_install_has_no_operator_packages(base_install):
    for module in ("kopf", "kubernetes", "pydantic", "yaml"):
        probe = run(base_install, "python", "-c", f"import {module}")
        assert probe.returncode == 1 and "ModuleNotFoundError" in probe.stderr, module


@pytest.mark.slow
def test_operator_without_its_extra_names_the_install_command(base_install):
    answer = run(base_install, "jobpool", "operator", "--all-namespaces")
    assert answer.returncode == 2
    assert answer.stderr.strip().splitlines() == [
        "jobpool operator: error: the operator is not installed (no module 'kopf'): "
        "pip install 'jobpool[operator]'"
    ]
