"""Worker settings from flags and `JOBPOOL_*` variables (a flag wins over its variable).

`resolve_config` is pure: it takes the parsed flags and an environment mapping and either
returns a complete `WorkerConfig` or raises `ConfigError` naming the flag or variable."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from .. import contract
from ..names import handler_problem, name_problem
from ..queue.base import JobOptions
from ..queue.keys import RELEASED_CONSUMER


class JobSettings(NamedTuple):
    """What one job runs with: its own options within the pool's caps, else the pool's."""

    timeout: float  # 0 = none
    max_attempts: int
    backoff: float


class ConfigError(ValueError):
    """A worker setting is missing or invalid; the message names the flag and the variable."""


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    queue_url: str
    namespace: str
    pool: str
    worker_id: str
    handler: str | None = None
    command: tuple[str, ...] | None = None
    concurrency: int = contract.DEFAULT_CONCURRENCY
    timeout: float = 0.0  # per-job deadline in seconds; 0 = none
    max_attempts: int = contract.DEFAULT_MAX_ATTEMPTS
    backoff: float = contract.DEFAULT_BACKOFF_SECONDS
    max_backoff: float = contract.DEFAULT_MAX_BACKOFF_SECONDS
    max_job_timeout: float = float(contract.DEFAULT_MAX_JOB_TIMEOUT_SECONDS)  # the longest a job may ask for
    max_job_attempts: int = contract.DEFAULT_MAX_JOB_ATTEMPTS  # the most attempts a job may ask for
    drain_seconds: float = float(contract.DEFAULT_DRAIN_SECONDS)
    metrics_port: int = contract.WORKER_METRICS_PORT  # 0 = no metrics endpoint
    visibility_timeout: float = contract.DEFAULT_VISIBILITY_TIMEOUT_SECONDS
    heartbeat_interval: float = contract.DEFAULT_VISIBILITY_TIMEOUT_SECONDS / 3
    result_ttl: float = float(contract.DEFAULT_RESULT_TTL_SECONDS)  # a result (and its id's dedup) is kept
    max_results: int = contract.DEFAULT_RESULTS_CAP  # results kept; the oldest go first
    max_dead_letters: int = contract.DEFAULT_DEAD_LETTER_CAP  # dead letters kept; the oldest go first
    block_ms: int = 1000  # longest blocking read, and so the longest idle fetch

    def job_settings(self, options: JobOptions) -> JobSettings:
        """A job's own timeout, attempts and backoff, held to the pool's caps (a backoff's cap is
        --max-backoff), or the pool's where it has none."""
        return JobSettings(
            self.timeout if options.timeout is None else min(options.timeout, self.max_job_timeout),
            self.max_attempts
            if options.max_attempts is None
            else min(options.max_attempts, self.max_job_attempts),
            self.backoff if options.backoff is None else min(options.backoff, self.max_backoff),
        )

    @property
    def handler_description(self) -> str:
        return self.handler if self.handler else "command " + json.dumps(list(self.command or ()))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be a number >= 0")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a number > 0")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number 0..65535")
    return value


def _command(text: str) -> tuple[str, ...]:
    value = json.loads(text)
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise ValueError('must be a JSON array of strings, e.g. ["/app/resize", "--fast"]')
    return tuple(value)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One worker setting: the one home of its flag, its variable, its parser and its docs,
    from which argparse, `resolve_config` and the README's flag table are made."""

    flag: str
    variable: str
    parse: Callable[[str], Any]
    help: str
    default: str | None = None  # the default as documented, when WorkerConfig's own does not say it
    required: bool = False


SETTINGS: dict[str, Setting] = {
    "queue_url": Setting(
        "--queue", contract.ENV_QUEUE_URL, str, "queue URL, e.g. redis://localhost:6379/0", required=True
    ),
    "namespace": Setting(
        "--namespace", contract.ENV_NAMESPACE, str, "namespace of the pool", contract.DEFAULT_NAMESPACE
    ),
    "pool": Setting("--pool", contract.ENV_POOL, str, "pool name", required=True),
    "worker_id": Setting(
        "--worker-id", "JOBPOOL_WORKER_ID", str, "this worker's name in the queue", "<hostname>-<pid>"
    ),
    "handler": Setting(
        "--handler",
        "JOBPOOL_HANDLER",
        str,
        "a Python callable module:function, sync or async; or a module of tasks "
        "(@jobpool.task) or module:MAPPING of task names (this or --command)",
    ),
    "command": Setting(
        "--command",
        "JOBPOOL_COMMAND",
        _command,
        "run `-- PROG ARGS...` per job: payload JSON on stdin, result JSON on stdout, "
        "progress as `jobpool-progress: <JSON>` lines on stderr (the variable: a JSON "
        "array; this or --handler)",
    ),
    "concurrency": Setting("--concurrency", "JOBPOOL_CONCURRENCY", _positive_int, "job slots"),
    "timeout": Setting(
        "--timeout", "JOBPOOL_TIMEOUT", _non_negative_float, "per-job deadline in seconds (0 = none)"
    ),
    "max_attempts": Setting(
        "--max-attempts", "JOBPOOL_MAX_ATTEMPTS", _positive_int, "attempts before a job is dead-lettered"
    ),
    "backoff": Setting(
        "--backoff",
        "JOBPOOL_BACKOFF",
        _non_negative_float,
        "first retry delay in seconds, doubling with jitter",
    ),
    "max_backoff": Setting(
        "--max-backoff", "JOBPOOL_MAX_BACKOFF", _non_negative_float, "longest retry delay in seconds"
    ),
    "max_job_timeout": Setting(
        "--max-job-timeout",
        "JOBPOOL_MAX_JOB_TIMEOUT",
        _positive_float,
        "the longest timeout a job's own option may set, in seconds",
    ),
    "max_job_attempts": Setting(
        "--max-job-attempts",
        "JOBPOOL_MAX_JOB_ATTEMPTS",
        _positive_int,
        "the most attempts a job's own option may set",
    ),
    "drain_seconds": Setting(
        "--drain-seconds",
        "JOBPOOL_DRAIN_SECONDS",
        _non_negative_float,
        "seconds in-flight jobs get to finish after SIGTERM",
    ),
    "metrics_port": Setting(
        "--metrics-port", "JOBPOOL_METRICS_PORT", _port, "port of /metrics and /healthz (0 = off)"
    ),
    "visibility_timeout": Setting(
        "--visibility-timeout",
        "JOBPOOL_VISIBILITY_TIMEOUT",
        _non_negative_float,
        "seconds before a job held by a silent worker is redelivered",
    ),
    "heartbeat_interval": Setting(
        "--heartbeat-interval",
        "JOBPOOL_HEARTBEAT_INTERVAL",
        _non_negative_float,
        "seconds between heartbeats",
        "visibility timeout / 3",
    ),
    "result_ttl": Setting(
        "--result-ttl",
        "JOBPOOL_RESULT_TTL",
        _positive_float,
        "seconds each result is kept, and with it the dedup of its id",
    ),
    "max_results": Setting(
        "--max-results", "JOBPOOL_MAX_RESULTS", _positive_int, "most results kept; the oldest go first"
    ),
    "max_dead_letters": Setting(
        "--max-dead-letters",
        "JOBPOOL_MAX_DEAD_LETTERS",
        _positive_int,
        "most dead letters kept; the oldest go first",
    ),
}


