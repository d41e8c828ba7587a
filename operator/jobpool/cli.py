"""The `jobpool` command: operator | worker | submit | status | results | dlq | version | completion.

Errors are one line on stderr, `jobpool <command>: error: <what, and what to do>`, with exit
status 1 (queue or cluster problems, NotFound) or 2 (bad usage or input). The data commands
follow kubectl's habits: -n/--namespace, -o json|yaml, and the pool's queue found through the
kubeconfig (cluster mode) when no queue URL is given."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import re
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from . import __version__
from ._output import STRUCTURED, write
from ._progress import Progress
from .cluster import PRODUCER, WORKER, ClusterError
from .contract import DEFAULT_NAMESPACE, ENV_NAMESPACE, ENV_POOL, ENV_QUEUE_URL
from .names import name_problem
from .queue import PayloadTooLarge, QueueError, QueueFull, QueueStats, UnknownTask, open_queue
from .queue.codec import check_options, due_of
from .queue.urls import redact_url
from .ui import command as ui_command
from .worker.config import SETTINGS, flag_help

PROGRESS_THRESHOLD = 1000  # submits this large draw a progress bar on a terminal
OPERATOR_MODULES = {
    "cryptography",
    "kopf",
    "kubernetes",
    "pydantic",
    "yaml",
}  # the `operator` extra of pyproject.toml


COMPLETE_COMMAND = "__complete"  # the hidden command the completion scripts call


class UsageError(Exception):
    """Bad flags or input; exit status 2."""


class NotFound(Exception):
    """The pool or a job named does not exist; exit status 1 (kubectl's NotFound)."""


# -- pure helpers ---------------------------------------------------------------------------
def parse_json_lines(lines: Iterable[str], source: str) -> list[tuple[str, Any]]:
    """Every non-blank line as (where, JSON value), `where` naming its line; the first bad line
    raises UsageError naming it, so nothing from a file is submitted unless all of it parses."""
    payloads = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            payloads.append((f"{source} line {number}", json.loads(line)))
        except ValueError as exc:
            raise UsageError(
                f"{source} line {number} is not valid JSON ({exc}); nothing was submitted"
            ) from None
    return payloads


def parse_payload_flags(values: Sequence[str]) -> list[tuple[str, Any]]:
    payloads = []
    for number, text in enumerate(values, start=1):
        try:
            payloads.append((f"--payload #{number}", json.loads(text)))
        except ValueError as exc:
            raise UsageError(
                f"--payload #{number} {text!r} is not valid JSON ({exc}); nothing was submitted"
            ) from None
    return payloads


def format_status(namespace: str, pool: str, stats: QueueStats) -> str:
    s = stats.as_status()
    lines = [
        f"pool      {namespace}/{pool}",
        f"queue     waiting {s['waiting']}  inFlight {s['inFlight']}  delayed {s['delayed']}  "
        f"scheduled {s['scheduled']}  "
        f"deadLetter {s['deadLetter']}",
        f"jobs      submitted {s['submitted']}  succeeded {s['succeeded']}  retried "
        f"{s['retried']}  deadLettered {s['deadLettered']}  permanent {s['permanent']}  "
        f"cancelled {s['cancelled']}",
        f"workers   {s['workers']}  busySlots {s['busySlots']}/{s['totalSlots']}  saturation "
        f"{s['saturation']:.2f}",
    ]
    if any(level["priority"] for level in s["waitingByPriority"]):
        lines.insert(
            2,
            "          waiting by priority  "
            + "  ".join(f"{level['priority']}: {level['waiting']}" for level in s["waitingByPriority"]),
        )
    for worker in stats.workers:
        lines.append(f"  {worker.id}  {worker.busy}/{worker.slots} busy")
    for job_id, value in sorted(stats.progress.items()):
        lines.append(f"  job {job_id}  progress {json.dumps(value)}")
    return "\n".join(lines)


def split_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """`worker ... -- PROG ARGS`: the flags before `--`, the command after it."""
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1 :]
    return argv, None


# -- shell completion: the scripts ask `jobpool __complete WORDS...` ---------------------------
def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {name: sub for name, sub in action.choices.items() if name != COMPLETE_COMMAND}
    return {}


