"""charts/jobpool/README.md's values table is the one generated from values.yaml and the schema."""

import subprocess
import sys

import yaml

from tests.helpers import ROOT


def test_the_chart_readme_lists_every_value_as_generated():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chart_readme.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    table = (ROOT / "charts" / "jobpool" / "README.md").read_text()

    def leaves(node, prefix=""):
        """Each value, or the map or object holding it when that has a row of its own."""
        for key, value in node.items():
            path = f"{prefix}{key}"
            if (
                isinstance(value, dict)
                and value
                and f"| `{path}` | object |" not in table
                and f"| `{path}` |" in table
            ):
                yield path  # a map or a Kubernetes object, shown whole
            elif isinstance(value, dict) and value:
                yield from leaves(value, path + ".")
            else:
                yield path

    values = yaml.safe_load((ROOT / "charts" / "jobpool" / "values.yaml").read_text())
    missing = [path for path in leaves(values) if f"| `{path}` |" not in table]
    assert not missing, f"values without a row: {missing}"
