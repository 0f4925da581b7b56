"""Every (stream, account) cursor chain of a run at once, while the SDK writes streams one after another.

Why: an extraction's wall time is set by Meta's clock. A chain (the pages of one edge of one ad account, or
the report runs of one account's insights) cannot be sped up: each page's cursor is in the page before it.
What can be is how many chains wait on Meta at the same time. Read stream after stream, a run of eight
accounts took 0.36x the serial time of its calls (only the accounts of one stream overlapped), and insights of
eight accounts 7.1x one account's (report runs of different accounts never overlapped).

The constraint: the SDK syncs streams one after another from ``Tap.sync_all`` and only its main thread may
write; a stream's SCHEMA comes before its records, and a STATE covers exactly the records written before it.

The design (one home: this module, with the queues of ``prefetch.py``):

    main thread (the SDK's writer)          fetcher threads (one per live chain, up to the limit)
    ------------------------------          -----------------------------------------------------
    stream 1 SCHEMA                         (ads, A) (ads, B) ... (campaigns, A) ... (ads_insights, A) ...
    stream 1 account A <- drain queue <----   pages / report-run rows, in order, each into its own queue
    stream 1 account B <- drain queue <----   bounded in items (depth) and bytes (per chain, and run-wide)
    stream 2 SCHEMA ...

- When the first stream starts writing, :func:`chains_of_run` plans every partition of every selected stream
  (on the main thread: starting bookmarks, resume points) and starts one :class:`~prefetch.ReadAhead` over all
  of them, in the order the writer will ask for them (the SDK's stream order, then accounts).
- Up to ``max_concurrent_requests`` chains are live at once (a chain read to its end and waiting for the
  writer no longer counts), each on its own thread doing one call at a time,
  and a run-wide semaphore (``calls``) keeps the calls in flight of every thread (the writer's own insights
  calls too) within that limit. The connection pool has the same size (``session.py``).
- The writer drains the queues stream by stream, account by account, exactly as a sequential run writes, so
  SCHEMA, RECORD and STATE messages come in the order and with the meaning they had; resume points are
  unchanged. A chain far ahead of the writer waits when its queue is full: ``READ_AHEAD_BYTES`` per chain,
  and ``RUN_READ_AHEAD_BYTES`` over all chains together, from which the chain being written is exempt (so the
  writer always gets its next page and memory stays flat however many accounts and streams the run has).
  Chains are bounded in bytes, not pages: a chain bounded in pages waits for the writer and long chains run
  one after another again.
- Each ad account has one pacer shared by its chains (its budget is one, whatever the edge): usage headers
  and Meta's throttles (``17/2446079``, ``80000``/``80004`` for insights, ...) slow every chain of that
  account and no other.
- Insights are chains too: each account's report runs are submitted and polled on its chain's thread, so the
  report runs of every account are in flight together, at most ``insights_jobs_in_flight`` per account and
  ``insights_jobs_in_flight_total`` over the run (``ReportRunCap``). Their chains start in a lane of their
  own (up to ``insights_jobs_in_flight_total`` accounts at once), beside the object chains. An account ahead
  of the writer submits and polls, and reads a completed run's rows within the byte bounds (beyond them the
  rows wait at Meta, not in memory); the progress marks that STATE saves travel with the rows, in order.
- The first chain must read a few pages before the others start: a wrong token or version fails on one
  chain with one line. A fatal error stops every chain; an error of one account (``errors.ACCOUNT_SCOPED``)
  ends that account's chains only.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from tap_meta_ads.prefetch import ReadAhead
from tap_meta_ads.report_runs import ReportPoller
from tap_meta_ads.usage import Pacer

#: Pages a chain may read ahead of the writer: in effect no bound of its own, the bytes decide. With every
#: chain of a run read at once, a chain bounded in pages (it was ``checkpoint_every_pages``, 10) stops 10 pages
#: ahead and waits for the writer to reach it, so long chains ran one after another again: 8 accounts x every
#: object stream took 1.04x the serial time of their calls (measured with bench_accounts.py). A kill -9 loses
#: the pages waiting in the queues, which the next run fetches again from the saved cursors; no record is
#: written twice more than before (only written pages move a resume point).
READ_AHEAD_PAGES = 100_000
#: Bytes of response body one chain's pages may hold while they wait for the writer: a chain far ahead cannot
#: take the whole run's budget alone.
READ_AHEAD_BYTES = 8 * 1024 * 1024
#: Bytes every chain's waiting pages may hold together: the run's memory stays flat however many accounts and
#: streams it has (64 MiB is about 400 default pages of 100 ads with every field).
RUN_READ_AHEAD_BYTES = 64 * 1024 * 1024
#: Pages (or report-run results) the first chain reads before the others start.
PROVEN_AFTER_PAGES = 4

#: The lane of chains that wait on Meta (report runs); see ``prefetch.ReadAhead``'s ``lane``.
REPORT_LANE = "report runs"

Key = tuple[str, str]  # (stream name, account id)


class ChainStream(Protocol):
    """What a stream gives the run's chains (``client.GraphStream`` and ``insights.InsightsStream``)."""

    name: str
    waits_on_meta: bool

    @property
    def partitions(self) -> list[dict[str, Any]] | None:
        """One context per account."""

    def plan_chain(self, context: dict[str, Any], chains: RunChains) -> None:
        """Plan one account's chain on the main thread (its starting bookmark, resume point, pacer)."""

    def fetch_chain(self, account_id: str) -> Iterator[Any]:
        """The chain's items, in order, on its fetcher thread."""


