"""The web page: aiohttp handlers that read through the queue protocol and render HTML.

Figures come from the `Refresher` (one read per pool per interval for every viewer); lists of jobs
and one job are read when a page asks for them. Actions (replay, purge) are POSTs with a CSRF
token, shown and accepted only where the credential may do them; so is cancel, on the page of a
waiting, delayed or running job. Every link is relative, so the page works below any prefix (the
API server's service proxy)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..queue import QueueError, open_queue
from ..queue.browse import DEAD, DELAYED, RUNNING, SUCCEEDED, WAITING, JobPage, NotPermitted, open_browse
from ..queue.urls import redact_url
from . import render
from .discovery import discover_pools
from .live import Refresher, summary
from .render import Markup, fragment, join, quote
from .security import HEADERS, Csrf

log = logging.getLogger("jobpool.ui")
PAGE_SIZE = 50
DISCOVER_SECONDS = 30.0  # how often pools are looked for when none were named
PERMISSION_TTL = 60.0  # seconds a probed permission is trusted for showing buttons
TABS = (("queued", "waiting / running"), ("delayed", "delayed"), ("succeeded", "succeeded"))
DONE = {
    "replayed": "replayed {n} dead job(s): they wait in the queue again",
    "purged": "purged {n} dead job(s)",
    "cancelled": "cancelled {n} job(s): they will not run",
    "cancelling": "asked {n} running job(s) to stop: their workers cancel them at their next heartbeat",
    "finished": "nothing to cancel: {n} job(s) had finished or are unknown",
}
CANCELLABLE = (WAITING, DELAYED, RUNNING)


@dataclasses.dataclass(frozen=True)
class UiSettings:
    url: str
    namespaces: tuple[str, ...] | None  # None: every namespace
    pools: tuple[tuple[str, str], ...] = ()  # (namespace, pool); none: every pool found, again and again
    refresh: float = 2.0
    actions: bool = True  # False: no action is shown or accepted, whatever the credential may
    discover_every: float = DISCOVER_SECONDS

    @property
    def title(self) -> str:
        if self.namespaces is None:
            return "pools of every namespace"
        return "pools of " + ", ".join(self.namespaces)


@dataclasses.dataclass
class PoolHandle:
    namespace: str
    name: str
    queue: Any
    browse: Any
    may_change: bool = False
    probed_at: float = 0.0
    may_cancel: bool = False
    cancel_probed_at: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def path(self) -> str:
        """Its pages' path below pools/."""
        return f"{quote(self.namespace)}/{quote(self.name)}"


