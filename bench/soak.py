"""`make soak`: jobs through chaos, and nothing lost.

A redis-server of its own (AOF, `appendfsync always`: a restart loses nothing acknowledged),
real `jobpool worker` processes, good jobs submitted in chunks while workers are killed with
SIGKILL and stopped with SIGTERM (each replaced by a fresh one), Redis is killed and restarted
once, and malformed entries are written with raw XADD as a foreign producer would. Each chunk of
good jobs has a priority (0-9) and a fairness key of a few tenants, or neither, so jobs wait in
the stream and beside it and are delivered past unread entries; some chunks are scheduled
(submitted with a delay), and a canceller submits jobs of its own, some scheduled, and cancels
most of them while they wait or run. At the end every good job has succeeded (its result in the
results stream, once), every malformed entry is dead-lettered, every cancelled job is cancelled
or (asked while running, it finished first) succeeded, none started after its cancel was
acknowledged, nothing waits (at any level), runs, is delayed or scheduled, and no worker process
is left running; without a worker killed, no job ran twice (no duplicate completion).

Usage: python bench/soak.py [--jobs 20000] [--workers 4] [--concurrency 16] [--seed N]
Exit status 0 when every check holds, 1 otherwise (the failed checks are printed).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from jobpool import Client, JobOptions, QueueError  # noqa: E402
from jobpool.queue import open_queue  # noqa: E402
from jobpool.queue.keys import PoolKeys  # noqa: E402
from tests.fixtures.redis import RedisServer  # noqa: E402

NAMESPACE, POOL = "soak", "chaos"
SUBMIT_CHUNK = 250
BACKLOG_SHARE = 10  # maxLength = jobs / this: submits wait for room, spanning the run
VISIBILITY_TIMEOUT = 2.0  # a killed worker's jobs come back this soon
MAX_ATTEMPTS = 10  # enough that redeliveries after kills never dead-letter a good job
TENANTS = (None, "tenant-a", "tenant-b", "tenant-c")  # the chunks' fairness keys
SCHEDULED_EVERY = 5  # every 5th chunk of good jobs is scheduled, due 0.2-1.5 s after its submit
CANCEL_SHARE = 20  # the canceller submits one job per 20 good ones, and cancels 2 in 3
STARTS_VARIABLE = "JOBPOOL_SOAK_STARTS"  # the file where workers note when a canceller's job starts

# Entries a foreign producer might write, as raw stream fields; each must end dead-lettered.
MALFORMED_ENTRIES: dict[str, dict[str, str | bytes]] = {
    "non-json-text": {"p": "{this is not JSON", "a": "0"},
    "missing-payload-field": {"a": "0", "t": "0"},
    "invalid-utf8": {"p": b'{"caf\xe9": 1}', "a": "0"},
    "nested-too-deep": {"p": "[" * 100_000 + "]" * 100_000, "a": "0"},
}


async def work(payload: Any) -> Any:
    """The soak's handler: a short wait, so kills and restarts meet jobs in flight. A canceller's
    job notes when it starts (one append of one short line: atomic), for the check that none
    starts after its cancel was acknowledged."""
    if payload.get("c"):
        with open(os.environ[STARTS_VARIABLE], "a") as starts:
            starts.write(f"{cancel_id(payload['n'])} {time.time():.6f}\n")
    await asyncio.sleep(payload["ms"] / 1000)
    return payload["n"]


@dataclasses.dataclass
class Report:
    jobs: int = 0
    malformed: int = 0
    seconds: float = 0.0
    workers_started: int = 0
    kills: int = 0
    terms: int = 0
    redis_restarts: int = 0
    submit_retries: int = 0
    results: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_letters: int = 0
    scheduled: int = 0  # good jobs submitted with a delay
    cancel_jobs: int = 0  # the canceller's jobs
    cancels: dict[str, int] = dataclasses.field(default_factory=dict)  # cancel outcomes, counted
    cancelled: int = 0  # the canceller's jobs that ended cancelled
    cancel_job_starts: int = 0  # the starts of the canceller's jobs the workers noted
    workers_left: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        rate = self.jobs / self.seconds if self.seconds else 0.0
        return [
            f"good jobs {self.jobs:,} + malformed entries {self.malformed} in {self.seconds:.1f}s "
            f"({rate:,.0f} jobs/s)",
            f"chaos: {self.kills} workers killed (SIGKILL), {self.terms} stopped (SIGTERM), "
            f"{self.redis_restarts} Redis restart(s), {self.workers_started} workers started, "
            f"{self.submit_retries} submit chunk(s) sent again",
            f"results {self.results:,} (one per good job), duplicate completions "
            f"{self.duplicates}, retried attempts {self.retried}, dead letters "
            f"{self.dead_letters}, workers left running {len(self.workers_left)}",
            f"scheduled good jobs {self.scheduled}; the canceller's jobs {self.cancel_jobs}, cancels "
            + (", ".join(f"{n} {outcome}" for outcome, n in sorted(self.cancels.items())) or "none")
            + f", {self.cancelled} ended cancelled, {self.cancel_job_starts} starts of them noted",
            "OK: every good job succeeded once in results, every malformed entry dead-lettered, every "
            "cancelled job gone or finished first, none started after its cancel, nothing waiting or "
            "in flight"
            if self.ok
            else "FAILED: " + "; ".join(self.problems),
        ]


class Workers:
    """The pool's `jobpool worker` processes; a stopped one is replaced by a fresh one."""

    def __init__(self, url: str, directory: Path, concurrency: int, capacity: int):
        self.url, self.directory, self.concurrency, self.capacity = url, directory, concurrency, capacity
        self.running: list[subprocess.Popen] = []
        self.stopped: list[subprocess.Popen] = []
        self.started = 0

    def start(self) -> None:
        name = f"soak-{self.started}"
        self.started += 1
        argv = [
            sys.executable,
            "-m",
            "jobpool.cli",
            "worker",
            "--queue",
            self.url,
            "--namespace",
            NAMESPACE,
            "--pool",
            POOL,
            "--worker-id",
            name,
            "--handler",
            "bench.soak:work",
            "--concurrency",
            str(self.concurrency),
            "--visibility-timeout",
            str(VISIBILITY_TIMEOUT),
            "--drain-seconds",
            "3",
            "--max-attempts",
            str(MAX_ATTEMPTS),
            "--backoff",
            "0.05",
            "--max-backoff",
            "0.5",
            "--max-results",
            str(self.capacity),
            "--max-dead-letters",
            str(self.capacity),
            "--metrics-port",
            "0",
        ]
        log = (self.directory / f"{name}.log").open("w")
        self.running.append(
            subprocess.Popen(
                argv,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=dict(
                    os.environ, PYTHONPATH=str(ROOT), **{STARTS_VARIABLE: str(self.directory / "starts.log")}
                ),
            )
        )

    def replace(self, rng: random.Random, signum: int) -> None:
        victim = self.running.pop(rng.randrange(len(self.running)))
        victim.send_signal(signum)
        self.stopped.append(victim)
        self.start()

    def stop_all(self, timeout: float = 30) -> list[str]:
        """SIGTERM every worker, wait for them; returns the ids of those still running."""
        for process in self.running:
            process.send_signal(signal.SIGTERM)
        self.stopped += self.running
        self.running = []
        deadline = time.monotonic() + timeout
        for process in self.stopped:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        return [p.args[p.args.index("--worker-id") + 1] for p in self.stopped if p.poll() is None]