class ReportRunCap:
    """Report runs in flight over every account of the run, under a total, given in the writer's order.

    The places go to the accounts the writer reaches first: an account may take one only while the places that
    the accounts before it hold or still need (``take``'s ``want``), plus its own, leave room. Given first come,
    first served, 50 accounts' first report runs took the whole cap at once, one or two each, and the writer
    then waited at account after account for its last runs, submitted rounds later (bench_accounts.py). The
    account being written may always submit (``force``), so it always progresses.
    """

    def __init__(self, total: int, keys: list[Key] | None = None, first_want: int = 1) -> None:
        self.total = total
        self.in_flight = 0
        self.peak = 0
        self._rank = {key: i for i, key in enumerate(keys or [])}
        self._held = [0] * len(self._rank)
        #: places each account still needs; before its chain says, ``first_want`` (its per-account cap)
        self._want = [first_want] * len(self._rank)
        self._before: list[int] | None = None  # places held or wanted by the accounts before each; None: stale
        self._lock = threading.Lock()

    def take(self, key: Key | None = None, *, want: int = 1, force: bool = False) -> bool:
        """One place for a report run of ``key``'s account, which needs ``want`` (this one included).

        ``False`` when the cap is reached or the accounts the writer reaches sooner need the rest (and ``force``
        is not set).
        """
        with self._lock:
            rank = self._rank.get(key) if key is not None else None
            if rank is not None and self._want[rank] != want:
                self._want[rank] = want
                self._before = None
            if not force:
                if self.in_flight >= self.total:
                    return False
                if rank is not None and self._prefix(rank) + self._held[rank] >= self.total:
                    return False
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if rank is not None:
                self._held[rank] += 1
                self._want[rank] = max(0, want - 1)
                self._before = None
            return True

    def give(self, key: Key | None = None) -> None:
        """A report run completed (its rows may still wait at Meta for room), failed or was abandoned.

        Completed runs whose rows wait for the writer held places until read, so accounts far from the writer
        could not even submit: the report runs of 50 accounts ran in rounds behind the writer.
        """
        with self._lock:
            self.in_flight -= 1
            rank = self._rank.get(key) if key is not None else None
            if rank is not None:
                self._held[rank] -= 1
                self._before = None

    def done(self, key: Key) -> None:
        """``key``'s account needs no more places (its chain ended)."""
        with self._lock:
            rank = self._rank.get(key)
            if rank is not None and self._want[rank]:
                self._want[rank] = 0
                self._before = None

    def _prefix(self, rank: int) -> int:
        """Places held or wanted by the accounts before ``rank`` (recounted after a change, once)."""
        if self._before is None:
            before, running = [], 0
            for held, want in zip(self._held, self._want, strict=True):
                before.append(running)
                running += held + want
            self._before = before
        return self._before[rank]


