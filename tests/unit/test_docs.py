"""README.md and docs/*.md: every `make TARGET` and `jobpool COMMAND` they show exists, every
relative link lands on a file (and an anchor of it), and the README's first screen shows the
product with a JobPool that the CRD's models accept."""

import argparse
import re
import shlex
from pathlib import Path

import pytest
import yaml

from jobpool.api import JobPool
from jobpool.cli import build_parser
from tests.helpers import ROOT

README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
IDS = [str(doc.relative_to(ROOT)) for doc in DOCS]
FENCE = re.compile(r"^\s*```")


def split_code(text: str) -> tuple[list[str], str]:
    """The lines of fenced shell blocks (```bash: commands; a block without a language holds
    output or formats), and the prose with every fenced block blanked out."""
    code, prose, fenced, shell = [], [], False, False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            shell = fenced and line.strip()[3:] in ("bash", "sh", "shell", "console")
            prose.append("")
        elif fenced:
            if shell:
                code.append(line)
            prose.append("")
        else:
            prose.append(line)
    return code, "\n".join(prose)


def snippets(text: str) -> list[str]:
    """Where commands are shown: each line of a code block and each inline code span."""
    code, prose = split_code(text)
    spans = [" ".join(span.split()) for span in re.findall(r"(?<!`)`([^`]+)`(?!`)", prose)]
    return code + spans


def commands(snippet: str) -> list[list[str]]:
    """The simple commands of a shell-like line, as words, without comments, `$ ` prompts and
    leading VAR=value assignments; a `$(...)`/`<(...)` starts a command of its own."""
    snippet = re.sub(r"(^|\s)#.*", "", snippet)
    result = []
    for part in re.split(r"&&|\|\||[;|]|\$\(|<\(|\(|\)", snippet):
        words = part.split()
        while words and (
            words[0] in ("$", "sudo", "time", "exec") or re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0])
        ):
            words = words[1:]
        if words:
            result.append(words)
    return result


def shown(doc: Path, program: str) -> list[list[str]]:
    return [
        words for snippet in snippets(doc.read_text()) for words in commands(snippet) if words[0] == program
    ]


# -- make ---------------------------------------------------------------------------------------
def makefile_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*)\s*:(?!=)", makefile, re.M))


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_make_target_shown_is_in_the_makefile(doc):
    targets = makefile_targets()
    assert {"demo", "test", "help"} <= targets
    unknown = []
    for words in shown(doc, "make"):
        for word in words[1:]:
            if word.startswith("-") or "=" in word:  # make's flags and variables
                continue
            if word not in targets:
                unknown.append(" ".join(words))
    assert not unknown, f"{doc.name} shows make targets the Makefile lacks: {unknown}"


def test_the_readme_shows_make_demo_and_make_test():
    lines = [" ".join(words[:2]) for words in shown(README, "make")]
    assert "make demo" in lines and "make test" in lines


# -- jobpool ------------------------------------------------------------------------------------
def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(
        (action.choices for action in parser._actions if isinstance(action, argparse._SubParsersAction)), {}
    )


def operator_commands() -> set[str]:
    """`jobpool operator guard-pools` and the other hooks the operator's main() dispatches on."""
    main = (ROOT / "operator/jobpool/controller/main.py").read_text()
    return set(re.findall(r'argv\[:1\] == \["([a-z-]+)"\]', main))


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_jobpool_command_shown_is_a_cli_subcommand(doc):
    parser = build_parser()
    commands_ = subcommands(parser)
    top_options = {option for action in parser._actions for option in action.option_strings}
    assert {"submit", "status", "results", "worker", "operator", "dlq"} <= commands_.keys()
    assert {"guard-pools", "ensure-redis-secret"} <= operator_commands()
    unknown = []
    for words in shown(doc, "jobpool"):
        if len(words) == 1:
            continue  # the program's name in prose
        command, rest = words[1], words[2:]
        if command.endswith(":"):  # a message: `jobpool submit: error: ...`
            command, rest = command[:-1], []
        if command.startswith("-"):
            if command not in top_options:
                unknown.append(" ".join(words))
            continue
        if command not in commands_:
            unknown.append(" ".join(words))
            continue
        actions = subcommands(commands_[command])
        named = rest[0] if rest and not rest[0].startswith("-") else None
        if named and command == "operator":
            if named not in operator_commands():
                unknown.append(" ".join(words))
        elif named and actions and not set(named.split("|")) <= actions.keys():
            unknown.append(" ".join(words))
    assert not unknown, f"{doc.name} shows jobpool commands the CLI lacks: {unknown}"


