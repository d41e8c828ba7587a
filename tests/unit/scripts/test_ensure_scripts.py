"""The scripts/ensure-*.sh installers wait for a dpkg lock another apt holds instead of failing at once."""

from __future__ import annotations

import pathlib
import re

import pytest

SCRIPTS = sorted((pathlib.Path(__file__).parents[3] / "scripts").glob("ensure-*.sh"))


def test_there_are_installers():
    assert len(SCRIPTS) >= 4


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_every_apt_get_install_waits_for_the_dpkg_lock(script):
    installs = [
        line for line in script.read_text().splitlines() if re.search(r"\bapt-get\b.*\binstall\b", line)
    ]
    assert all("-o DPkg::Lock::Timeout=600 " in line for line in installs), installs
