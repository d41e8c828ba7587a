"""The `jobpool` command: operator | worker | submit | status | results | dlq.

Errors are one line on stderr, `jobpool <command>: error: <what, and what to do>`, with exit
status 1 (queue problems) or 2 (bad usage or input)."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
from typing import Any, Iterable, Sequence, TextIO

from ._progress import Progress
from .queue import PayloadTooLarge, QueueError, QueueFull, QueueStats, open_queue
from .queue.codec import name_problem
from .ui import command as ui_command
from .worker.config import SETTINGS, flag_help

PROGRESS_THRESHOLD = 1000   # submits this large draw a progress bar on a terminal
OPERATOR_MODULES = {"kopf", "kubernetes", "pydantic", "yaml"}   # the `operator` extra of pyproject.toml


class UsageError(Exception):
    """Bad flags or input; exit status 2."""


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
            raise UsageError(f"{source} line {number} is not valid JSON ({exc}); nothing was "
                             f"submitted") from None
    return payloads


def parse_payload_flags(values: Sequence[str]) -> list[tuple[str, Any]]:
    payloads = []
    for number, text in enumerate(values, start=1):
        try:
            payloads.append((f"--payload #{number}", json.loads(text)))
        except ValueError as exc:
            raise UsageError(f"--payload #{number} {text!r} is not valid JSON ({exc}); nothing "
                             f"was submitted") from None
    return payloads


def format_status(namespace: str, pool: str, stats: QueueStats) -> str:
    s = stats.as_status()
    lines = [
        f"pool      {namespace}/{pool}",
        f"queue     waiting {s['waiting']}  inFlight {s['inFlight']}  delayed {s['delayed']}  "
        f"deadLetter {s['deadLetter']}",
        f"jobs      submitted {s['submitted']}  succeeded {s['succeeded']}  retried "
        f"{s['retried']}  deadLettered {s['deadLettered']}",
        f"workers   {s['workers']}  busySlots {s['busySlots']}/{s['totalSlots']}  saturation "
        f"{s['saturation']:.2f}",
    ]
    for worker in stats.workers:
        lines.append(f"  {worker.id}  {worker.busy}/{worker.slots} busy")
    return "\n".join(lines)


def split_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """`worker ... -- PROG ARGS`: the flags before `--`, the command after it."""
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1:]
    return argv, None


# -- the parser -----------------------------------------------------------------------------
def _queue_flags(parser: argparse.ArgumentParser, pool: bool = True) -> None:
    parser.add_argument("--queue", help="queue URL (env JOBPOOL_QUEUE_URL), e.g. "
                                        "redis://localhost:6379/0")
    parser.add_argument("--namespace", help="namespace of the pool (env JOBPOOL_NAMESPACE, "
                                            "default 'default')")
    if pool:
        parser.add_argument("pool", nargs="?", help="pool name (env JOBPOOL_POOL)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobpool", description="Pools of workers fed by a "
                                     "queue, on Kubernetes or on one machine.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("operator", help="run the operator (kopf inside)", add_help=False)

    worker = commands.add_parser("worker", help="run one worker process",
                                 description="Run one worker process. Every flag can also be "
                                 "set by its JOBPOOL_* variable; a flag wins.")
    for name, setting in SETTINGS.items():
        if name == "command":   # the program comes after `--`
            worker.add_argument(setting.flag, dest="command_flag", action="store_true",
                                help=flag_help(name))
        else:
            worker.add_argument(setting.flag, dest=name, help=flag_help(name))

    submit = commands.add_parser("submit", help="enqueue jobs; prints their ids")
    _queue_flags(submit)
    submit.add_argument("--payload", action="append", default=[], help="a JSON payload "
                        "(repeatable)")
    submit.add_argument("--id", action="append", default=[], help="the id of the --payload at "
                        "the same position (repeatable); an id the queue knows is not enqueued "
                        "again")
    submit.add_argument("--file", help="JSON Lines file of payloads, or - for stdin")
    submit.add_argument("--no-wait", action="store_true", help="fail instead of waiting when "
                        "maxLength jobs are waiting")

    status = commands.add_parser("status", help="queue, counters, workers, saturation")
    _queue_flags(status)
    status.add_argument("--output", choices=("table", "json"), default="table")

    results = commands.add_parser("results", help='{"id","result","attempts"} per finished job')
    _queue_flags(results)
    results.add_argument("--follow", action="store_true", help="keep printing new results")
    results.add_argument("--output", choices=("jsonl",), default="jsonl")

    dlq = commands.add_parser("dlq", help="inspect and re-run dead jobs")
    actions = dlq.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (("list", "print dead jobs as JSON Lines"),
                         ("replay", "enqueue dead jobs again with fresh attempts"),
                         ("purge", "delete dead jobs")):
        sub = actions.add_parser(action, help=text)
        _queue_flags(sub)
        sub.add_argument("--id", action="append", default=[], help="a dead job's id "
                         "(repeatable)")
        sub.add_argument("--all", action="store_true", help="every dead job")
    ui_command.register(commands)
    return parser


# -- commands -------------------------------------------------------------------------------
def _open(args: argparse.Namespace):
    url = args.queue or os.environ.get("JOBPOOL_QUEUE_URL")
    if not url:
        raise UsageError("no queue URL: give --queue URL or set JOBPOOL_QUEUE_URL")
    namespace = args.namespace or os.environ.get("JOBPOOL_NAMESPACE") or "default"
    pool = args.pool or os.environ.get("JOBPOOL_POOL")
    if not pool:
        raise UsageError("no pool: give POOL or set JOBPOOL_POOL")
    for value, what in ((pool, "pool"), (namespace, "namespace")):
        problem = name_problem(value, what)
        if problem is not None:
            raise UsageError(problem)
    return open_queue(url, namespace, pool)


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
    queue = _open(args)
    progress = Progress("submit", len(payloads),
                        enabled=None if len(payloads) >= PROGRESS_THRESHOLD else False)
    try:
        job_ids = await queue.submit_many(payloads, ids, wait=not args.no_wait,
                                          progress=progress.update)
    except (QueueFull, PayloadTooLarge) as exc:
        # the jobs of earlier chunks are in the queue: their ids must not be lost
        progress.clear()
        stdout.write("".join(f"{job_id}\n" for job_id in exc.submitted_ids))
        stdout.flush()
        if isinstance(exc, PayloadTooLarge):
            raise UsageError(exc.naming(sourced[exc.index][0])) from None
        raise
    finally:
        progress.clear()
        await queue.close()
    if progress.enabled:
        progress.close()
    stdout.write("".join(f"{job_id}\n" for job_id in job_ids))
    return 0


async def cmd_status(args: argparse.Namespace, stdout: TextIO) -> int:
    queue = _open(args)
    try:
        stats = await queue.stats()
    finally:
        await queue.close()
    if args.output == "json":
        stdout.write(json.dumps(stats.as_status()) + "\n")
    else:
        stdout.write(format_status(queue.namespace, queue.pool, stats) + "\n")
    return 0


async def cmd_results(args: argparse.Namespace, stdout: TextIO) -> int:
    queue = _open(args)
    progress = Progress("results", enabled=None if args.follow else False)
    try:
        if progress.enabled:
            progress.total = (await queue.stats()).submitted
        async for result in queue.results(follow=args.follow):
            if progress.visible and stdout.isatty():
                progress.clear()
            stdout.write(json.dumps({"id": result.id, "result": result.result,
                                     "attempts": result.attempts}) + "\n")
            if args.follow:
                stdout.flush()
            progress.update(1)
    finally:
        progress.clear()
        await queue.close()
    return 0


async def cmd_dlq(args: argparse.Namespace, stdout: TextIO) -> int:
    if args.action != "list" and not (args.id or args.all):
        raise UsageError(f"dlq {args.action}: give --id ID (repeatable) or --all")
    if args.id and args.all:
        raise UsageError(f"dlq {args.action}: give --id or --all, not both")
    queue = _open(args)
    try:
        if args.action == "list":
            wanted = set(args.id)
            for dead in await queue.dead_letters():
                if wanted and dead.id not in wanted:
                    continue
                stdout.write(json.dumps({"id": dead.id, "payload": dead.payload,
                                         "attempts": dead.attempts, "error": dead.error,
                                         "failedAt": dead.failed_at}) + "\n")
        elif args.action == "replay":
            count = await queue.replay(None if args.all else args.id)
            stdout.write(f"replayed {count} dead jobs\n")
        else:
            count = await queue.purge_dead_letters(None if args.all else args.id)
            stdout.write(f"purged {count} dead jobs\n")
    finally:
        await queue.close()
    return 0


def cmd_worker(args: argparse.Namespace, command: list[str] | None) -> int:
    from .worker import ConfigError, HandlerError, resolve_config, run_worker
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
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()
           if t is not threading.main_thread()):
        # a sync handler still runs in a thread after the drain: its job was released
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "operator":
        try:
            from jobpool.controller.main import main as operator_main
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in OPERATOR_MODULES:
                raise
            print(f"jobpool operator: error: the operator is not installed (no module {exc.name!r}): "
                  f"pip install 'jobpool[operator]'", file=sys.stderr)
            return 2
        return operator_main(argv[1:])
    flags, command = split_command(argv)
    args = build_parser().parse_args(flags)
    if command is not None and args.command != "worker":
        build_parser().error(f"unexpected arguments after --: {' '.join(command)}")
    try:
        if args.command == "worker":
            return cmd_worker(args, command)
        if args.command == "submit":
            return asyncio.run(cmd_submit(args, sys.stdin, sys.stdout))
        if args.command == "status":
            return asyncio.run(cmd_status(args, sys.stdout))
        if args.command == "results":
            return asyncio.run(cmd_results(args, sys.stdout))
        if args.command == "dlq":
            return asyncio.run(cmd_dlq(args, sys.stdout))
        if args.command == "ui":
            return ui_command.run(args)
    except UsageError as exc:
        print(f"jobpool {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except QueueError as exc:
        print(f"jobpool {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
