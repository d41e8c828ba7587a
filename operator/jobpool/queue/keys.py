"""Key names of one pool. Every key carries the hash tag `{jobpool:<namespace>/<pool>}`,
so a pool lives on one Redis Cluster shard and `delete_all` can find exactly its keys."""

from __future__ import annotations

import dataclasses

from ..contract import HASH_TAG

GROUP = "workers"  # the one consumer group per pool
RELEASED_CONSUMER = "released"  # owner of entries given back on drain, reclaimed at once
# Jobs with a priority or a fairness key wait outside the stream (the library's prelude names
# these keys from the `priorities` key, the same way): per level a ring of fairness keys
# "ready:<level>", per level and key a list of jobs "fair:<level>:<key>".
PRIORITIES, READY, FAIR = "priorities", "ready:", "fair:"
STREAM_TURN = ""  # in the ring of level 0, the turn of the stream's own jobs (no key, level 0)


@dataclasses.dataclass(frozen=True)
class PoolKeys:
    namespace: str
    pool: str

    @property
    def tag(self) -> str:
        return HASH_TAG.format(namespace=self.namespace, pool=self.pool)

    def key(self, name: str) -> str:
        return f"{self.tag}:{name}"

    @property
    def stream(self) -> str:  # waiting + in-flight entries
        return self.key("stream")

    @property
    def live(self) -> str:  # ids that are waiting, in flight or delayed
        return self.key("live")

    @property
    def delayed(self) -> str:  # ZSET id -> due time (ms)
        return self.key("delayed")

    @property
    def delayed_jobs(self) -> str:  # HASH id -> "<attempts>:<replayed>:<payload>"
        return self.key("delayed-jobs")

    @property
    def scheduled(self) -> str:  # ZSET id -> run-at time (ms) of submitted jobs not due yet;
        return self.key("scheduled")  # their entries wait in delayed_jobs, as retries' do

    @property
    def priorities(self) -> str:  # HASH level -> jobs waiting outside the stream at that level
        return self.key(PRIORITIES)

    def ready(self, level: int) -> str:  # LIST: the ring of fairness keys with jobs at `level`
        return self.key(f"{READY}{level}")

    def fair(self, level: int, fairness_key: str) -> str:  # LIST of one (level, key)'s jobs
        return self.key(f"{FAIR}{level}:{fairness_key}")

    @property
    def express(self) -> str:  # HASH entry id -> consumer holding it: a job with a priority
        return self.key("express")  # or key delivered past entries the group has not read yet

    @property
    def progress(self) -> str:  # HASH id -> the last progress (JSON) of a running job
        return self.key("progress")

    @property
    def errors(self) -> str:  # HASH id -> the last error of a job that will be retried
        return self.key("errors")

    @property
    def cancelled(self) -> str:  # ZSET id -> when it was cancelled (ms), the newest 10,000
        return self.key("cancelled")

    @property
    def cancel_requests(self) -> str:  # HASH entry id -> job id of a running job to cancel
        return self.key("cancel-requests")

    @property
    def dead(self) -> str:  # dead-letter stream
        return self.key("dead")

    @property
    def dead_ids(self) -> str:  # HASH id -> dead-letter entry id
        return self.key("dead-ids")

    @property
    def results(self) -> str:  # results stream (capped), read by `jobpool results`
        return self.key("results")

    @property
    def ended(self) -> str:  # stream of the ids of jobs that ended without a result (dead,
        return self.key("ended")  # cancelled), the newest ~10,000: what result(id) waits on besides results

    @property
    def result_prefix(self) -> str:  # result:<id> strings with a TTL, read by `result(id)`
        return self.key("result:")

    def result(self, job_id: str) -> str:
        return self.result_prefix + job_id

    @property
    def counters(self) -> str:
        return self.key("counters")

    @property
    def config(self) -> str:
        return self.key("config")

    @property
    def memory(self) -> str:  # HASH sample -> "used:maxmemory:ms", added -> bytes since
        return self.key("memory")

    @property
    def workers(self) -> str:  # HASH consumer -> JSON {slots, busy, lastSeen, expiresAt}
        return self.key("workers")

    @property
    def tasks(self) -> str:  # HASH task name -> ms until which a live worker serves it
        return self.key("tasks")

    @property
    def reclaim_gate(self) -> str:  # set for one interval by the worker that reclaims
        return self.key("reclaim-gate")

    @property
    def reclaim_cursor(self) -> str:  # XAUTOCLAIM cursor, so the whole pending list is scanned
        return self.key("reclaim-cursor")

    @property
    def scan_pattern(self) -> str:
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in self.tag)
        return escaped + ":*"
