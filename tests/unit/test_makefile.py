"""`make` (= `make help`) lists every target with the comment above it."""

import re
import subprocess

from tests.helpers import ROOT


def test_make_help_lists_every_target_with_its_comment():
    makefile = (ROOT / "Makefile").read_text()
    phony = set(
        re.search(r"^\.PHONY:(.*?)(?<!\\)\n", makefile, re.S | re.M).group(1).replace("\\\n", " ").split()
    )
    shown = subprocess.run(
        ["make", "-s", "--no-print-directory"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    described = {line.split()[1] for line in shown.splitlines() if len(line.split()) > 2}
    assert phony - described == set(), "give these targets a ## comment"