def test_the_readmes_quick_start_commands_parse():
    """The first screen's `jobpool submit/status/results` lines, as the CLI's own parser reads them."""
    quick_start = readme_blocks()[2][1]
    lines = [
        shlex.split(line, comments=True) for line in quick_start.splitlines() if line.startswith("jobpool ")
    ]
    assert [words[1] for words in lines] == ["submit", "status", "results"]
    for words in lines:
        build_parser().parse_args(words[1:])


# -- links --------------------------------------------------------------------------------------
def anchors(doc: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation but `-` and `_` dropped, spaces to `-`."""
    _, prose = split_code(doc.read_text())
    ids = set()
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", prose, re.M):
        ids.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return ids


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_relative_link_lands_on_a_file_and_anchor(doc):
    _, prose = split_code(doc.read_text())
    links = re.findall(r"\]\(([^)\s]+)\)", prose)
    assert doc != README or links
    broken = []
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue  # https:, mailto:
        path, _, anchor = link.partition("#")
        target = (doc.parent / path).resolve() if path else doc
        if not target.exists() or (anchor and (target.suffix != ".md" or anchor not in anchors(target))):
            broken.append(link)
    assert not broken, f"{doc.name}: links to no file or no heading: {broken}"


def test_every_doc_is_linked_from_the_readme():
    _, prose = split_code(README.read_text())
    linked = {link.partition("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", prose)}
    assert {str(doc.relative_to(ROOT)) for doc in DOCS[1:]} <= linked


def test_every_image_in_docs_is_shown():
    shown_images = {
        (doc.parent / link).resolve()
        for doc in DOCS
        for link in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", split_code(doc.read_text())[1])
    }
    images = {path.resolve() for path in (ROOT / "docs").iterdir() if path.suffix in (".png", ".svg")}
    assert images - {(ROOT / "docs/icon.svg").resolve()} <= shown_images


# -- the README's first screen ------------------------------------------------------------------
def readme_blocks() -> list[tuple[str, str]]:
    """(language, body) of each fenced block of the README, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", README.read_text(), re.S | re.M)


def test_the_readme_opens_with_the_commands_then_the_product():
    text = README.read_text()
    assert text.startswith("# jobpool\n\n```bash\nmake demo ")
    first_screen = text[: text.index("\n## ")]
    assert "jobpool is a Kubernetes operator for pools of workers fed by a queue" in first_screen
    languages = [language for language, _ in readme_blocks()[:4]]
    assert languages == ["bash", "yaml", "bash", "python"], "commands, a JobPool, helm and the CLI, the SDK"
    assert "helm install" in readme_blocks()[2][1]
    assert "jobpool.Client" in readme_blocks()[3][1] and "client.submit" in readme_blocks()[3][1]
    assert "## Documentation" in text[: text.index("\n## The demo")]


def test_the_readmes_jobpools_are_valid_and_the_first_is_an_example():
    pools = [
        doc
        for language, body in readme_blocks()
        if language == "yaml"
        for doc in yaml.safe_load_all(body)
        if isinstance(doc, dict) and doc.get("kind") == "JobPool"
    ]
    assert pools
    for doc in pools:
        JobPool.model_validate(doc)
    name = re.match(r"# (examples/\S+\.yaml)", readme_blocks()[1][1]).group(1)
    assert yaml.safe_load((ROOT / name).read_text()) == pools[0], f"the README's JobPool is {name}"