class UiState:
    def __init__(self, settings: UiSettings):
        self.settings = settings
        self.pools: dict[str, PoolHandle] = {}
        self.refresher = Refresher(
            {}, settings.refresh, before=self._discover if not settings.pools else None
        )
        self.show(settings.pools)
        self.csrf = Csrf()
        self.discovered_at = time.monotonic() if settings.pools else 0.0

    def show(self, pools: Any) -> list[Any]:
        """Show exactly these (namespace, pool) pairs; returns the queues of pools no longer shown."""
        wanted = {f"{ns}/{name}": (ns, name) for ns, name in pools}
        gone = [self.pools.pop(key).queue for key in list(self.pools) if key not in wanted]
        for key, (ns, name) in sorted(wanted.items()):
            if key not in self.pools:
                queue = open_queue(self.settings.url, ns, name)
                self.pools[key] = PoolHandle(ns, name, queue, open_browse(queue))
        self.refresher.show({key: pool.queue for key, pool in self.pools.items()})
        return gone

    async def _discover(self) -> None:
        """Find the pools again every `discover_every` seconds (before a refresh)."""
        if time.monotonic() - self.discovered_at < self.settings.discover_every:
            return
        self.discovered_at = time.monotonic()
        try:
            found = await discover_pools(self.settings.url, self.settings.namespaces)
        except Exception as exc:  # the figures go on for the pools already shown
            log.warning("cannot list the pools at %s: %s", self.credential(), type(exc).__name__)
            return
        for queue in self.show(found):
            await queue.close()

    async def may_change(self, pool: PoolHandle, fresh: bool = False) -> bool:
        """Whether the credential may replay and purge this pool's dead letters (and the chart
        allows actions at all); probed again after PERMISSION_TTL or when `fresh`."""
        if not self.settings.actions:
            return False
        if fresh or time.monotonic() - pool.probed_at > PERMISSION_TTL:
            try:
                pool.may_change = await pool.browse.may_change_dead_letters()
            except QueueError:
                pool.may_change = False
            pool.probed_at = time.monotonic()
        return pool.may_change

    async def may_cancel(self, pool: PoolHandle, fresh: bool = False) -> bool:
        """Whether the credential may cancel this pool's jobs (and the chart allows actions at all);
        probed again after PERMISSION_TTL or when `fresh`."""
        if not self.settings.actions:
            return False
        if fresh or time.monotonic() - pool.cancel_probed_at > PERMISSION_TTL:
            try:
                pool.may_cancel = await pool.browse.may_cancel()
            except QueueError:
                pool.may_cancel = False
            pool.cancel_probed_at = time.monotonic()
        return pool.may_cancel

    def credential(self) -> str:
        return redact_url(self.settings.url)

    async def close(self) -> None:
        await self.refresher.stop()
        await asyncio.gather(*(pool.queue.close() for pool in self.pools.values()))


STATE = web.AppKey("state", UiState)


def root_of(request: web.Request) -> str:
    """The relative way from this page up to the UI's root ("./", "../", ...)."""
    depth = request.path.count("/") - 1
    return "../" * depth if depth > 0 else "./"


