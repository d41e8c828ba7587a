"""The worker runtime behind `jobpool worker`."""

from .config import ConfigError, WorkerConfig, resolve_config
from .runners import HandlerError, JobFailed, command_runner, load_callable, load_tasks, python_runner, served
from .runtime import Worker

__all__ = [
    "ConfigError",
    "HandlerError",
    "JobFailed",
    "Worker",
    "WorkerConfig",
    "command_runner",
    "load_callable",
    "load_tasks",
    "python_runner",
    "resolve_config",
    "run_worker",
]


def run_worker(config: WorkerConfig) -> int:
    """Run one worker process until it is told to stop; returns the exit code."""
    import asyncio
    import logging
    import sys

    from ..queue import open_queue

    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    tasks: tuple[str, ...] = ()  # a --command serves whatever task comes
    if config.handler:
        handlers = load_tasks(config.handler)
        runner, shutdown = python_runner(handlers, config.concurrency)
        tasks = served(handlers)
    else:
        runner, shutdown = command_runner(config.command or ()), (lambda: None)

    async def main() -> int:
        queue = open_queue(
            config.queue_url,
            config.namespace,
            config.pool,
            visibility_timeout=config.visibility_timeout,
            result_ttl=config.result_ttl,
            results_cap=config.max_results,
            dead_letter_cap=config.max_dead_letters,
        )
        return await Worker(queue, runner, config, on_exit=shutdown, tasks=tasks).run()

    return asyncio.run(main())