def candidates(parser: argparse.ArgumentParser, words: Sequence[str]) -> list[str]:
    """Pure: the completions of the last of `words` (the words after `jobpool`)."""
    *before, current = list(words) or [""]
    expects_value = None
    for word in before:
        if expects_value is not None:
            expects_value = None
            continue
        option = parser._option_string_actions.get(word)
        if option is not None:
            if option.nargs != 0:
                expects_value = option
            continue
        sub = _subparsers(parser).get(word)
        if sub is not None:
            parser = sub
    if expects_value is not None:
        values = list(expects_value.choices or ())
    elif current.startswith("-"):
        values = sorted(o for a in parser._actions for o in a.option_strings)
    else:
        values = list(_subparsers(parser)) or [
            c for a in parser._actions if not a.option_strings for c in (a.choices or ())
        ]
    return [value for value in values if value.startswith(current)]


def completion_script(shell: str) -> str:
    if shell == "bash":
        return (
            "_jobpool() {\n"
            "  local IFS=$'\\n'\n"
            '  COMPREPLY=($(jobpool __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))\n'
            "}\n"
            "complete -o default -F _jobpool jobpool\n"
        )
    return (
        "#compdef jobpool\n"
        "_jobpool() {\n"
        "  local -a words_\n"
        '  words_=("${(@f)$(jobpool __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")\n'
        "  compadd -a words_\n"
        "}\n"
        "compdef _jobpool jobpool\n"
    )


