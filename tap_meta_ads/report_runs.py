"""An account's report runs: submitted, polled, collected, resubmitted or split, in windows, under the caps.

Why a module of its own: ``insights.py`` is the stream's side (an account's days and windows, STATE marks,
writing); this is the report runs' life cycle on the account's chain thread (``Runner``), what it hands the
writer (``Rows``, ``Progress``, ``Proven``), and the run's one poller (``ReportPoller``). The stream gives the
runner its calls, caps and bounds through the few methods the runner uses (``InsightsStream``).

One poller for every account's report runs: each runner polled its own runs, one call a poll, so 50 accounts
with 5 runs each sent 250 polls a round from 50 threads. The poller sends the polls that are due together in
Meta's batch requests (up to 50 a call; Graph API, "Making batch requests"; Airbyte's source-facebook-marketing
polls its report runs the same way, through the Business SDK's ``FacebookAdsApiBatch``). Each poll in a batch
still counts against its account's budget at Meta, and its answer carries that account's usage headers, which
pace the account as a call of its own would. A poll the batch could not answer (an error of its own, a
throttle, a timed-out ``null``, or the batch call failing) goes back to its runner, which polls that run alone
through the error table and its retries: errors keep one home.
"""

from __future__ import annotations

import datetime
import heapq
import itertools
import json
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from tap_meta_ads.errors import GraphAPIError, ReportRunLostError
from tap_meta_ads.pages import CursorPaginator, GraphPage
from tap_meta_ads.prefetch import WriterAt
from tap_meta_ads.reconcile import Reconciliation
from tap_meta_ads.retries import retry_reason
from tap_meta_ads.usage import Usage

if TYPE_CHECKING:
    from tap_meta_ads.insights import InsightsStream
    from tap_meta_ads.partitions import AccountFetch

T = TypeVar("T")

#: The object levels, coarse to fine: the order a failing report is split in.
SPLIT_LEVELS = ("campaign", "adset", "ad")
STATUS_COMPLETED = "Job Completed"
FAILED_STATUSES = frozenset({"Job Failed", "Job Skipped"})

#: The poll interval grows by this factor after each poll of a run that is not done, up to 12x the first.
POLL_GROWTH = 1.5
POLL_CAP_FACTOR = 12.0
#: A run that reports progress is polled again when, at the pace it has shown, it should be done (plus this
#: share), if that is sooner than the growing interval; never sooner than this share of the first interval.
#: Growth alone found a run of 10 s complete after 13-15 s (polls at 1.7, 4.2, 7.9, 13.5 s), a third more than
#: the run itself on every round of report runs. Meta's ``async_percent_completion`` is coarse and may stall
#: or jump: a guess that is early costs one poll more, and the growing interval stays the latest poll.
PREDICTED_POLL_MARGIN = 0.05
PREDICTED_POLL_FLOOR = 0.25


@dataclass
class Job:
    """One report run to get through: a window (or part of one), its attempts, its polling."""

    window: int
    since: datetime.date
    until: datetime.date
    scope: tuple[str, tuple[str, ...]] | None = None  # (level, ids) for ``filtering``; None = the account
    attempts: int = 0
    run_id: str | None = None
    polls: int = 0
    interval: float = 0.0
    next_poll: float = 0.0
    percent: int = -1
    progress_at: float = 0.0
    submitted_at: float = 0.0
    ready: bool = False  # complete at Meta, its rows not read yet (the account waits for the writer)

    def describe(self) -> str:
        """``2025-03-01..2025-03-07`` plus the scope, for log lines."""
        text = f"{self.since}..{self.until}"
        if self.scope:
            level, ids = self.scope
            text += f" ({len(ids)} {level}{'s' if len(ids) > 1 else ''})"
        return text


@dataclass
class Plan:
    """What one account's run covers: its windows, and the day up to which it is complete."""

    since: datetime.date
    until: datetime.date
    windows: list[tuple[datetime.date, datetime.date]]
    resumed: bool = False