def documented_default(name: str) -> str:
    """The default as `--help` and the README say it: "required", "-" for none, or the value."""
    setting = SETTINGS[name]
    if setting.required:
        return "required"
    if setting.default is not None:
        return setting.default
    value = {f.name: f.default for f in dataclasses.fields(WorkerConfig)}[name]
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def flag_help(name: str) -> str:
    setting, default = SETTINGS[name], documented_default(name)
    then = {"required": "; required", "-": ""}.get(default, f"; default {default}")
    return f"{setting.help} (env {setting.variable}{then})"


def flag_reference() -> str:
    """The README's table of worker flags (a test keeps the README equal to it)."""
    rows = ["| flag | variable | default | meaning |", "|---|---|---|---|"]
    for name, setting in SETTINGS.items():
        default = documented_default(name)
        shown = default if default in ("required", "-") else f"`{default}`"
        rows.append(f"| `{setting.flag}` | `{setting.variable}` | {shown} | {setting.help} |")
    return "\n".join(rows) + "\n"


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def resolve_config(
    flags: Mapping[str, Any], env: Mapping[str, str], default_id: Callable[[], str] = default_worker_id
) -> WorkerConfig:
    """Flags (already typed, None when absent) win over environment variables (text)."""
    values: dict[str, Any] = {}
    for name, setting in SETTINGS.items():
        given = flags.get(name)
        if given is not None:
            try:
                values[name] = setting.parse(given) if isinstance(given, str) and name != "command" else given
            except ValueError as exc:
                raise ConfigError(f"{setting.flag} {given!r}: {exc}") from None
        elif env.get(setting.variable, "") != "":
            try:
                values[name] = setting.parse(env[setting.variable])
            except ValueError as exc:
                raise ConfigError(f"{setting.variable}={env[setting.variable]!r}: {exc}") from None
    if "command" in values:
        values["command"] = tuple(values["command"])
    values.setdefault("namespace", contract.DEFAULT_NAMESPACE)
    for name, setting in SETTINGS.items():
        if setting.required and not values.get(name):
            raise ConfigError(f"missing {setting.flag} (or {setting.variable})")
    for name in ("pool", "namespace"):
        problem = name_problem(values[name], name)
        if problem is not None:
            raise ConfigError(f"{SETTINGS[name].flag} (or {SETTINGS[name].variable}): {problem}")
    if bool(values.get("handler")) == bool(values.get("command")):
        raise ConfigError(
            "give exactly one of --handler module:function (JOBPOOL_HANDLER) or "
            "--command -- PROG ARGS (JOBPOOL_COMMAND)"
        )
    problem = handler_problem(values["handler"]) if values.get("handler") else None
    if problem is not None:
        raise ConfigError(f"--handler (or JOBPOOL_HANDLER): {problem}")
    if not values.get("worker_id"):
        values["worker_id"] = default_id()
    if values["worker_id"] == RELEASED_CONSUMER:
        raise ConfigError(
            f"--worker-id {RELEASED_CONSUMER!r} is reserved for jobs given back on drain; choose another id"
        )
    values.setdefault("visibility_timeout", contract.DEFAULT_VISIBILITY_TIMEOUT_SECONDS)
    if values["visibility_timeout"] <= 0:
        raise ConfigError("--visibility-timeout must be > 0")
    if not values.get("heartbeat_interval"):
        values["heartbeat_interval"] = values["visibility_timeout"] / 3
    if values["heartbeat_interval"] >= values["visibility_timeout"]:
        raise ConfigError(
            "--heartbeat-interval must be shorter than --visibility-timeout, or "
            "running jobs would be redelivered"
        )
    return WorkerConfig(**values)
