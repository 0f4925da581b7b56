"""One account's partition as a chain of the run, and how it ends when its account fails alone.

Planned on the main thread, fetched on its chain's thread, written by the writer with a checkpoint every N
pages.

Only pages already written move the resume point, so every STATE covers exactly them (``checkpoint.py``).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NoReturn

import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers.types import Context
from singer_sdk.streams import RESTStream
from typing_extensions import override

from tap_meta_ads import checkpoint
from tap_meta_ads.calls import without_query
from tap_meta_ads.chains import RunChains, chains_of_run, end_run
from tap_meta_ads.checkpoint import ResumePoint, SentIds
from tap_meta_ads.errors import (
    AccountSkippedError,
    CursorRejectedError,
    GraphAPIError,
    account_scope_reason,
    connect_failure,
)
from tap_meta_ads.pages import CursorPaginator, GraphPage
from tap_meta_ads.retries import retry_reason
from tap_meta_ads.usage import Pacer

if TYPE_CHECKING:
    from tap_meta_ads.monitor import PartitionStats, RunMonitor

#: How often a partition may restart from its bookmark because Meta refused its cursor.
MAX_CURSOR_RESTARTS = 5


@dataclass
class AccountFetch:
    """What one account's fetcher owns while several accounts are read at once.

    Where it starts, its page size, its pacer (each ad account has its own budget) and its counters.
    The main thread plans it (``start``: the saved resume point or a fresh pass); from then on only the
    account's fetcher thread changes it, except ``stats`` fields the writer counts (pages, records).
    """

    context: dict[str, Any]
    start: ResumePoint
    fresh_since: int | None
    page_size_limit: int
    pacer: Pacer
    page_size: int = 0
    good_pages: int = 0
    pace_wait: float = 0.0
    started: bool = False
    #: The ``until`` of an edge read through ``since``/``until`` (``window_params``): the pass's upper bound.
    until: int | None = None
    #: Optional fields Meta refused to this account (see ``GraphStream.optional_fields``): no longer asked.
    dropped_fields: set[str] = field(default_factory=set)
    stats: PartitionStats = field(init=False)

    def __post_init__(self) -> None:
        self.page_size = self.page_size or self.page_size_limit


class PartitionChains(RESTStream[str | None]):
    """The partitions of a stream as chains of the run (a mixin of ``GraphStream``)."""

    #: Whether this stream's chains mostly wait on Meta (report runs) rather than call it: they then start in
    #: a lane of their own (``chains.RunChains``), beside the chains that call, not behind them.
    waits_on_meta: bool = False

    #: Declared here, set by ``client.GraphStream`` (the one class that combines the mixins).
    monitor: RunMonitor
    replication_key: str | None
    status_field: str | None
    server_filtering: bool
    window_params: bool
    identity_key: str | None
    identity_of: Callable[[dict[str, Any], str], str]
    _plans: dict[str, AccountFetch]
    _hidden: frozenset[str]
    _first_contact_failures: int
    _page_succeeded: Callable[[AccountFetch], None]  # retries.RetryPolicy
    _fetch_with_retries: Callable[[AccountFetch, str | None, int | None], GraphPage]

    # -- a partition, page by page, with checkpoints ------------------------------------------

    def starting_since(self, context: Context) -> int | None:
        """The GREATER_THAN filter for a fresh pass: the bookmark, or just before ``start_date``."""
        if self.replication_key is None:
            return None
        value = self.get_starting_replication_key_value(context)
        if not value:
            return None
        epoch = checkpoint.to_epoch(str(value))
        start_date = self.config.get("start_date")
        return epoch - 1 if start_date and value == start_date else epoch

    @override
    def request_records(self, context: Context | None) -> Iterable[dict]:
        """Write one ad account's pages as its chain delivers them (and the SDK's request-count METRIC)."""
        if context is None:  # pragma: no cover - partitions always give a context
            msg = f"{self.name} needs an account context"
            raise GraphAPIError(msg)
        key = str(context["account_id"])
        chains = self.run_chains()
        if key not in self._plans:  # a partition the run did not plan (a stream synced on its own)
            self.plan_chain(context, chains)
        account = self._plans[key]
        with self.get_http_request_counter() as counter:
            counter.with_context(context)
            try:
                yield from self.write_chain(context, account, chains.read_ahead.items((self.name, key)))
            finally:
                counter.increment(account.stats.requests if account.started else 0)

    @override
    def log_sync_costs(self) -> None:
        """The SDK's cost lines, then the end of the run's chains.

        ``Tap.sync_all`` is final; it calls this for every stream once every stream has synced: the one hook
        after the last stream. Chains nobody will write (the writer never reached them) stop here instead of
        waiting for the process to exit.
        """
        super().log_sync_costs()
        end_run(self._tap)

    def run_chains(self) -> RunChains:
        """The run's chains (``chains.py``): every partition of every selected stream, started once."""
        tap = self._tap

        def selected() -> list[Any]:
            streams = [s for s in tap.streams.values() if isinstance(s, PartitionChains) and s.selected]
            return streams if self in streams else [*streams, self]

        return chains_of_run(tap, selected, dict(self.config), is_account_error)

    def plan_chain(self, context: Context, chains: RunChains) -> None:
        """Plan one account's chain on the main thread: where it starts, and the account's shared pacer.

        The SDK would write each partition's starting bookmark when it reaches it; it is written now so that
        chains read ahead start from it too (the SDK writing it again later gives the same value).
        """
        checkpoint.write_starting_value(self, context)
        self._plans[str(context["account_id"])] = self._plan(context, chains.pacer(str(context["account_id"])))

    def fetch_chain(self, account_id: str) -> Iterator[Any]:
        """The chain's items on its fetcher thread (``chains.py``): the account's pages."""
        return self._fetch_partition(self._plans[account_id])

    def write_chain(self, context: Context, account: AccountFetch, items: Iterator[Any]) -> Iterable[dict]:
        """The writer's side of one chain: records and STATE out, on the main thread."""
        return self._write_partition(context, account, items)

    def _plan(self, context: Context, pacer: Pacer) -> AccountFetch:
        """An account's fetching state, starting at its saved resume point or a fresh pass."""
        fresh = self._fresh_point(context)
        saved = ResumePoint.from_state(self.get_context_state(context))
        resuming = saved is not None and saved.after is not None
        until = self._window_until(saved if resuming else None)
        if until is not None:
            fresh.cap = until  # the bookmark never passes what the pass asked for
        return AccountFetch(
            context=dict(context),
            start=saved if saved and saved.after else fresh,
            until=until,
            fresh_since=fresh.since,
            page_size_limit=int(self.config["page_size"]),
            pacer=pacer,
        )

    def _window_until(self, saved: ResumePoint | None) -> int | None:
        """The ``until`` of a ``since``/``until`` edge's pass (``None``: the edge takes none, or the clock is unknown).

        A resumed pass keeps its own (the cap it saved: a cursor belongs to its query); a fresh one takes Meta's
        clock now (measured at start, ``RunMonitor.server_clock_offset``) minus a second.
        """
        if not self.window_params:
            return None
        if saved is not None and saved.cap is not None:
            return saved.cap
        offset = self.monitor.server_clock_offset
        return None if offset is None else int(time.time() + offset) - 1

    def _fetch_partition(self, account: AccountFetch) -> Iterator[GraphPage | None]:
        """An account's pages, in order, on its fetcher thread; ``None`` marks a pass restarted from the bookmark.

        A refused cursor (code 2642) restarts the pass; any other error ends the account, and the
        writer raises it after writing the pages before it.
        """
        stats = account.stats = self.monitor.start(self.name, str(account.context["account_id"]))
        account.started = True
        if self.monitor.has_failed(stats.account_id):
            raise AccountSkippedError(stats.account_id)
        start = account.start
        if start.after:
            stats.resumed_from_page = start.pages + 1
            self.logger.info("Resuming %s account %s at page %d from the saved cursor", *stats.key, start.pages + 1)
        paginator, since = CursorPaginator(start.after), start.since
        while not paginator.finished:
            try:
                page = self._fetch_with_retries(account, paginator.current_value, since)
            except FatalAPIError as exc:
                if not isinstance(exc, CursorRejectedError):
                    self.note_account_error(stats.account_id, exc)
                    raise
                stats.cursor_restarts += 1
                if stats.cursor_restarts > MAX_CURSOR_RESTARTS:
                    raise
                self.logger.warning(
                    "Meta refused the paging cursor of %s account %s (%s); restarting the account from its bookmark",
                    *stats.key,
                    exc,
                )
                paginator, since = CursorPaginator(), account.fresh_since
                yield None
                continue
            self._page_succeeded(account)
            yield page
            paginator.advance(page)  # type: ignore[arg-type]  # GraphPage, see CursorPaginator

    def _write_partition(
        self, context: Context, account: AccountFetch, pages: Iterator[GraphPage | None]
    ) -> Iterable[dict]:
        """The writer's side of one account: records out, a checkpoint every N pages written.

        Only pages already written move the resume point, so every STATE covers exactly them.
        """
        point = replace(account.start)
        every = int(self.config["checkpoint_every_pages"])
        account_id = str(context["account_id"])
        identity = (lambda row: self.identity_of(row, account_id)) if self.identity_key else None
        sent = SentIds(identity)  # only consulted after Meta refused a cursor and the pass restarted
        try:
            for page in pages:
                stats = account.stats
                if page is None:  # the cursor was refused: the pass starts again, skip what was sent
                    point = self._fresh_point(context)
                    sent.restart()
                    continue
                if point.cap is None:
                    point.cap = page.server_time - 1
                point.max_seen = self._newest(page.records, point.max_seen)
                point.pages += 1
                records = sent.unsent(page.records)
                keep = self.record_filter(point.since)
                if keep is not None:
                    records = list(filter(keep, records))
                stats.pages += 1
                stats.records += len(records)
                for object_id, reason in page.skipped:
                    stats.skipped["unservable_object"] += 1
                    self.logger.warning(
                        "Skipped %s %s of account %s: Meta cannot serve it (%s)",
                        self.name,
                        object_id,
                        stats.account_id,
                        reason,
                    )
                self.logger.info(
                    "%s account %s page %d: %d records (%d so far)",
                    *stats.key,
                    point.pages,
                    len(records),
                    stats.records,
                )
                self.page_extracted_at = page.fetched_at
                yield from records
                point.after = page.after if page.has_next else None
                if point.after and point.pages % every == 0:
                    checkpoint.save(self, context, point)
        except (RetriableAPIError, requests.RequestException) as exc:
            self._stop(context, account, point, exc, gave_up=True)
        except FatalAPIError as exc:
            if self.end_failed_account(account, exc, lambda: checkpoint.save(self, context, point)):
                return
            self._stop(context, account, point, exc)
        finally:
            sent.close()
        checkpoint.complete(self, context, point)
        account.stats.status = "complete"
        self.monitor.log_partition(self.logger, account.stats)

    def record_filter(self, since: int | None) -> Callable[[dict[str, Any]], bool] | None:
        """What the tap filters itself where the edge cannot: hidden statuses, and updates up to ``since``.

        ``None`` (nothing to filter, as on ``ads``) keeps the page loop free of per-record work. A record
        without a replication value is kept: a duplicate is harmless, a skipped object is not.
        """
        field = self.status_field if self._hidden else None
        tap_filtered = not self.server_filtering or self.window_params
        key = self.replication_key if since is not None and tap_filtered else None
        if field is None and key is None:
            return None
        hidden = self._hidden

        def keep(record: dict[str, Any]) -> bool:
            if field is not None and record.get(field) in hidden:
                return False
            if key is not None:
                value = record.get(key)
                return not value or checkpoint.to_epoch(value) > since  # type: ignore[operator]  # since is set with key
            return True

        return keep

    def _fresh_point(self, context: Context) -> ResumePoint:
        """A pass from the first page, filtered from the bookmark (or start_date)."""
        return ResumePoint(after=None, pages=0, since=self.starting_since(context), max_seen=None, cap=None)

    def _newest(self, records: list[dict[str, Any]], newest: int | None) -> int | None:
        """The newest replication-key value of a page, in epoch seconds."""
        key = self.replication_key
        if not key:
            return newest
        return checkpoint.newest_epoch([v for record in records if isinstance(v := record.get(key), str)], newest)

    def note_account_error(self, account_id: str, exc: BaseException) -> None:
        """On a chain's thread: an account error stops the account's chains that have not started yet."""
        reason = account_scope_reason(getattr(exc, "error", None))
        if reason is not None:
            self.monitor.account_failed(account_id, reason)

    def end_failed_account(self, account: AccountFetch, exc: BaseException, save: Callable[[], None]) -> bool:
        """End a partition whose account failed alone (``errors.ACCOUNT_SCOPED``); False for any other error.

        The partition's progress is saved (``save``: a rerun resumes there) but not completed, so its bookmark
        does not move. The first partition of the account to fail logs the one ERROR line naming the account and
        the reason; its other partitions are not read (``AccountSkippedError``) and say so at INFO. Every other
        account and stream goes on; ``cli.run`` decides the exit code from ``on_account_error``.
        """
        account_id = str(account.context["account_id"])
        if isinstance(exc, AccountSkippedError):
            reason: str | None = self.monitor.failed_accounts.get(account_id, "failed earlier")
            status = "skipped"
        else:
            reason, status = account_scope_reason(getattr(exc, "error", None)), "account_failed"
        if reason is None:
            return False
        save()
        self.monitor.account_failed(account_id, reason)
        if self.monitor.announce(account_id):  # the account's one ERROR line, at the first of its partitions written
            self.logger.error(
                "Ad account act_%s failed in %s: %s. Its other streams are skipped; every other account goes on",
                account_id,
                self.name,
                self.monitor.failed_accounts.get(account_id, reason),
            )
        elif status == "skipped":
            self.logger.info("%s account %s: not read, the account failed earlier in this run", self.name, account_id)
        if account.started:
            account.stats.status = status
            self.monitor.log_partition(self.logger, account.stats)
        return True

    def _stop(
        self, context: Context, account: AccountFetch, point: ResumePoint, exc: BaseException, *, gave_up: bool = False
    ) -> NoReturn:
        """Save where the partition stands (so a rerun resumes there), then fail with one line."""
        checkpoint.save(self, context, point)
        if account.started:
            account.stats.status = "failed"
            self.monitor.log_partition(self.logger, account.stats)
        unreachable = connect_failure(exc) if gave_up and not self.monitor.made_progress() else None
        if unreachable:
            url = urllib.parse.urlsplit(self.config["api_url"])
            host = f"{url.scheme}://{url.netloc.rpartition('@')[2]}"  # never a user:password part
            msg = (
                f"Cannot connect to {host} ({unreachable}; {self._first_contact_failures} attempts): "
                "check the setting api_url, and that this machine can reach that host"
            )
            raise GraphAPIError(msg) from exc
        if gave_up:
            reason, _ = retry_reason(exc)
            msg = (
                f"Gave up on {self.name} account {context['account_id']} after {self.backoff_max_tries()} "
                f"attempts ({reason}): {without_query(str(exc))}"
            )
            raise GraphAPIError(msg) from exc
        if isinstance(exc, GraphAPIError):
            raise exc
        raise GraphAPIError(str(exc)) from exc


def is_account_error(exc: BaseException) -> bool:
    """Whether an error ends one account's partition only (the other accounts' fetchers go on)."""
    return isinstance(exc, AccountSkippedError) or account_scope_reason(getattr(exc, "error", None)) is not None