def html_response(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    except QueueError as exc:  # unreachable, or refused: the message names the queue without its password
        response = html_response(
            render.page(
                "message.html",
                root=root_of(request),
                title="the queue failed",
                message=str(exc),
                status_class="notice",
                credential=request.app[STATE].credential(),
            ),
            status=502,
        )
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _pool(request: web.Request) -> PoolHandle:
    key = f"{request.match_info['namespace']}/{request.match_info['pool']}"
    pool = request.app[STATE].pools.get(key)
    if pool is None:
        raise web.HTTPNotFound(text=f"no pool {key!r} is shown here")
    return pool


def _page(request: web.Request, template: str, title: str, **values: Any) -> web.Response:
    state = request.app[STATE]
    return html_response(
        render.page(
            template,
            root=root_of(request),
            title=title,
            heading=values.pop("heading", title),
            credential=state.credential(),
            **values,
        )
    )


def _cells(view: dict[str, Any]) -> dict[str, Any]:
    error = view.get("error")
    return {
        "backlog": view.get("backlog", "—"),
        "waiting": view.get("waiting", "—"),
        "inFlight": view.get("inFlight", "—"),
        "delayed": view.get("delayed", "—"),
        "deadLetter": view.get("deadLetter", "—"),
        "workers": view.get("workers", "—"),
        "busySlots": view.get("busySlots", "—"),
        "totalSlots": view.get("totalSlots", "—"),
        "saturation": f"{view['saturation']:.2f}" if "saturation" in view else "—",
        "succeededPerSecond": view.get("succeededPerSecond", 0),
        "failedPerSecond": view.get("failedPerSecond", 0),
        "error": error or "",
    }


# -- pages --------------------------------------------------------------------------------------
async def pools_page(request: web.Request) -> web.Response:
    state = request.app[STATE]
    await state.refresher.ready()
    rows = []
    for key, pool in state.pools.items():
        view = summary(state.refresher.histories[key])
        rows.append(
            fragment(
                '<tr data-pool="$key"><td>$namespace</td><td><a href="pools/$link">$name</a>'
                '<div class="error" data-field="error">$error</div></td>'
                '<td data-field="backlog" class="num">$backlog</td><td data-field="waiting" class="num">$waiting</td>'
                '<td data-field="inFlight" class="num">$inFlight</td><td data-field="delayed" class="num">$delayed</td>'
                '<td data-field="deadLetter" class="num">$deadLetter</td>'
                '<td data-field="workers" class="num">$workers</td>'
                '<td class="num"><span data-field="busySlots">$busySlots</span> / '
                '<span data-field="totalSlots">$totalSlots</span></td>'
                '<td data-field="saturation" class="num">$saturation</td>'
                '<td>$backlogLine</td><td>$throughputLine <span class="rate">'
                '<span data-field="succeededPerSecond">$succeededPerSecond</span>/s</span></td></tr>',
                key=key,
                namespace=pool.namespace,
                name=pool.name,
                link=pool.path,
                backlogLine=sparkline("backlog", view),
                throughputLine=sparkline("throughput", view),
                **_cells(view),
            )
        )
    return _page(
        request,
        "pools.html",
        state.settings.title,
        rows=join(rows),
        interval=state.settings.refresh,
        empty="" if rows else "no pool found yet: pools appear once they have had a job",
    )


def sparkline(series: str, view: dict[str, Any]) -> Markup:
    values = view.get("history", {}).get(series, [])
    return fragment(
        '<svg class="spark" viewBox="0 0 120 24" preserveAspectRatio="none" role="img" '
        'aria-label="$series"><polyline data-series="$series" points="$points"/></svg>',
        series=series,
        points=render.sparkline_points(values),
    )


async def pool_page(request: web.Request) -> web.Response:
    state = request.app[STATE]
    pool = _pool(request)
    await state.refresher.ready()
    view = summary(state.refresher.histories[pool.key])
    tab = request.query.get("state", "queued")
    if tab not in dict(TABS):
        raise web.HTTPBadRequest(text=f"state must be one of {', '.join(dict(TABS))}, not {tab!r}")
    query = request.query.get("q", "").strip()
    after = request.query.get("after", "")
    found = Markup("")
    if query:
        try:
            job = await pool.browse.job(query)
        except NotPermitted as exc:
            job, found = None, fragment('<p class="notice">$message</p>', message=str(exc))
        if job is not None:
            found = fragment(
                '<p class="found">job <a href="$href">$id</a> is <span class="state $state">$state</span></p>',
                href=f"{quote(pool.name)}/job?id={quote(job.id)}",
                id=job.id,
                state=job.state,
            )
    cancel = None
    if tab != "succeeded" and await state.may_cancel(pool):

        def cancel(job_id: str) -> Markup:  # the page is pools/NS/POOL: its forms post to POOL/cancel
            return cancel_form(state, pool.key, job_id, back="pool", action=f"{quote(pool.name)}/cancel")

    table = await _jobs_table(pool, tab, after, query, cancel)
    tabs = join(
        [
            fragment(
                '<a class="tab$current" href="$href">$label</a>',
                current=" current" if key == tab else "",
                label=label,
                href=f"{quote(pool.name)}?state={key}",
            )
            for key, label in TABS
        ]
        + [fragment('<a class="tab" href="$href">dead letters</a>', href=f"{quote(pool.name)}/dead")]
    )
    return _page(
        request,
        "pool.html",
        f"pool {pool.name}",
        pool=pool.name,
        poolLink=quote(pool.name),
        poolPath=pool.path,
        poolKey=pool.key,
        namespace=pool.namespace,
        tab=tab,
        q=query,
        found=found,
        tabs=tabs,
        jobs=table,
        flash=flash(request),
        workerRows=workers_rows(view),
        **_cells(view),
    )


def workers_rows(view: dict[str, Any]) -> Markup:
    now = time.time()
    return join(
        [
            fragment(
                '<tr><td>$id</td><td class="num">$busy / $slots</td><td>$seen</td></tr>',
                id=w["id"],
                busy=w["busy"],
                slots=w["slots"],
                seen=render.ago(w["lastSeen"], now),
            )
            for w in view.get("workerList", [])
        ]
    )


async def _jobs_table(
    pool: PoolHandle, tab: str, after: str, query: str, cancel: Callable[[str], Markup] | None = None
) -> Markup:
    try:
        if tab == "queued":
            page = await pool.browse.queued(after or "0-0", PAGE_SIZE, query)
        elif tab == "delayed":
            page = await pool.browse.delayed(int(after) if after.isdigit() else 0, PAGE_SIZE)
        else:
            page = await pool.browse.succeeded(after or "0-0", PAGE_SIZE, query)
    except NotPermitted as exc:
        return fragment('<p class="notice">$message</p>', message=str(exc))
    return jobs_table(pool.name, page, tab, query, cancel)


def jobs_table(
    pool: str, page: JobPage, tab: str, query: str, cancel: Callable[[str], Markup] | None = None
) -> Markup:
    """The jobs of one tab; `cancel(id)`: a cancel form for each job that may be cancelled (None:
    the credential may not cancel)."""
    now = time.time()
    rows = []
    for job in page.jobs:
        when = {
            WAITING: render.ago(job.enqueued_at, now),
            RUNNING: f"running {render.duration(job.running_for)}",
            DELAYED: f"due {render.timestamp(job.due_at)}",
            SUCCEEDED: render.ago(job.finished_at, now),
        }.get(job.state, "")
        shown = render.short_json(job.result) if job.state == SUCCEEDED else render.short_json(job.payload)
        rows.append(
            fragment(
                '<tr class="job"><td><a href="$href">$id</a></td><td><span class="state $state">$state</span></td>'
                '<td>$task</td><td class="num">$attempts</td><td>$worker</td><td>$when</td>'
                "<td><code>$shown</code></td>$action</tr>",
                href=f"{quote(pool)}/job?id={quote(job.id)}",
                id=job.id,
                state=job.state,
                task=job.task or "",
                attempts=job.attempts,
                worker=job.worker or "",
                when=when,
                shown=shown,
                action=Markup("")
                if cancel is None
                else fragment(
                    "<td>$form</td>", form=cancel(job.id) if job.state in CANCELLABLE else Markup("")
                ),
            )
        )
    if not rows:
        return fragment(
            '<p class="empty">no $what jobs$matching</p>',
            what=dict(TABS)[tab],
            matching=f" matching {query!r}" if query else "",
        )
    more = Markup("")
    if page.next_after is not None:
        more = fragment(
            '<a class="next" href="$href">next page</a>',
            href=f"{quote(pool)}?state={tab}&after={quote(page.next_after)}&q={quote(query)}",
        )
    head = "result" if tab == "succeeded" else "payload"
    return fragment(
        '<table class="jobs"><thead><tr><th>id</th><th>state</th><th>task</th><th>attempts</th>'
        "<th>worker</th><th>when</th><th>$head</th>$actionHead</tr></thead><tbody>$rows</tbody></table>$more",
        head=head,
        rows=join(rows),
        more=more,
        actionHead=Markup("<th></th>" if cancel else ""),
    )


async def job_page(request: web.Request) -> web.Response:
    state = request.app[STATE]
    pool = _pool(request)
    job_id = request.query.get("id", "")
    if not job_id:
        raise web.HTTPBadRequest(text="give the job's id: job?id=ID")
    try:
        job = await pool.browse.job(job_id)
    except NotPermitted as exc:
        return _page(request, "message.html", f"job {job_id}", message=str(exc), status_class="notice")
    if job is None:
        return _page(
            request,
            "message.html",
            f"job {job_id}",
            status_class="notice",
            message=f"pool {pool.name} knows no job {job_id!r} (finished jobs are kept while "
            f"their result is retained)",
        )
    actions = Markup("")
    if job.state == DEAD and await state.may_change(pool):
        actions = action_forms(state, pool.key, [job.id], back="job")
    elif job.state in CANCELLABLE and await state.may_cancel(pool):
        actions = cancel_form(state, pool.key, job.id, back="job")
    now = time.time()
    return _page(
        request,
        "job.html",
        f"job {job.id}",
        pool=pool.name,
        poolPath=pool.path,
        namespace=pool.namespace,
        id=job.id,
        state=job.state,
        task=job.task or "—",
        attempts=job.attempts,
        worker=job.worker or "—",
        enqueued=f"{render.timestamp(job.enqueued_at)} ({render.ago(job.enqueued_at, now)})"
        if job.enqueued_at
        else "—",
        running=render.duration(job.running_for) if job.running_for is not None else "—",
        due=render.timestamp(job.due_at),
        failed=render.timestamp(job.failed_at),
        finished=render.timestamp(job.finished_at),
        progress="—" if job.progress is None else render.short_json(job.progress),
        payload=render.pretty_json(job.payload) if job.state != SUCCEEDED else "(not kept after success)",
        error=job.error or "—",
        result=render.pretty_json(job.result) if job.has_result else "—",
        flash=flash(request),
        actions=actions,
    )


def action_forms(state: UiState, pool: str, ids: list[str], back: str, everything: bool = False) -> Markup:
    """Replay and purge forms; purge asks for confirmation (a box to tick, and the page's confirm)."""
    hidden = join([fragment('<input type="hidden" name="id" value="$id">', id=i) for i in ids])
    if everything:
        hidden = Markup('<input type="hidden" name="all" value="1">')
    what = "all dead jobs" if everything else ("this dead job" if len(ids) == 1 else f"{len(ids)} dead jobs")
    return fragment(
        '<form class="action" method="post" action="$replayUrl">'
        '<input type="hidden" name="token" value="$replayToken">'
        '<input type="hidden" name="back" value="$back">$hidden'
        '<button type="submit" class="replay">replay $what</button></form>'
        '<form class="action purge" method="post" action="$purgeUrl" data-confirm="Delete $what for good?">'
        '<input type="hidden" name="token" value="$purgeToken"><input type="hidden" name="back" value="$back">$hidden'
        '<label><input type="checkbox" name="confirm" value="yes" required> delete for good</label>'
        '<button type="submit" class="purge">purge $what</button></form>',
        replayUrl="replay",
        purgeUrl="purge",
        replayToken=state.csrf.token(f"replay:{pool}"),
        purgeToken=state.csrf.token(f"purge:{pool}"),
        back=back,
        hidden=hidden,
        what=what,
    )


def cancel_form(state: UiState, pool: str, job_id: str, back: str, action: str = "cancel") -> Markup:
    """Cancel one job (README "Cancel"), after the page's confirm; `action`: the URL relative to the page."""
    return fragment(
        '<form class="action" method="post" action="$action" data-confirm="Cancel job $id?">'
        '<input type="hidden" name="token" value="$token"><input type="hidden" name="back" value="$back">'
        '<input type="hidden" name="id" value="$id">'
        '<button type="submit" class="cancel">cancel this job</button></form>',
        token=state.csrf.token(f"cancel:{pool}"),
        back=back,
        id=job_id,
        action=action,
    )


def flash(request: web.Request) -> Markup:
    done = request.query.get("done", "")
    count = request.query.get("n", "0")
    if done not in DONE or not count.isdigit():
        return Markup("")
    return fragment('<p class="flash">$message</p>', message=DONE[done].format(n=int(count)))


async def dead_page(request: web.Request) -> web.Response:
    state = request.app[STATE]
    pool = _pool(request)
    error_filter = request.query.get("error", "")
    after = request.query.get("after", "")
    may_change = await state.may_change(pool)
    try:
        page = await pool.browse.dead(after or "0-0", PAGE_SIZE, error_filter)
    except NotPermitted as exc:
        return _page(
            request, "message.html", f"dead letters of {pool.name}", message=str(exc), status_class="notice"
        )
    rows = []
    for job in page.jobs:
        rows.append(
            fragment(
                '<tr class="job"><td><a href="job?id=$idLink">$id</a></td><td class="num">$attempts</td>'
                "<td>$failed</td>"
                '<td><pre class="error-line">$error</pre></td><td><code>$payload</code></td><td>$actions</td></tr>',
                idLink=quote(job.id),
                id=job.id,
                attempts=job.attempts,
                failed=render.timestamp(job.failed_at),
                error=(job.error or "").strip().splitlines()[0] if job.error and job.error.strip() else "",
                payload=render.short_json(job.payload),
                actions=action_forms(state, pool.key, [job.id], back="dead") if may_change else Markup(""),
            )
        )
    more = Markup("")
    if page.next_after is not None:
        more = fragment(
            '<a class="next" href="dead?after=$after&amp;error=$error">next page</a>',
            after=quote(page.next_after),
            error=quote(error_filter),
        )
    bulk = (
        action_forms(state, pool.key, [], back="dead", everything=True)
        if may_change and page.jobs and not error_filter
        else Markup("")
    )
    rights = (
        "this credential may replay and purge dead letters"
        if may_change
        else "read-only: this credential may not replay or purge dead letters"
        if state.settings.actions
        else "read-only: actions are turned off for this page"
    )
    body = (
        fragment(
            '<table class="jobs dead"><thead><tr><th>id</th><th>attempts</th><th>failed at</th><th>error</th>'
            "<th>payload</th><th></th></tr></thead><tbody>$rows</tbody></table>$more",
            rows=join(rows),
            more=more,
        )
        if rows
        else fragment(
            '<p class="empty">no dead jobs$matching</p>',
            matching=f" with an error containing {error_filter!r}" if error_filter else "",
        )
    )
    return _page(
        request,
        "dead.html",
        f"dead letters of {pool.name}",
        pool=pool.name,
        poolPath=pool.path,
        namespace=pool.namespace,
        filter=error_filter,
        table=body,
        bulk=bulk,
        rights=rights,
        flash=flash(request),
    )


# -- actions ------------------------------------------------------------------------------------
async def _form(request: web.Request, action: str) -> tuple[UiState, PoolHandle, Any]:
    """The POSTed form of `action`, once its CSRF token is found valid for this pool."""
    state = request.app[STATE]
    pool = _pool(request)
    form = await request.post()
    # a field of a form without files is a str; Csrf.valid refuses anything but the token
    if not state.csrf.valid(form.get("token"), f"{action}:{pool.key}"):  # type: ignore[arg-type]
        log.warning("refused a %s of pool %s: no valid CSRF token", action, pool.key)
        raise web.HTTPForbidden(
            text="refused: the form's token is missing, expired or from another page; "
            "reload the page and try again"
        )
    return state, pool, form


async def _action(request: web.Request, action: str) -> web.Response:
    state, pool, form = await _form(request, action)
    if not await state.may_change(pool, fresh=True):
        log.warning("refused a %s of pool %s: the credential may not change dead letters", action, pool.key)
        raise web.HTTPForbidden(
            text=f"refused: this credential may not {action} dead letters of pool {pool.key}"
        )
    ids = [str(i) for i in form.getall("id", [])]
    everything = form.get("all") == "1"
    if not ids and not everything:
        raise web.HTTPBadRequest(text=f"{action}: give the dead jobs' ids (id=...) or all=1")
    if action == "purge" and form.get("confirm") != "yes":
        raise web.HTTPBadRequest(
            text="purge: tick the box to confirm that the dead jobs are deleted for good"
        )
    target = None if everything else ids
    try:
        count = await (
            pool.queue.replay(target) if action == "replay" else pool.queue.purge_dead_letters(target)
        )
    except QueueError as exc:
        raise web.HTTPBadGateway(text=f"{action} failed: {exc}") from None
    done = "replayed" if action == "replay" else "purged"
    log.info("%s %d dead job(s) of pool %s", done, count, pool.key)
    if form.get("back") == "job" and len(ids) == 1:
        raise web.HTTPSeeOther(f"job?id={quote(ids[0])}&done={done}&n={count}")
    raise web.HTTPSeeOther(f"dead?done={done}&n={count}")


async def cancel(request: web.Request) -> web.Response:
    state, pool, form = await _form(request, "cancel")
    if not await state.may_cancel(pool, fresh=True):
        log.warning("refused a cancel of pool %s: the credential may not cancel jobs", pool.key)
        raise web.HTTPForbidden(text=f"refused: this credential may not cancel jobs of pool {pool.key}")
    ids = [str(i) for i in form.getall("id", [])]
    if not ids:
        raise web.HTTPBadRequest(text="cancel: give the jobs' ids (id=...)")
    try:
        outcomes = await pool.queue.cancel(ids)
    except QueueError as exc:
        raise web.HTTPBadGateway(text=f"cancel failed: {exc}") from None
    counts = {
        done: sum(1 for outcome in outcomes.values() if outcome == done)
        for done in ("cancelled", "cancelling")
    }
    log.info(
        "cancel of pool %s: %s", pool.key, ", ".join(f"{i} {outcome}" for i, outcome in outcomes.items())
    )
    done = next((done for done, n in counts.items() if n), "finished")
    count = counts.get(done) or len(ids)
    if form.get("back") == "job" and len(ids) == 1:
        raise web.HTTPSeeOther(f"job?id={quote(ids[0])}&done={done}&n={count}")
    raise web.HTTPSeeOther(f"../{quote(pool.name)}?done={done}&n={count}")


async def replay(request: web.Request) -> web.Response:
    return await _action(request, "replay")


async def purge(request: web.Request) -> web.Response:
    return await _action(request, "purge")


# -- live figures, static files, health ----------------------------------------------------------
async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the figures of every pool after each refresh, the same for everyone."""
    refresher = request.app[STATE].refresher
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    subscriber = refresher.subscribe()
    try:
        await response.write(f"retry: 2000\ndata: {json.dumps(refresher.view())}\n\n".encode())
        while True:
            try:
                event = await asyncio.wait_for(subscriber.get(), timeout=15)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if event is None:
                break
            await response.write(f"data: {event}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        refresher.unsubscribe(subscriber)
    return response


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    types = {
        "ui.js": "application/javascript",
        "live-worker.js": "application/javascript",
        "ui.css": "text/css",
    }
    if name not in types:
        raise web.HTTPNotFound()
    return web.Response(
        body=render.static_file(name), content_type=types[name], headers={"Cache-Control": "max-age=300"}
    )


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def build_app(settings: UiSettings) -> web.Application:
    app = web.Application(middlewares=[security_headers])
    app[STATE] = UiState(settings)

    async def start(app: web.Application) -> None:
        app[STATE].refresher.start()

    async def stop(app: web.Application) -> None:
        await app[STATE].close()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    app.router.add_get("/", pools_page)
    app.router.add_get("/pools/{namespace}/{pool}", pool_page)
    app.router.add_get("/pools/{namespace}/{pool}/job", job_page)
    app.router.add_get("/pools/{namespace}/{pool}/dead", dead_page)
    app.router.add_post("/pools/{namespace}/{pool}/replay", replay)
    app.router.add_post("/pools/{namespace}/{pool}/purge", purge)
    app.router.add_post("/pools/{namespace}/{pool}/cancel", cancel)
    app.router.add_get("/events", events)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/healthz", healthz)
    return app
