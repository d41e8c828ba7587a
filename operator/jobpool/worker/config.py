"""Worker settings from flags and `JOBPOOL_*` variables (a flag wins over its variable).

`resolve_config` is pure: it takes the parsed flags and an environment mapping and either
returns a complete `WorkerConfig` or raises `ConfigError` naming the flag or variable."""
from __future__ import annotations

import dataclasses
import json
import os
import socket
from typing import Any, Callable, Mapping

from ..queue.codec import handler_problem, name_problem
from ..queue.keys import RELEASED_CONSUMER
from ..queue.streams import DEFAULT_DEAD_LETTER_CAP, DEFAULT_RESULTS_CAP, DEFAULT_VISIBILITY_TIMEOUT


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
    concurrency: int = 1
    timeout: float = 0.0            # per-job deadline in seconds; 0 = none
    max_attempts: int = 3
    backoff: float = 1.0
    max_backoff: float = 300.0
    drain_seconds: float = 60.0
    metrics_port: int = 9100        # 0 = no metrics endpoint
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT
    heartbeat_interval: float = DEFAULT_VISIBILITY_TIMEOUT / 3
    result_ttl: float = 86400.0     # seconds a result (and the dedup of its id) is kept
    max_results: int = DEFAULT_RESULTS_CAP          # results kept; the oldest go first
    max_dead_letters: int = DEFAULT_DEAD_LETTER_CAP  # dead letters kept; the oldest go first
    block_ms: int = 1000            # longest blocking read, and so the longest idle fetch

    @property
    def handler_description(self) -> str:
        return self.handler if self.handler else "command " + json.dumps(list(self.command or ()))


# setting name -> (flag, variable, parser, default)
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


SETTINGS: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "queue_url": ("--queue", "JOBPOOL_QUEUE_URL", str),
    "namespace": ("--namespace", "JOBPOOL_NAMESPACE", str),
    "pool": ("--pool", "JOBPOOL_POOL", str),
    "worker_id": ("--worker-id", "JOBPOOL_WORKER_ID", str),
    "handler": ("--handler", "JOBPOOL_HANDLER", str),
    "command": ("--command", "JOBPOOL_COMMAND", _command),
    "concurrency": ("--concurrency", "JOBPOOL_CONCURRENCY", _positive_int),
    "timeout": ("--timeout", "JOBPOOL_TIMEOUT", _non_negative_float),
    "max_attempts": ("--max-attempts", "JOBPOOL_MAX_ATTEMPTS", _positive_int),
    "backoff": ("--backoff", "JOBPOOL_BACKOFF", _non_negative_float),
    "max_backoff": ("--max-backoff", "JOBPOOL_MAX_BACKOFF", _non_negative_float),
    "drain_seconds": ("--drain-seconds", "JOBPOOL_DRAIN_SECONDS", _non_negative_float),
    "metrics_port": ("--metrics-port", "JOBPOOL_METRICS_PORT", _port),
    "visibility_timeout": ("--visibility-timeout", "JOBPOOL_VISIBILITY_TIMEOUT",
                           _non_negative_float),
    "heartbeat_interval": ("--heartbeat-interval", "JOBPOOL_HEARTBEAT_INTERVAL",
                           _non_negative_float),
    "result_ttl": ("--result-ttl", "JOBPOOL_RESULT_TTL", _positive_float),
    "max_results": ("--max-results", "JOBPOOL_MAX_RESULTS", _positive_int),
    "max_dead_letters": ("--max-dead-letters", "JOBPOOL_MAX_DEAD_LETTERS", _positive_int),
}


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def resolve_config(flags: Mapping[str, Any], env: Mapping[str, str],
                   default_id: Callable[[], str] = default_worker_id) -> WorkerConfig:
    """Flags (already typed, None when absent) win over environment variables (text)."""
    values: dict[str, Any] = {}
    for name, (flag, variable, parse) in SETTINGS.items():
        given = flags.get(name)
        if given is not None:
            try:
                values[name] = parse(given) if isinstance(given, str) and name != "command" \
                    else given
            except ValueError as exc:
                raise ConfigError(f"{flag} {given!r}: {exc}") from None
        elif env.get(variable, "") != "":
            try:
                values[name] = parse(env[variable])
            except ValueError as exc:
                raise ConfigError(f"{variable}={env[variable]!r}: {exc}") from None
    if "command" in values:
        values["command"] = tuple(values["command"])
    values.setdefault("namespace", "default")
    for name in ("queue_url", "pool"):
        if not values.get(name):
            flag, variable, _ = SETTINGS[name]
            raise ConfigError(f"missing {flag} (or {variable})")
    for name in ("pool", "namespace"):
        problem = name_problem(values[name], name)
        if problem is not None:
            flag, variable, _ = SETTINGS[name]
            raise ConfigError(f"{flag} (or {variable}): {problem}")
    if bool(values.get("handler")) == bool(values.get("command")):
        raise ConfigError("give exactly one of --handler module:function (JOBPOOL_HANDLER) or "
                          "--command -- PROG ARGS (JOBPOOL_COMMAND)")
    problem = handler_problem(values["handler"]) if values.get("handler") else None
    if problem is not None:
        raise ConfigError(f"--handler (or JOBPOOL_HANDLER): {problem}")
    if not values.get("worker_id"):
        values["worker_id"] = default_id()
    if values["worker_id"] == RELEASED_CONSUMER:
        raise ConfigError(f"--worker-id {RELEASED_CONSUMER!r} is reserved for jobs given back "
                          "on drain; choose another id")
    values.setdefault("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT)
    if values["visibility_timeout"] <= 0:
        raise ConfigError("--visibility-timeout must be > 0")
    if not values.get("heartbeat_interval"):
        values["heartbeat_interval"] = values["visibility_timeout"] / 3
    if values["heartbeat_interval"] >= values["visibility_timeout"]:
        raise ConfigError("--heartbeat-interval must be shorter than --visibility-timeout, or "
                          "running jobs would be redelivered")
    return WorkerConfig(**values)
