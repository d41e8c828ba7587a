"""`pip install jobpool` is the SDK, the CLI and the worker; `jobpool[operator]` adds the
operator. Every third-party import is declared in the profile that needs it."""

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from jobpool.cli import OPERATOR_MODULES
from tests.helpers import ROOT

PACKAGE = ROOT / "operator" / "jobpool"
OPERATOR_ONLY = ("api", "controller")  # subpackages that only `jobpool operator` imports
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def distributions(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


BASE = distributions(PROJECT["dependencies"])
OPERATOR = distributions(PROJECT["optional-dependencies"]["operator"])
KUBE = distributions(PROJECT["optional-dependencies"]["kube"])
CLUSTER_MODE = PACKAGE / "cluster.py"  # the CLI's cluster mode: imports the `kube` extra lazily


def third_party_imports(files: list[Path]) -> dict[str, str]:
    """Top-level module -> its distribution, for every absolute import outside the stdlib."""
    owners = importlib.metadata.packages_distributions()
    found = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.split(".")[0] for name in names} - set(sys.stdlib_module_names) - {"jobpool"}:
                found[top] = owners.get(top, [top])[0].lower().replace("_", "-")
    return found


def test_sdk_cli_and_worker_modules_import_only_base_dependencies():
    files = [
        p
        for p in PACKAGE.rglob("*.py")
        if p.relative_to(PACKAGE).parts[0] not in OPERATOR_ONLY and p != CLUSTER_MODE
    ]
    undeclared = {m: d for m, d in third_party_imports(files).items() if d not in BASE}
    assert not undeclared, f"imported outside the operator but not in [project] dependencies: {undeclared}"


def test_cluster_mode_imports_only_the_kube_extra_and_only_lazily():
    undeclared = {m: d for m, d in third_party_imports([CLUSTER_MODE]).items() if d not in BASE | KUBE}
    assert not undeclared, f"cluster.py imports what the `kube` extra does not declare: {undeclared}"
    top_level = [
        node
        for node in ast.parse(CLUSTER_MODE.read_text()).body
        if isinstance(node, (ast.Import, ast.ImportFrom))
    ]
    assert not {m for n in top_level for m in third_party_imports_of(n)} & KUBE, (
        "cluster.py must import the Kubernetes client inside functions: the base install has none"
    )


def third_party_imports_of(node: ast.AST) -> set[str]:
    names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
    return {name.split(".")[0] for name in names}


def test_operator_modules_import_only_declared_dependencies():
    undeclared = {
        m: d for m, d in third_party_imports(list(PACKAGE.rglob("*.py"))).items() if d not in BASE | OPERATOR
    }
    assert not undeclared, f"imported but declared in no install profile: {undeclared}"


def test_the_cli_knows_the_modules_of_the_operator_extra():
    imported = third_party_imports(list(PACKAGE.rglob("*.py")))
    assert {m for m, d in imported.items() if d in OPERATOR} == OPERATOR_MODULES


def test_sdk_cli_and_worker_load_no_operator_module():
    probe = (
        "import sys, jobpool, jobpool.client, jobpool.cli, jobpool.worker.runtime; "
        "jobpool.cli.build_parser(); print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", probe], check=True, capture_output=True, text=True
        ).stdout.split()
    )
    assert {"jobpool", "redis", "aiohttp"} <= loaded
    # redis-py itself imports cryptography when it is installed (its OCSP support)
    assert not loaded & (OPERATOR_MODULES - {"cryptography"})


def test_cluster_mode_without_the_kube_extra_names_the_extra_to_install():
    probe = (
        "import sys; sys.modules['kubernetes'] = None; from jobpool.cli import main; "
        "sys.exit(main(['status', 'p', '--from-cluster']))"
    )
    answer = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert answer.returncode == 2
    assert answer.stderr.splitlines() == [
        "jobpool status: error: cluster mode needs the Kubernetes client: pip install "
        "'jobpool[kube]', or give --queue URL"
    ]


def test_operator_without_its_packages_names_the_extra_to_install():
    # None in sys.modules makes `import kopf` fail as it does in a base install
    probe = "import sys; sys.modules['kopf'] = None; from jobpool.cli import main; sys.exit(main(['operator', '-A']))"
    answer = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert answer.returncode == 2
    assert answer.stderr.splitlines() == [
        "jobpool operator: error: the operator is not installed (no module 'kopf'): "
        "pip install 'jobpool[operator]'"
    ]