class RunChains:
    """The run's chains: one read-ahead over every (stream, account), the calls limit, the accounts' pacers."""

    def __init__(
        self, streams: list[ChainStream], config: dict[str, Any], isolated: Callable[[BaseException], bool]
    ) -> None:
        self.limit = int(config["max_concurrent_requests"])
        self.calls = threading.BoundedSemaphore(self.limit)
        self.report_poller = ReportPoller()
        self._config = config
        self._pacers: dict[str, Pacer] = {}
        self._lock = threading.Lock()
        by_name = {s.name: s for s in streams}
        keys: list[Key] = [(s.name, str(c["account_id"])) for s in streams for c in s.partitions or []]
        self.report_runs = ReportRunCap(
            int(config.get("insights_jobs_in_flight_total", 100)),
            [key for key in keys if by_name[key[0]].waits_on_meta],
            first_want=int(config.get("insights_jobs_in_flight", 1)),
        )
        #: every chain may act on the same reading of the app's budget: that many calls are kept spare
        self.spare_calls = max(1, min(self.limit, len(keys)))
        for stream in streams:
            for context in stream.partitions or []:
                stream.plan_chain(context, self)
        self.read_ahead: ReadAhead[Key, Any] = ReadAhead(
            keys,
            lambda key: by_name[key[0]].fetch_chain(key[1]),
            width=self.limit,
            depth=READ_AHEAD_PAGES,
            proven_after=PROVEN_AFTER_PAGES,
            max_bytes=READ_AHEAD_BYTES,
            size=lambda item: int(getattr(item, "body_bytes", 0)),
            isolated=isolated,
            max_total_bytes=RUN_READ_AHEAD_BYTES,
            group=lambda key: key[0],  # a record limit stops the stream's partitions together
            # report-run chains wait on Meta, not on calls: a lane of their own, as wide as the run's report-run
            # cap (each live account holds at least one place), so they start at once beside the object chains.
            # In the writer's order behind 400 object chains, 50 accounts' report runs started only once the
            # writer reached insights (bench_accounts.py)
            lane=lambda key: REPORT_LANE if by_name[key[0]].waits_on_meta else None,
            widths={REPORT_LANE: self.report_runs.total},
            on_leave=self.report_runs.done,  # an account the writer is done with needs no more report runs
        )

    def pacer(self, account_id: str) -> Pacer:
        """The account's one pacer, shared by its chains of every stream."""
        with self._lock:
            pacer = self._pacers.get(account_id)
            if pacer is None:
                cfg = self._config
                pacer = self._pacers[account_id] = Pacer(
                    threshold_pct=float(cfg["throttle_threshold_pct"]),
                    fallback_seconds=float(cfg["backoff_base_seconds"]),
                    max_wait_seconds=float(cfg["backoff_max_seconds"]),
                    spare_calls=self.spare_calls,
                )
            return pacer


_RUNS: weakref.WeakKeyDictionary[object, RunChains] = weakref.WeakKeyDictionary()
_RUNS_LOCK = threading.Lock()


def chains_of_run(
    run: object,
    streams: Callable[[], list[ChainStream]],
    config: dict[str, Any],
    isolated: Callable[[BaseException], bool],
) -> RunChains:
    """The run's chains (``run``: the tap), started when the first stream asks for them."""
    with _RUNS_LOCK:
        chains = _RUNS.get(run)
        if chains is None:
            chains = _RUNS[run] = RunChains(streams(), config, isolated)
        return chains


def end_run(run: object) -> None:
    """The run has written every stream: chains still waiting for a writer that will not come stop.

    A later sync of the same tap object starts new chains.
    """
    with _RUNS_LOCK:
        chains = _RUNS.pop(run, None)
    if chains is not None:
        chains.read_ahead.close()
        chains.report_poller.close()


def started(run: object) -> RunChains | None:
    """The run's chains if they have started (a stream synced alone, as in tests, may not have)."""
    return _RUNS.get(run)