# -- the parser: one `add_<command>` per subcommand -------------------------------------------
# A subcommand registers its parser and `run=` (a function of (args, stdio) returning the exit
# status, or a coroutine that does) in its add function, listed in SUBCOMMANDS below.
def _queue_flags(parser: argparse.ArgumentParser, pool: bool = True, outputs: Sequence[str] = ()) -> None:
    """The flags of every command that talks to a pool's queue (kubectl's -n, -o, --context)."""
    parser.add_argument(
        "-n",
        "--namespace",
        help=f"namespace of the pool (env {ENV_NAMESPACE}; "
        f"in cluster mode the context's namespace; else {DEFAULT_NAMESPACE!r})",
    )
    parser.add_argument(
        "--queue",
        help=f"queue URL (env {ENV_QUEUE_URL}), e.g. "
        "redis://localhost:6379/0; without one the pool's queue is read from "
        "the cluster (its JobPool and Secret, through the kubeconfig)",
    )
    parser.add_argument(
        "--from-cluster",
        action="store_true",
        help=f"find the queue from the JobPool even when {ENV_QUEUE_URL} is set",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file of cluster mode (env KUBECONFIG)")
    parser.add_argument("--context", help="kubeconfig context of cluster mode (default: current)")
    parser.add_argument(
        "--port-forward",
        action="store_true",
        help="reach an in-cluster queue through a port-forward to a ready pod of its Service",
    )
    if outputs:
        parser.add_argument(
            "-o",
            "--output",
            choices=outputs,
            default=outputs[0],
            help=f"output format (default {outputs[0]})",
        )
    if pool:
        parser.add_argument("pool", nargs="?", help=f"pool name (env {ENV_POOL})")


def add_operator(commands) -> None:
    # parsed by the operator itself (main() hands it the raw arguments)
    commands.add_parser("operator", help="run the operator (kopf inside)", add_help=False)


def add_worker(commands) -> None:
    worker = commands.add_parser(
        "worker",
        help="run one worker process",
        description="Run one worker process. Every flag can also be "
        "set by its JOBPOOL_* variable; a flag wins.",
    )
    for name, setting in SETTINGS.items():
        if name == "command":  # the program comes after `--`
            worker.add_argument(setting.flag, dest="command_flag", action="store_true", help=flag_help(name))
        elif name == "namespace":
            worker.add_argument("-n", setting.flag, dest=name, help=flag_help(name))
        else:
            worker.add_argument(setting.flag, dest=name, help=flag_help(name))
    worker.set_defaults(run=cmd_worker)


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """`--delay`: seconds, or a number with a unit (30s, 5m, 2h, 1d)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is no duration: give seconds or 30s, 5m, 2h, 1d")
    return float(match[1]) * _UNITS[match[2]]


def instant(text: str) -> datetime.datetime:
    """`--at`: an ISO 8601 time with a zone (Z or an offset)."""
    try:
        at = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is no ISO 8601 time, e.g. 2026-12-08T09:00:00Z") from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone: add Z (UTC) or an offset like +01:00")
    return at


def add_submit(commands) -> None:
    submit = commands.add_parser("submit", help="enqueue jobs; prints their ids")
    _queue_flags(submit, outputs=("name", "json", "yaml"))
    submit.add_argument("--payload", action="append", default=[], help="a JSON payload (repeatable)")
    submit.add_argument(
        "--id",
        action="append",
        default=[],
        help="the id of the --payload at "
        "the same position (repeatable); an id the queue knows is not enqueued "
        "again",
    )
    submit.add_argument("--file", help="JSON Lines file of payloads, or - for stdin")
    submit.add_argument(
        "--no-wait", action="store_true", help="fail instead of waiting when maxLength jobs are waiting"
    )
    submit.add_argument(
        "--task",
        help="the task of every job (a pool's worker may serve several); default: the pool's single handler",
    )
    submit.add_argument(
        "--timeout",
        type=float,
        help="every job's own deadline in seconds, instead of the pool's (within its cap)",
    )
    submit.add_argument(
        "--max-attempts", type=int, help="every job's own attempts, instead of the pool's (within its cap)"
    )
    when = submit.add_mutually_exclusive_group()
    when.add_argument(
        "--delay",
        type=duration,
        help="run the jobs no sooner than this from now: seconds, or with a unit: 30s, 5m, 2h, 1d",
    )
    when.add_argument(
        "--at",
        type=instant,
        help="run the jobs no sooner than this time: ISO 8601 with a zone, e.g. 2026-12-08T09:00:00Z",
    )
    submit.add_argument(
        "--backoff",
        type=float,
        help="every job's own first retry delay in seconds, instead of the pool's (within --max-backoff)",
    )
    submit.add_argument(
        "--priority",
        type=int,
        help="the jobs' level, 0-9 (default 0): a higher "
        "level is served first, a lower one waits while a higher one has jobs",
    )
    submit.add_argument(
        "--fairness-key",
        help="a tenant or customer (letters, digits, '.', '_', "
        "'-'; at most 64): within a level, keys share the pool's slots round-robin",
    )
    submit.set_defaults(run=cmd_submit, role=PRODUCER)


def add_status(commands) -> None:
    status = commands.add_parser("status", help="queue, counters, workers, saturation")
    _queue_flags(status, outputs=("table", "json", "yaml"))
    status.set_defaults(run=cmd_status, role=PRODUCER)


def add_results(commands) -> None:
    results = commands.add_parser("results", help='{"id","result","attempts"} per finished job')
    _queue_flags(results, outputs=("jsonl", "json", "yaml"))
    results.add_argument("--follow", action="store_true", help="keep printing new results (JSON Lines)")
    results.set_defaults(run=cmd_results, role=PRODUCER)


def add_job(commands) -> None:
    job = commands.add_parser("job", help="one job's state, task, attempts, worker, error, progress, result")
    _queue_flags(job, outputs=("text", "json", "yaml"))
    job.add_argument("id", help="the job's id")
    job.set_defaults(run=cmd_job, role=WORKER)  # the worker's function: it reads errors


def add_cancel(commands) -> None:
    cancel = commands.add_parser("cancel", help="withdraw jobs that have not run yet")
    _queue_flags(cancel, outputs=("text", "json", "yaml"))
    cancel.add_argument("--id", action="append", required=True, help="a job's id (repeatable)")
    cancel.set_defaults(run=cmd_cancel, role=WORKER)  # the worker's function: it removes entries


def add_dlq(commands) -> None:
    dlq = commands.add_parser("dlq", help="inspect and re-run dead jobs")
    actions = dlq.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text, outputs in (
        ("list", "print dead jobs", ("jsonl", "json", "yaml")),
        ("replay", "enqueue dead jobs again with fresh attempts", ("text", "json", "yaml")),
        ("purge", "delete dead jobs", ("text", "json", "yaml")),
    ):
        sub = actions.add_parser(action, help=text)
        _queue_flags(sub, outputs=outputs)
        sub.add_argument("--id", action="append", default=[], help="a dead job's id (repeatable)")
        sub.add_argument("--all", action="store_true", help="every dead job")
    dlq.set_defaults(run=cmd_dlq, role=WORKER)  # replay and purge run the worker's scripts


def add_version(commands) -> None:
    version = commands.add_parser("version", help="print the version of jobpool")
    version.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    version.set_defaults(run=cmd_version)


def add_completion(commands) -> None:
    completion = commands.add_parser(
        "completion",
        help="print a shell completion script: bash or zsh",
        description="source <(jobpool completion bash)   # in ~/.bashrc; zsh: jobpool completion zsh",
    )
    completion.add_argument("shell", choices=("bash", "zsh"))
    completion.set_defaults(run=cmd_completion)
    hidden = commands.add_parser(COMPLETE_COMMAND, add_help=False)  # what the scripts call
    hidden.add_argument("words", nargs=argparse.REMAINDER)
    hidden.set_defaults(run=cmd_complete)


def add_ui(commands) -> None:
    ui_command.register(commands)
    commands.choices["ui"].set_defaults(run=lambda args, stdin, stdout: ui_command.run(args))


SUBCOMMANDS = [
    add_operator,
    add_worker,
    add_submit,
    add_status,
    add_results,
    add_job,
    add_cancel,
    add_dlq,
    add_ui,
    add_version,
    add_completion,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobpool", description="Pools of workers fed by a queue, on Kubernetes or on one machine."
    )
    parser.add_argument("--version", action="version", version=version_line())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(commands)
    return parser


# -- where the queue is ---------------------------------------------------------------------
def cluster_mode(args: argparse.Namespace, environ: Mapping[str, str]) -> bool:
    """Pure: the queue is found from the JobPool unless a URL is given (flag, then env)."""
    return args.from_cluster or not (args.queue or environ.get(ENV_QUEUE_URL))


def resolve_queue(args: argparse.Namespace, stack: contextlib.ExitStack, environ: Mapping[str, str]) -> None:
    """Sets args.queue_url, args.namespace and args.pool; a port-forward lives on `stack`."""
    args.pool = args.pool or environ.get(ENV_POOL)
    if not args.pool:
        raise UsageError(f"no pool: give POOL or set {ENV_POOL}")
    namespace = args.namespace or environ.get(ENV_NAMESPACE)
    if not cluster_mode(args, environ):
        args.queue_url = args.queue or environ[ENV_QUEUE_URL]
        args.namespace = namespace or DEFAULT_NAMESPACE
        if args.port_forward:
            raise UsageError(
                f"--port-forward needs cluster mode: drop --queue (and {ENV_QUEUE_URL}) or add --from-cluster"
            )
        _check_names(args)
        return
    from . import cluster

    try:
        kube = cluster.Cluster(args.kubeconfig, args.context)
    except cluster.ClusterError as exc:
        if not (args.from_cluster or args.kubeconfig or args.context):
            raise UsageError(
                f"no queue URL: give --queue URL or set {ENV_QUEUE_URL} (cluster mode: {exc})"
            ) from None
        raise UsageError(str(exc)) from None
    args.namespace = namespace or kube.namespace
    _check_names(args)
    args.queue_url = kube.queue_url(args.namespace, args.pool, args.role)
    if args.port_forward:
        args.queue_url = stack.enter_context(kube.port_forward(args.queue_url, args.namespace))
    args.known_pool = True  # the JobPool exists: a pool with no jobs yet is no NotFound


def _check_names(args: argparse.Namespace) -> None:
    for value, what in ((args.pool, "pool"), (args.namespace, "namespace")):
        problem = name_problem(value, what)
        if problem is not None:
            raise UsageError(problem)


def _open(args: argparse.Namespace):
    return open_queue(args.queue_url, args.namespace, args.pool)


async def _must_know(args: argparse.Namespace, queue) -> QueueStats:
    """The pool's stats; NotFound when neither the cluster nor the queue knows the pool."""
    stats = await queue.stats()
    if not getattr(args, "known_pool", False) and not (
        stats.submitted or stats.backlog or stats.dead_letter or stats.workers
    ):
        raise NotFound(
            f"pool {args.namespace}/{args.pool} not found at "
            f"{redact_url(args.queue_url)}: it holds no job, worker or dead letter "
            f"of it (check -n and the pool's name)"
        )
    return stats


# -- commands -------------------------------------------------------------------------------
async def cmd_submit(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    sourced = parse_payload_flags(args.payload)
    if args.file == "-":
        sourced += parse_json_lines(stdin, "stdin")
    elif args.file:
        try:
            with open(args.file, encoding="utf-8") as handle:
                sourced += parse_json_lines(handle, args.file)
        except OSError as exc:
            raise UsageError(f"cannot read --file {args.file}: {exc.strerror}") from None
    if not sourced:
        raise UsageError("nothing to submit: give --payload JSON or --file PATH|-")
    payloads = [payload for _, payload in sourced]
    ids = None
    if args.id:
        if len(args.id) > len(payloads):
            raise UsageError(f"{len(args.id)} --id flags but {len(payloads)} payloads")
        ids = list(args.id) + [None] * (len(payloads) - len(args.id))
    try:
        options = check_options(
            args.timeout,
            args.max_attempts,
            args.backoff,
            priority=args.priority,
            fairness_key=args.fairness_key,
        )
    except QueueError as exc:
        raise UsageError(f"--{str(exc).split()[0].replace('_', '-')}: {exc}") from None
    queue = _open(args)
    progress = Progress(
        "submit", len(payloads), enabled=None if len(payloads) >= PROGRESS_THRESHOLD else False
    )
    try:
        job_ids = await queue.submit_many(
            payloads,
            ids,
            task=args.task,
            wait=not args.no_wait,
            options=options,
            due=due_of(args.delay, args.at),
            progress=progress.update,
        )
    except (QueueFull, PayloadTooLarge, UnknownTask) as exc:
        # the jobs of earlier chunks are in the queue: their ids must not be lost
        progress.clear()
        _write_ids(stdout, exc.submitted_ids, args.output)
        stdout.flush()
        if isinstance(exc, PayloadTooLarge):
            raise UsageError(exc.naming(sourced[exc.index][0])) from None
        raise
    finally:
        progress.clear()
        await queue.close()
    if progress.enabled:
        progress.close()
    _write_ids(stdout, job_ids, args.output)
    return 0


def _write_ids(stdout: TextIO, job_ids: Sequence[str], output: str) -> None:
    if output in STRUCTURED:
        write(stdout, list(job_ids), output)
    else:
        stdout.write("".join(f"{job_id}\n" for job_id in job_ids))


async def cmd_status(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    queue = _open(args)
    try:
        stats = await _must_know(args, queue)
    finally:
        await queue.close()
    if args.output in STRUCTURED:
        write(stdout, stats.as_status(), args.output)
    else:
        stdout.write(format_status(queue.namespace, queue.pool, stats) + "\n")
    return 0


async def cmd_results(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    if args.follow and args.output != "jsonl":
        raise UsageError(
            f"--follow prints JSON Lines as results finish; -o {args.output} "
            f"prints the whole list once: drop one of them"
        )
    queue = _open(args)
    progress = Progress("results", enabled=None if args.follow else False)
    collected = []
    try:
        stats = await _must_know(args, queue)
        if progress.enabled:
            progress.total = stats.submitted
        async for result in queue.results(follow=args.follow):
            record = {"id": result.id, "result": result.result, "attempts": result.attempts}
            if args.output != "jsonl":
                collected.append(record)
                continue
            if progress.visible and stdout.isatty():
                progress.clear()
            stdout.write(json.dumps(record) + "\n")
            if args.follow:
                stdout.flush()
            progress.update(1)
    finally:
        progress.clear()
        await queue.close()
    if args.output != "jsonl":
        write(stdout, collected, args.output)
    return 0


# `jobpool cancel`'s text for each outcome of the cancel function.
CANCEL_OUTCOMES = {
    "cancelled": "cancelled",
    "cancelling": "running: its worker cancels it at its next heartbeat",
    "succeeded": "already succeeded, nothing changed",
    "dead": "already dead-lettered, nothing changed",
    "was cancelled": "already cancelled, nothing changed",
    "unknown": "unknown",
}


def format_job(record: dict[str, Any]) -> str:
    """`jobpool job`'s text: one `name: value` line per fact the job's state has."""
    return "".join(
        f"{name}: {value if isinstance(value, str) else json.dumps(value)}\n"
        for name, value in record.items()
        if value not in (None, "")
    )


async def cmd_job(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    queue = _open(args)
    try:
        state = await queue.job(args.id)
    finally:
        await queue.close()
    if state is None:
        raise NotFound(
            f"no job {args.id!r} in pool {args.namespace}/{args.pool} (never "
            f"submitted, or its result expired)"
        )
    if args.output in STRUCTURED:
        write(stdout, state.as_record(), args.output)
    else:
        stdout.write(format_job(state.as_record()))
    return 0


async def cmd_cancel(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    queue = _open(args)
    try:
        outcomes = await queue.cancel(args.id)
    finally:
        await queue.close()
    if args.output in STRUCTURED:
        write(stdout, outcomes, args.output)
    else:
        stdout.write(
            "".join(
                f"{job_id}: {CANCEL_OUTCOMES.get(outcome, outcome)}\n" for job_id, outcome in outcomes.items()
            )
        )
    unknown = [job_id for job_id, outcome in outcomes.items() if outcome == "unknown"]
    if unknown:
        raise NotFound(
            f"no job {', '.join(repr(job_id) for job_id in unknown)} in pool {args.namespace}/{args.pool}"
        )
    return 0


async def cmd_dlq(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    if args.action != "list" and not (args.id or args.all):
        raise UsageError(f"dlq {args.action}: give --id ID (repeatable) or --all")
    if args.id and args.all:
        raise UsageError(f"dlq {args.action}: give --id or --all, not both")
    queue = _open(args)
    try:
        await _must_know(args, queue)
        dead_jobs = await queue.dead_letters()
        known = {dead.id for dead in dead_jobs}
        missing = [job_id for job_id in dict.fromkeys(args.id) if job_id not in known]
        wanted = [job_id for job_id in dict.fromkeys(args.id) if job_id in known]
        if args.action == "list":
            records = [
                {
                    "id": dead.id,
                    "task": dead.task,
                    "payload": dead.payload,
                    "attempts": dead.attempts,
                    "error": dead.error,
                    "failedAt": dead.failed_at,
                }
                for dead in dead_jobs
                if not args.id or dead.id in wanted
            ]
            if args.output == "jsonl":
                stdout.write("".join(json.dumps(record) + "\n" for record in records))
            else:
                write(stdout, records, args.output)
        elif args.all or wanted:
            count = await (queue.replay if args.action == "replay" else queue.purge_dead_letters)(
                None if args.all else wanted
            )
            done = "replayed" if args.action == "replay" else "purged"
            if args.output in STRUCTURED:
                write(stdout, {done: count}, args.output)
            else:
                stdout.write(f"{done} {count} dead jobs\n")
    finally:
        await queue.close()
    if missing:
        raise NotFound(
            f"no dead job {', '.join(repr(m) for m in missing)} in pool {args.namespace}/{args.pool}"
        )
    return 0


def cmd_worker(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    from .worker import ConfigError, HandlerError, resolve_config, run_worker

    command = args.program
    flags = {name: getattr(args, name) for name in SETTINGS if name != "command"}
    if args.command_flag and not command:
        raise UsageError("--command needs the program after `--`: --command -- PROG ARGS...")
    flags["command"] = command or None
    try:
        config = resolve_config(flags, os.environ)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    try:
        code = run_worker(config)
    except HandlerError as exc:
        raise UsageError(str(exc)) from None
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        # a sync handler still runs in a thread after the drain: its job was released
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def version_line() -> str:
    return f"jobpool {__version__}"


def cmd_version(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    info = {"version": __version__, "python": platform.python_version(), "crd": "jobpool.dev/v1alpha1"}
    if args.output in STRUCTURED:
        write(stdout, info, args.output)
    else:
        stdout.write(f"{version_line()} (python {info['python']}, {info['crd']})\n")
    return 0


def cmd_completion(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    stdout.write(completion_script(args.shell))
    return 0


def cmd_complete(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    stdout.write("".join(f"{word}\n" for word in candidates(build_parser(), args.words)))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "operator":
        try:
            from jobpool.controller.main import main as operator_main
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in OPERATOR_MODULES:
                raise
            print(
                f"jobpool operator: error: the operator is not installed (no module {exc.name!r}): "
                f"pip install 'jobpool[operator]'",
                file=sys.stderr,
            )
            return 2
        return operator_main(argv[1:])
    if argv[:1] == [COMPLETE_COMMAND]:  # words to complete are not flags of this parser
        return cmd_complete(argparse.Namespace(words=argv[1:]), sys.stdin, sys.stdout)
    flags, command = split_command(argv)
    args = build_parser().parse_args(flags)
    if command is not None and args.command != "worker":
        build_parser().error(f"unexpected arguments after --: {' '.join(command)}")
    args.program = command
    name = " ".join(filter(None, (args.command, getattr(args, "action", None))))
    try:
        with contextlib.ExitStack() as stack:
            if hasattr(args, "role"):
                resolve_queue(args, stack, os.environ)
            outcome = args.run(args, sys.stdin, sys.stdout)
            return asyncio.run(outcome) if asyncio.iscoroutine(outcome) else outcome
    except UsageError as exc:
        print(f"jobpool {name}: error: {exc}", file=sys.stderr)
        return 2
    except (QueueError, NotFound) as exc:
        print(f"jobpool {name}: error: {exc}", file=sys.stderr)
        return 1
    except ClusterError as exc:
        print(f"jobpool {name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