#: A report run's rows before any run of the stream has been read (the bytes of about 1,000 rows with every field,
#: as Meta sends them); after that, the last run's real size.
FIRST_RUN_BYTES_GUESS = 4 * 1024 * 1024
#: How often an account whose report runs are complete checks whether the writer has reached it.
AWAIT_WRITER_SECONDS = 0.1
#: Polls in one batch call: Meta's batch requests take at most 50.
POLLS_PER_CALL = 50
#: Runs due within this many seconds of the first one due are polled in the same call (fewer, fuller calls).
POLL_GATHER_SECONDS = 0.25
#: The longest a runner waits for its poller's answers before it looks at the writer and the run again.
POLL_INBOX_SECONDS = 1.0
#: Batch calls that fail in a row (after their retries) before the poller stops batching for the rest of the
#: run: a Meta that refuses batches (an app or a version without them) costs three calls, not one per round.
BATCH_FAILURES_BEFORE_ALONE = 3
HTTP_OK = 200


@dataclass(frozen=True)
class PollAnswer:
    """One poll's answer out of a batch: its HTTP status, headers and decoded body."""

    code: int
    headers: dict[str, str]
    body: Any


#: What sends one batch of polls: (the account whose call carries the batch, run ids) -> one answer per run,
#: ``None`` where Meta answered nothing (a sub-request that timed out).
SendPolls = Callable[["AccountFetch", list[str]], list[PollAnswer | None]]


@dataclass(eq=False)
class _Watch:
    """One report run the poller polls for a runner, once, when due."""

    job: Job
    run_id: str
    account: AccountFetch
    inbox: queue.SimpleQueue[tuple[Job, str, PollAnswer | None]]
    gone: threading.Event  # the runner has ended: nobody reads its inbox
    send: SendPolls
    logger: logging.Logger


class ReportPoller:
    """The run's one poller: every account's report runs, polled when due, up to 50 in a batch call.

    Runners hand it a run with its due time (``watch``); it sends the polls that are due together, and hands
    each answer back to its runner's inbox, where the runner reads the status as it read its own polls. One
    thread, started with the first run watched and stopped at the run's end (``close``).
    """

    def __init__(self) -> None:
        self._due: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._failures = 0  # batch calls failed in a row

    def watch(self, watch: _Watch) -> None:
        """Poll ``watch.job``'s run once at ``job.next_poll``; after ``close`` its runner polls it alone."""
        with self._cond:
            if self._closed:
                watch.inbox.put((watch.job, watch.run_id, None))
                return
            heapq.heappush(self._due, (watch.job.next_poll, next(self._order), watch))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tap-meta-ads-poller", daemon=True)
                self._thread.start()
            self._cond.notify()

    def close(self) -> None:
        """The run has ended: the thread stops; runs still watched are polled by their runners, if any remain."""
        with self._cond:
            self._closed = True
            left, self._due = self._due, []
            self._cond.notify_all()
        for _, _, watch in left:
            watch.inbox.put((watch.job, watch.run_id, None))

    def _next_batch(self) -> list[_Watch] | None:
        """The runs due now (and within ``POLL_GATHER_SECONDS``), at most ``POLLS_PER_CALL``; None once closed.

        A run of an account Meta holds (a throttle) waits until its account may call again.
        """
        with self._cond:
            while True:
                if self._closed:
                    return None
                now = time.monotonic()
                if self._due and self._due[0][0] <= now:
                    break
                self._cond.wait(self._due[0][0] - now if self._due else None)
            batch: list[_Watch] = []
            later: list[tuple[float, int, _Watch]] = []
            while self._due and len(batch) < POLLS_PER_CALL and self._due[0][0] <= now + POLL_GATHER_SECONDS:
                entry = heapq.heappop(self._due)
                watch = entry[2]
                if watch.gone.is_set():
                    continue
                held = watch.account.pacer.held_for()
                if held > 0:
                    later.append((now + held, entry[1], watch))
                else:
                    batch.append(watch)
            for entry in later:
                heapq.heappush(self._due, entry)
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if not batch:
                continue
            answers: list[PollAnswer | None] = [None] * len(batch)  # None: the runner polls its run alone
            if self._failures < BATCH_FAILURES_BEFORE_ALONE:
                answers = self._send(batch)
            for watch, answer in zip(batch, answers, strict=True):
                watch.inbox.put((watch.job, watch.run_id, answer))

    def _send(self, batch: list[_Watch]) -> list[PollAnswer | None]:
        """One batch call polling ``batch``; each answer's usage headers paced on its own account."""
        first = batch[0]
        sent_at = time.monotonic()
        try:
            answers = first.send(first.account, [w.run_id for w in batch])
        except Exception as exc:  # noqa: BLE001 - each runner polls its run alone, through the error table
            self._failures += 1
            reason = str(exc).partition("\n")[0] or retry_reason(exc)[0]  # the tap's errors: one line, no token
            alone = self._failures >= BATCH_FAILURES_BEFORE_ALONE
            first.logger.warning(
                "Polling %d report runs in one batch call failed (%s); each is polled alone%s",
                len(batch),
                reason,
                f" for the rest of the run ({self._failures} batch calls failed in a row)" if alone else "",
            )
            return [None] * len(batch)
        self._failures = 0
        for watch, answer in zip(batch, answers, strict=True):
            if answer is not None:
                account = watch.account
                wait = account.pacer.observe(Usage.from_headers(answer.headers), sent_at=sent_at)
                account.pace_wait = max(account.pace_wait, wait)
        return answers