class Submitter(threading.Thread):
    """Submits the good jobs in chunks with stable ids, waiting for room under maxLength; a
    chunk refused because Redis is down is sent again (its ids dedup what of it got in)."""

    def __init__(self, url: str, jobs: int, rng: random.Random):
        super().__init__(daemon=True)
        self.url, self.jobs = url, jobs
        self.payloads = [{"n": n, "ms": rng.randint(2, 30)} for n in range(jobs)]
        # per chunk: no priority half the time, else a level 1-9; a tenant or none
        self.options = [
            JobOptions(priority=rng.choice([None] * 9 + list(range(1, 10))), fairness_key=rng.choice(TENANTS))
            for _ in range(0, jobs, SUBMIT_CHUNK)
        ]
        self.delays = [
            rng.uniform(0.2, 1.5) if chunk % SCHEDULED_EVERY == SCHEDULED_EVERY - 1 else None
            for chunk in range(-(-jobs // SUBMIT_CHUNK))
        ]
        self.submitted = 0
        self.scheduled = 0
        self.retries = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Client(self.url, NAMESPACE, POOL) as client:
                while self.submitted < self.jobs:
                    stop = min(self.submitted + SUBMIT_CHUNK, self.jobs)
                    delay = self.delays[self.submitted // SUBMIT_CHUNK]
                    try:
                        client.submit_many(
                            self.payloads[self.submitted : stop],
                            [good_id(n) for n in range(self.submitted, stop)],
                            options=self.options[self.submitted // SUBMIT_CHUNK],
                            delay=delay,
                        )
                    except QueueError:
                        self.retries += 1
                        time.sleep(0.1)
                        continue
                    self.scheduled += (stop - self.submitted) if delay else 0
                    self.submitted = stop
        except BaseException as exc:  # reported by the soak, not lost in a thread
            self.error = exc


class Canceller(threading.Thread):
    """Submits jobs of its own one by one (one in three scheduled 0.5-5 s ahead) and cancels two
    in three of them a moment later, while they wait, are scheduled or run; notes each cancel's
    outcome and when it was acknowledged. A call refused while Redis is down is sent again (a
    cancel that got through says "was cancelled" then)."""

    def __init__(self, url: str, count: int, seed: float):
        super().__init__(daemon=True)
        rng = random.Random(seed)
        self.url, self.count = url, count
        self.plan = [
            (
                {"n": n, "ms": rng.randint(20, 200), "c": 1},
                rng.uniform(0.5, 5.0) if rng.random() < 1 / 3 else None,
                rng.uniform(0.0, 0.3) if rng.random() < 2 / 3 else None,
            )
            for n in range(count)
        ]
        self.acknowledged: dict[str, tuple[str, float]] = {}  # id -> (outcome, unix time of the reply)
        self.submitted = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Client(self.url, NAMESPACE, POOL) as client:
                for payload, delay, cancel_after in self.plan:
                    job_id = cancel_id(payload["n"])
                    self._again(lambda: client.submit(payload, job_id, delay=delay))
                    self.submitted += 1
                    if cancel_after is not None:
                        time.sleep(cancel_after)
                        outcome = self._again(lambda: client.cancel(job_id))
                        self.acknowledged[job_id] = (outcome, time.time())
        except BaseException as exc:  # reported by the soak, not lost in a thread
            self.error = exc

    @staticmethod
    def _again(call: Any) -> Any:
        while True:
            try:
                return call()
            except QueueError:  # Redis is restarting
                time.sleep(0.1)


def good_id(n: int) -> str:
    return f"good-{n}"


def cancel_id(n: int) -> str:
    return f"cancel-{n}"


def malformed_ids(count: int) -> list[tuple[str, str]]:
    """(id, kind) for `count` malformed entries, the kinds taking turns."""
    kinds = list(MALFORMED_ENTRIES)
    return [(f"bad-{kinds[i % len(kinds)]}-{i}", kinds[i % len(kinds)]) for i in range(count)]


def inject(url: str, entries: list[tuple[str, str]]) -> None:
    client = redis.Redis.from_url(url)
    try:
        for entry_id, kind in entries:
            client.xadd(PoolKeys(NAMESPACE, POOL).stream, {"id": entry_id, **MALFORMED_ENTRIES[kind]})
    finally:
        client.close()


def chaos_plan(jobs: int, rng: random.Random) -> list[tuple[float, str]]:
    """(progress fraction, event): kills and stops spread over the run, one Redis restart and
    malformed entries written at several points."""
    kills, terms = max(3, jobs // 2000), max(6, jobs // 1000)  # SIGTERMs meet drains mid-ack
    events = [(rng.uniform(0.05, 0.9), "kill") for _ in range(kills)]
    events += [(rng.uniform(0.05, 0.9), "term") for _ in range(terms)]
    events += [(rng.uniform(0.3, 0.6), "restart-redis")]
    events += [(fraction, "inject") for fraction in (0.1, 0.4, 0.7)]
    return sorted(events)


async def configure(queue, max_length: int) -> None:
    await queue.configure(max_length=max_length)
    await queue.close()


def finished(client: Client) -> tuple[int, Any]:
    stats = client.status()
    return stats.succeeded + stats.dead_lettered + stats.cancelled, stats


def run_soak(
    jobs: int,
    workers: int = 4,
    concurrency: int = 16,
    seed: int | None = None,
    directory: Path | None = None,
    timeout: float = 600,
    say=print,
) -> Report:
    seed = seed if seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    own_directory = directory is None
    directory = directory or Path(tempfile.mkdtemp(prefix="jobpool-soak-"))
    server = RedisServer(directory, appendfsync="always")
    server.start()
    pool = Workers(server.url, directory, concurrency, capacity=2 * jobs + 1000)
    report = Report(jobs=jobs)
    bad = malformed_ids(max(len(MALFORMED_ENTRIES), jobs // 100))
    report.malformed = len(bad)
    queue = open_queue(server.url, NAMESPACE, POOL)
    asyncio.run(configure(queue, max(SUBMIT_CHUNK, jobs // BACKLOG_SHARE)))
    say(
        f"soak: {jobs:,} jobs, {len(bad)} malformed entries, {workers} workers x {concurrency} "
        f"slots, seed {seed}, logs in {directory}"
    )
    started = time.monotonic()
    try:
        for _ in range(workers):
            pool.start()
        submitter = Submitter(server.url, jobs, rng)
        submitter.start()
        canceller = Canceller(server.url, max(10, jobs // CANCEL_SHARE), rng.random())
        report.cancel_jobs = canceller.count
        canceller.start()
        plan = chaos_plan(jobs, rng)
        injected = 0
        with Client(server.url, NAMESPACE, POOL) as client:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    done, stats = finished(client)
                except QueueError:  # Redis is restarting
                    time.sleep(0.05)
                    continue
                total = jobs + len(bad) + canceller.count
                while plan and plan[0][0] * total <= done:
                    _, event = plan.pop(0)
                    if event == "kill":
                        pool.replace(rng, signal.SIGKILL)
                        report.kills += 1
                    elif event == "term":
                        pool.replace(rng, signal.SIGTERM)
                        report.terms += 1
                    elif event == "restart-redis":
                        server.restart()
                        report.redis_restarts += 1
                    else:
                        share = bad[injected : injected + -(-len(bad) // 3)]
                        inject(server.url, share)
                        injected += len(share)
                if (
                    injected < len(bad)
                    and submitter.submitted > 0
                    and not any(e == "inject" for _, e in plan)
                ):
                    inject(server.url, bad[injected:])
                    injected = len(bad)
                if (
                    not plan
                    and not submitter.is_alive()
                    and not canceller.is_alive()
                    and done >= total
                    and stats.waiting + stats.in_flight + stats.delayed + stats.scheduled == 0
                ):
                    break
                if submitter.error is not None or canceller.error is not None:
                    report.problems.append(
                        f"the submitter or canceller failed: {submitter.error or canceller.error!r}"
                    )
                    break
                if time.monotonic() > deadline:
                    report.problems.append(f"not finished after {timeout:.0f}s: {stats.as_status()}")
                    break
                time.sleep(0.05)
            report.seconds = time.monotonic() - started
            report.submit_retries = submitter.retries
            report.scheduled = submitter.scheduled
            report.workers_left = pool.stop_all()
            report.workers_started = pool.started
            check(client, report, {i for i, _ in bad})
            check_cancels(client, report, canceller, directory / "starts.log")
    finally:
        pool.stop_all(timeout=5)
        server.stop()
        if own_directory and report.ok:
            shutil.rmtree(directory, ignore_errors=True)
    return report


def check(client: Client, report: Report, bad_ids: set[str]) -> None:
    """The end state: every good job once in results with its own result, every malformed
    entry dead-lettered with a payload error, nothing waiting, running or delayed."""
    stats = client.status()
    results = client.results()
    seen = [r.id for r in results]
    good = {good_id(n) for n in range(report.jobs)}
    report.results = sum(1 for job_id in seen if job_id in good)  # the canceller's: check_cancels
    report.duplicates, report.retried = stats.duplicates, stats.retried
    if len(seen) != len(set(seen)):
        report.problems.append(f"{len(seen) - len(set(seen))} jobs appear twice in results")
    if missing := good - set(seen):
        report.problems.append(f"{len(missing)} good jobs have no result, e.g. {sorted(missing)[:5]}")
    if wrong := [r.id for r in results if r.id in good and r.result != int(r.id.split("-")[1])]:
        report.problems.append(f"{len(wrong)} results are not their job's, e.g. {wrong[:5]}")
    dead = client.dead_letters()
    report.dead_letters = len(dead)
    dead_ids = {d.id for d in dead}
    if dead_ids != bad_ids:
        report.problems.append(
            f"dead letters: {len(bad_ids - dead_ids)} malformed entries "
            f"missing, {len(dead_ids - bad_ids)} others present, e.g. "
            f"{sorted(dead_ids - bad_ids)[:5]}"
        )
    if stats.waiting + stats.in_flight + stats.delayed + stats.scheduled or stats.waiting_by_priority:
        report.problems.append(
            f"left in the queue: waiting {stats.waiting} "
            f"({stats.waiting_by_priority} by level), in flight "
            f"{stats.in_flight}, delayed {stats.delayed}, scheduled {stats.scheduled}"
        )
    if report.kills == 0 and stats.duplicates:
        report.problems.append(f"{stats.duplicates} jobs ran twice with no worker killed")
    if report.workers_left:
        report.problems.append(f"worker processes still running: {report.workers_left}")


def check_cancels(client: Client, report: Report, canceller: Canceller, starts_log: Path) -> None:
    """The canceller's jobs: each ended once, succeeded or cancelled (never dead, never lost); one
    whose cancel said "cancelled" has no result and none started after that reply; the pool's
    cancelled counter is theirs."""
    succeeded = {r.id for r in client.results() if r.id.startswith("cancel-")}
    starts: dict[str, list[float]] = {}
    if starts_log.exists():
        for line in starts_log.read_text().splitlines():
            job_id, _, at = line.partition(" ")
            starts.setdefault(job_id, []).append(float(at))
            report.cancel_job_starts += 1
    for outcome, _ in canceller.acknowledged.values():
        report.cancels[outcome] = report.cancels.get(outcome, 0) + 1
    cancelled, lost, late, wrong = [], [], [], []
    for n in range(canceller.count):
        job_id = cancel_id(n)
        state = client.job(job_id)
        if state is not None and state.state == "cancelled":
            cancelled.append(job_id)
        elif job_id not in succeeded:
            lost.append((job_id, state.state if state else None))
        outcome, acknowledged_at = canceller.acknowledged.get(job_id, (None, 0.0))
        if outcome in ("cancelled", "was cancelled"):
            if job_id in succeeded:
                wrong.append(job_id)
            late += [job_id for at in starts.get(job_id, []) if at > acknowledged_at]
        elif outcome in ("unknown", "dead"):
            wrong.append(job_id)
    report.cancelled = len(cancelled)
    if lost:
        report.problems.append(
            f"{len(lost)} of the canceller's jobs neither succeeded nor were cancelled, e.g. {lost[:5]}"
        )
    if wrong:
        report.problems.append(
            f"{len(wrong)} cancels said one thing and the job did another, e.g. {wrong[:5]}"
        )
    if late:
        report.problems.append(
            f"{len(late)} jobs started after their cancel was acknowledged, e.g. {late[:5]}"
        )
    if client.status().cancelled != len(cancelled):
        report.problems.append(
            f"the pool counts {client.status().cancelled} cancelled jobs, "
            f"{len(cancelled)} of the canceller's are"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()
    report = run_soak(args.jobs, args.workers, args.concurrency, args.seed)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