@dataclass
class Rows:
    """The pages of one completed report run, on their way from the chain to the writer.

    The pages keep their rows as Meta sent them (raw JSON, a view of each body: ``pages.GraphPage``) until the
    writer decodes them (``decode``). Decoded on the chain's thread, a row waiting for the writer held about
    14 KB of dicts, Decimals and lists for its 3 KB of JSON: the read-ahead's byte bound then counted an
    estimate, and fewer runs fit in it (bench_accounts.py). Now what waits is the bodies, counted exactly.
    """

    pages: list[GraphPage]
    body_bytes: int
    job: Job
    #: the job's window is complete with this run: its days are covered (``Reconciliation.cover``)
    covers: tuple[datetime.date, datetime.date] | None = None
    #: read within room the chain reserved (``prefetch.ReadAhead.reserve``): the feed never holds the chain back
    reserved: bool = True

    def decode(self, decode_rows: Callable[[msgspec.Raw], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Every row of the run, in order, built now (all before any is written: a bad page fails the run whole)."""
        rows: list[dict[str, Any]] = []
        for page in self.pages:
            rows += decode_rows(page.rows) if isinstance(page.rows, msgspec.Raw) else page.rows
        return rows


@dataclass
class Proven:
    """Meta accepted the account's first report run: the token, version and fields work (``prefetch.py``)."""

    proves_run: bool = True
    body_bytes: int = 0


@dataclass
class Progress:
    """The days an account's report is complete through: the writer saves it in STATE after the rows before it."""

    progress: dict[str, Any]


class RunFailedError(Exception):
    """A report run ended without rows (failed, skipped, stuck, results lost): resubmit or split it."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def at_once(work: Callable[[Job], T], jobs: list[Job], name: str) -> list[T]:
    """``work`` of each job, the jobs on threads of their own (one job: on this thread); results in order.

    For an account's calls that do not depend on each other (its runs' submits, its completed runs' pages). The
    threads last for this batch only: kept for a runner's life, 100 accounts' idle threads were most of a run's
    threads at 150 accounts (up to 190, bench_accounts.py).
    """
    if len(jobs) <= 1:
        return [work(job) for job in jobs]
    pool = ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix=name)
    try:
        return list(pool.map(work, jobs))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # an exception does not wait for the other jobs


def next_poll(interval: float, first: float, elapsed: float, percent: int) -> tuple[float, float]:
    """After a poll of a run not yet done: its next interval, and the wait before its next poll.

    The interval grows by ``POLL_GROWTH`` up to ``POLL_CAP_FACTOR`` times the first; the wait is that interval,
    or sooner when the run's progress so far (``percent`` after ``elapsed`` seconds) says it should be done
    sooner (see ``PREDICTED_POLL_MARGIN``).
    """
    interval = min(first * POLL_CAP_FACTOR, interval * POLL_GROWTH)
    wait = interval
    if 0 < percent < 100:  # noqa: PLR2004 - at the pace shown so far, the run is done in ``remaining``
        remaining = elapsed * (100 - percent) / percent
        wait = min(wait, max(remaining * (1 + PREDICTED_POLL_MARGIN), first * PREDICTED_POLL_FLOOR))
    return interval, wait


class Runner:
    """One account's report: windows in order, report runs in flight, the contiguous-days frontier."""

    def __init__(self, stream: InsightsStream, account: AccountFetch, plan: Plan) -> None:
        self.stream = stream
        self.account = account
        self.context = account.context
        self.plan = plan
        self.params = stream.report_params()
        self.pending: deque[Job] = deque()
        self.running: list[Job] = []
        self.open_parts: dict[int, int] = {}
        self.next_window = 0
        self.frontier = 0  # windows before this index are complete
        self.done: set[int] = set()
        self.floor = plan.since
        self.marks: list[Progress] = []
        self.cap = stream.report_runs_cap
        self.key = (stream.name, str(account.context["account_id"]))  # the chain's key in the writer's order
        self.poller = stream.report_poller
        self.inbox: queue.SimpleQueue[tuple[Job, str, PollAnswer | None]] = queue.SimpleQueue()
        self.gone = threading.Event()  # set when this runner ends: the poller drops its runs
        self._accepted = False  # Meta accepted one of the account's report runs: the others may go at once
        self._pages_lock = threading.Lock()

    # -- the loop ------------------------------------------------------------------------------------

    def rows(self) -> Iterator[Rows | Progress | Proven]:
        """Every row of the plan, one chunk per report run as it completes; a progress mark after each window.

        Runs on the account's chain thread: the marks are written to STATE by the writer (``write_chain``),
        after the rows before them, so a STATE never covers rows that were only fetched.
        """
        self._save(done_through=None)
        yield from self._marks()
        try:
            yield from self._loop()
        finally:
            self.gone.set()  # (the chain tells the cap it needs no more places: ``InsightsStream.fetch_chain``)
            for job in self.running:  # a run that stops early gives its running report runs' places back
                if not job.ready:
                    self.cap.give(self.key)

    def _loop(self) -> Iterator[Rows | Progress | Proven]:
        """Submit and poll; read a completed run's rows when the writer is here or the run's byte bound has room.

        An account ahead of the writer reads the rows of its completed runs only within the run-wide byte bound
        (``ReadAhead.reserve``); beyond it they wait at Meta until the writer reaches the account. Reading rows
        only once the writer was here made the rows of every account wait for the accounts before them: 50
        accounts read their completed runs' pages one account after another (bench_accounts.py, 9.15x the
        critical-path bound). Every wait here ends: the writer comes, or never will (``WriterAt.NEVER``: it
        left or went past this account, or the run stopped), and the chain then ends.
        """
        proven = False
        while True:
            self._fill()
            if not self.running:
                if not self.pending and self.next_window >= len(self.plan.windows):
                    return  # every window read
                if self.stream.writer_at(self.context) is WriterAt.NEVER:
                    return
                time.sleep(AWAIT_WRITER_SECONDS)  # no place in the run's cap yet: nearer accounts come first
                continue
            if not proven:
                proven = True
                yield Proven()
            writer = self.stream.writer_at(self.context)
            if writer is WriterAt.NEVER:
                return  # nobody will take these rows; ``rows`` gives the report runs' places back
            job = next((j for j in self.running if j.ready), None)
            reserved = self._reserve(writer) if job is not None else None
            if job is None or reserved is None:
                job = self._poll_next(wait_for_writer=job is not None)
                if job is None:
                    continue
                reserved = self._reserve(self.stream.writer_at(self.context))
                if reserved is None:
                    continue
            batch = [(job, reserved), *self._more_to_read(job)]
            for (job, reserved), outcome in zip(batch, self._collect_all([j for j, _ in batch]), strict=True):
                self.running.remove(job)  # its place in the cap was given back when it completed
                if isinstance(outcome, RunFailedError):
                    self.stream.release_ahead(reserved)
                    self._failed(job, outcome)
                    continue
                size = sum(page.body_bytes for page in outcome)
                self.stream.last_run_bytes = size
                self.stream.release_ahead(reserved)  # the queue counts the run's real size from here
                yield Rows(outcome, size, job, covers=self._part_done(job.window))
                yield from self._marks()

    def _more_to_read(self, first: Job) -> list[tuple[Job, int]]:
        """The other completed runs whose rows may be read beside ``first``'s now, each with its reservation."""
        more: list[tuple[Job, int]] = []
        for job in self.running:
            if job is first or not job.ready:
                continue
            reserved = self._reserve(self.stream.writer_at(self.context))
            if reserved is None:
                break
            more.append((job, reserved))
        return more

    def _collect_all(self, jobs: list[Job]) -> list[list[GraphPage] | RunFailedError]:
        """The rows of each completed run (or why there are none), their pages read concurrently.

        A run's pages follow one cursor, one after another; an account's completed runs do not depend on each
        other, so they are read at once: read one run after another, the writer waited at every account of 50
        for the rest of its runs' pages (about 2 s an account at 0.1 s a call, bench_accounts.py).
        """
        return at_once(self._collect_or_failure, jobs, "rows")

    def _collect_or_failure(self, job: Job) -> list[GraphPage] | RunFailedError:
        try:
            return self._collect(job)
        except RunFailedError as exc:
            return exc

    def _reserve(self, writer: WriterAt) -> int | None:
        """Bytes reserved to read a completed run's rows now (0: the writer is here, nothing to reserve); None: wait."""
        if writer is WriterAt.NOW:
            return 0
        if writer is WriterAt.NEVER:
            return None
        size = self.stream.last_run_bytes
        return size if self.stream.reserve_ahead(self.context, size) else None

    def _poll_next(self, *, wait_for_writer: bool) -> Job | None:
        """The next poll answer the poller hands back; the run if it just completed, else None.

        ``wait_for_writer``: a completed run waits for the writer or for room, so the wait is short
        (``AWAIT_WRITER_SECONDS``) and the caller looks again; otherwise at most ``POLL_INBOX_SECONDS``, so the
        runner still notices a writer that will never come. An answer the batch did not give (an error, a
        throttle, nothing) is a poll of this run alone, through the error table and its retries.
        """
        if all(j.ready for j in self.running):  # every run is complete: the writer is still on an earlier account
            time.sleep(AWAIT_WRITER_SECONDS)
            return None
        try:
            first = self.inbox.get(timeout=AWAIT_WRITER_SECONDS if wait_for_writer else POLL_INBOX_SECONDS)
        except queue.Empty:
            return None
        done = self._answer(*first)
        # The poller answers an account's runs together: read them all now, so their rows are read at once
        # (``_collect_all``), not one run per pass of the loop.
        while True:
            try:
                more = self.inbox.get_nowait()
            except queue.Empty:
                break
            done = self._answer(*more) or done
        return done

    def _answer(self, job: Job, run_id: str, answer: PollAnswer | None) -> Job | None:
        """Read one poll answer: the run if it just completed, else None (polled again later, or failed)."""
        if job.run_id != run_id or job.ready or job not in self.running:
            return None  # an answer about a run this runner has moved on from
        try:
            if answer is not None and answer.code == HTTP_OK and isinstance(answer.body, dict):
                done = self._status(job, answer.body)
            else:
                done = self._poll(job)
        except RunFailedError as exc:
            self.running.remove(job)
            self.cap.give(self.key)
            self._failed(job, exc)
            return None
        if not done:
            self._watch(job)
            return None
        job.ready = True
        self.cap.give(self.key)  # complete: it no longer runs at Meta, whether or not its rows wait there for room
        return job

    def _watch(self, job: Job) -> None:
        """Have the run's poller poll ``job`` at ``job.next_poll``."""
        assert job.run_id is not None
        watch = _Watch(job, job.run_id, self.account, self.inbox, self.gone, self.stream.poll_batch, self.stream.logger)
        self.poller.watch(watch)

    def _fill(self) -> None:
        """Submit jobs while fewer than ``in_flight`` run, admitting windows only near the frontier.

        The jobs that get a place are submitted at once (``_submit_all``): one after another, an account's ten
        report runs took ten of Meta's answers (0.2-2 s each) before the last one started to run. The account's
        first report run goes alone: a request Meta refuses (a bad field, a day before its 37 months) is then
        sent once, not once per place.
        """
        while batch := self._places(1 if not self._accepted else self.stream.in_flight):
            failure: BaseException | None = None
            for job, error in zip(batch, self._submit_all(batch), strict=True):
                if error is not None:
                    self.cap.give(self.key)
                    failure = failure or error  # the first in the windows' order, as when submitted one by one
                    continue
                self._accepted = True
                self.running.append(job)  # running at Meta: ``rows`` gives its place back if the chain stops
                self._watch(job)
            if failure is not None:
                raise failure

    def _places(self, most: int) -> list[Job]:
        """Up to ``most`` jobs that got a place to run (fewer than ``in_flight`` run; windows near the frontier)."""
        limit = self.stream.in_flight
        batch: list[Job] = []
        while len(batch) < most and len(self.running) + len(batch) < limit:
            if not self.pending:
                if self.next_window >= len(self.plan.windows) or self.next_window >= self.frontier + limit:
                    break
                since, until = self.plan.windows[self.next_window]
                self.pending.append(Job(self.next_window, since, until))
                self.open_parts[self.next_window] = 1
                self.next_window += 1
            # the run's cap, in the writer's order; the account being written always may
            free = limit - len(self.running) - len(batch)
            want = min(free, len(self.pending) + len(self.plan.windows) - self.next_window)
            if not self.cap.take(self.key, want=want, force=self.stream.writer_at(self.context) is WriterAt.NOW):
                break
            batch.append(self.pending.popleft())
        return batch

    def _submit_all(self, jobs: list[Job]) -> list[BaseException | None]:
        """Submit ``jobs`` at once; for each, the exception its submission ended with (``None``: it runs)."""

        def submit(job: Job) -> BaseException | None:
            try:
                self._submit(job)
            except BaseException as exc:  # noqa: BLE001 - handed back, raised by ``_fill`` in the windows' order
                return exc
            return None

        return at_once(submit, jobs, "submit")

    def _submit(self, job: Job) -> None:
        params = {
            **self.params,
            "time_range": json.dumps({"since": job.since.isoformat(), "until": job.until.isoformat()}),
        }
        filtering = self.stream.job_filtering(job.scope)
        if filtering:
            params["filtering"] = filtering
        response = self.stream.send_with_retries(
            self.account, "POST", self.stream.account_url(self.context), params, endpoint="insights"
        )
        body = response.json()
        run_id = body.get("report_run_id") if isinstance(body, dict) else None
        if not isinstance(run_id, str) or not run_id.isdigit():
            msg = f"{self.stream.name}: Meta answered a report run request without a report_run_id ({str(body)[:200]})"
            raise GraphAPIError(msg)
        now = time.monotonic()
        job.run_id, job.polls, job.percent, job.progress_at, job.ready = run_id, 0, -1, now, False
        job.submitted_at = now
        job.attempts += 1
        job.interval = self.stream.first_poll_seconds
        job.next_poll = now + job.interval

    def _poll(self, job: Job) -> bool:
        """Poll the run alone: True when it is complete; RunFailedError when it will never be."""
        response = self.stream.send_with_retries(
            self.account, "GET", f"{self.stream.url_base}/{job.run_id}", {}, endpoint="report_run"
        )
        doc = response.json()
        return self._status(job, doc if isinstance(doc, dict) else {})

    def _status(self, job: Job, doc: dict[str, Any]) -> bool:
        """Read one poll's answer: True when the run is complete; RunFailedError when it will never be."""
        status = str(doc.get("async_status", ""))
        percent = doc.get("async_percent_completion")
        percent = int(percent) if isinstance(percent, (int, float)) and not isinstance(percent, bool) else 0
        job.polls += 1
        now = time.monotonic()
        if status == STATUS_COMPLETED and percent >= 100:  # noqa: PLR2004 - done only when Completed AND 100
            return True
        if status in FAILED_STATUSES:
            detail = ": ".join(str(doc[k]) for k in ("error_code", "error_message") if doc.get(k))
            kind = "skipped" if status == "Job Skipped" else "failed"
            raise RunFailedError(kind, f"{status}{' (' + detail + ')' if detail else ''}")
        if percent > job.percent:
            job.percent, job.progress_at = percent, now
        elif now - job.progress_at > self.stream.stuck_after_seconds:
            msg = f"stuck at {percent}% for {now - job.progress_at:.1f}s ({status})"
            raise RunFailedError("stuck", msg)
        job.interval, wait = next_poll(job.interval, self.stream.first_poll_seconds, now - job.submitted_at, percent)
        job.next_poll = now + wait
        return False

    def _collect(self, job: Job) -> list[GraphPage]:
        """Every page of a completed run (held until the last one, so a lost run yields nothing twice)."""
        assert job.run_id is not None
        stats = self.account.stats
        pages: list[GraphPage] = []
        paginator = CursorPaginator()
        while not paginator.finished:
            try:
                page = self.stream._page_with_retries(self.account, job.run_id, paginator.current_value)
            except ReportRunLostError as exc:
                raise RunFailedError("lost", f"results lost: {exc}") from None
            pages.append(page)
            if stats:
                with self._pages_lock:  # runs' pages are read on several threads (``_collect_all``)
                    stats.pages += 1
            paginator.advance(page)  # type: ignore[arg-type]  # GraphPage, see CursorPaginator
        return pages

    # -- outcomes -----------------------------------------------------------------------------------

    def _part_done(self, window: int) -> tuple[datetime.date, datetime.date] | None:
        """One part of a window has its rows; the window's days when that was its last part."""
        self.open_parts[window] -= 1
        if self.open_parts[window] > 0:
            return None
        self.done.add(window)
        moved = False
        while self.frontier in self.done:
            self.frontier += 1
            moved = True
        if moved:
            self._save(done_through=self.plan.windows[self.frontier - 1][1])
        return self.plan.windows[window]

    def _save(self, done_through: datetime.date | None) -> None:
        """The run's range and its contiguous completed days, in STATE: where a killed run resumes."""
        progress = {
            "since": self.plan.since.isoformat(),
            "until": self.plan.until.isoformat(),
            "done_through": done_through.isoformat() if done_through else None,
        }
        self.marks.append(Progress(progress))

    def _marks(self) -> Iterator[Progress]:
        while self.marks:
            yield self.marks.pop(0)

    def _failed(self, job: Job, failure: RunFailedError) -> None:
        """Resubmit a run that ended without rows; split it after its attempts; give up when it cannot be."""
        stream = self.stream
        stats = self.account.stats
        reason = str(failure)
        if stats:
            stats.retries[f"report_run_{failure.kind}"] += 1
        if job.attempts < stream.attempts_per_job:
            stream.logger.warning(
                "%s account %s %s: report run %s %s; submitting it again (attempt %d of %d)",
                stream.name,
                self.context["account_id"],
                job.describe(),
                job.run_id,
                reason,
                job.attempts + 1,
                stream.attempts_per_job,
            )
            self.pending.appendleft(job)
            return
        parts = self._split(job)
        if parts is None:
            msg = (
                f"{stream.name} account {self.context['account_id']} {job.describe()}: the report run failed "
                f"{job.attempts} times ({reason}) and cannot be split further"
            )
            raise GraphAPIError(msg)
        stream.logger.warning(
            "%s account %s %s: report run failed %d times (%s); splitting it into %d parts",
            stream.name,
            self.context["account_id"],
            job.describe(),
            job.attempts,
            reason,
            len(parts),
        )
        self.open_parts[job.window] += len(parts) - 1
        if not parts:  # no object delivered in those days: no rows to read
            covered = self._part_done(job.window)
            if covered and Reconciliation.compares(stream.name):
                stream.monitor.reconciliation.cover(stream.name, str(self.context["account_id"]), *covered)
            return
        self.pending.extendleft(reversed(parts))

    def _split(self, job: Job) -> list[Job] | None:
        """Smaller jobs whose rows together are exactly the job's rows; None when none are possible."""
        n = self.stream.report.time_increment
        days = (job.until - job.since).days + 1
        if days > n:  # two halves of whole periods
            half = math.ceil(days / n) // 2 * n
            mid = job.since + datetime.timedelta(days=half - 1)
            return [
                Job(job.window, job.since, mid, job.scope),
                Job(job.window, mid + datetime.timedelta(days=1), job.until, job.scope),
            ]
        report_level = self.stream.report.level
        # rows of an account-level report are sums over every object: only days can split them
        levels = () if report_level == "account" else SPLIT_LEVELS[: SPLIT_LEVELS.index(report_level) + 1]
        if job.scope is None:
            if not levels:
                return None
            level, ids = levels[0], tuple(self.stream.list_ids(self.account, job, levels[0]))
        elif len(job.scope[1]) > 1:
            level, ids = job.scope
        else:
            finer = levels.index(job.scope[0]) + 1
            if finer >= len(levels):
                return None
            level = levels[finer]
            ids = tuple(self.stream.list_ids(self.account, job, level))
        if len(ids) <= 1:
            return [Job(job.window, job.since, job.until, (level, ids))] if ids else []
        cut = len(ids) // 2
        return [Job(job.window, job.since, job.until, (level, part)) for part in (ids[:cut], ids[cut:])]
