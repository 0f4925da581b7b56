"""Ads Insights through Meta's asynchronous report runs: windows, runs in flight, splits, state.

What a report may ask for (levels, fields, breakdowns, attribution) is ``reports.py``; this module runs them.
Why it stays one module of about 800 lines: the stream's side (an account's days, windows, STATE marks) and
the report runs' life cycle (``_Runner``: submit, poll, collect, resubmit, split) share one plan and one
progress record per account, and each change so far has touched both; the runner is the next to get a home
of its own once the chains' scheduling of report runs settles (issue 19).

Why asynchronous: a synchronous ``GET /act_{id}/insights`` over months of daily ad rows times out on any
real account. Meta's answer is the *AdReportRun*: ``POST /act_{id}/insights`` returns a
``report_run_id``, ``GET /{report_run_id}`` tells ``async_status`` ("Job Not Started", "Job Started",
"Job Running", "Job Completed", "Job Failed", "Job Skipped") and ``async_percent_completion``, and
``GET /{report_run_id}/insights`` pages the rows once the run is "Job Completed" at 100 %.

What goes wrong in production, and what this module does about it:

- **Runs fail, are skipped, stick at a percentage, or lose their results** (code 2601 after 100 %). Each
  report run is resubmitted up to ``insights_job_attempts`` times; a run whose percentage has not moved
  for ``insights_job_timeout_seconds`` counts as stuck.
- **Runs that fail at full size fail every time** (Meta's "Please reduce the amount of data", 100/1487534,
  on large accounts). After its attempts such a run is *split*: a window of several days into two halves,
  a single period into the level's objects (the campaigns that delivered, listed with a synchronous
  ``level=campaign&fields=campaign_id`` call, then ad sets, then ads), in halves through ``filtering``
  ``campaign.id IN [...]``. The parts' rows are exactly the rows of the whole, because each object's rows
  belong to exactly one part. Public connectors do the same (Airbyte's source-facebook-marketing splits
  account -> campaigns -> ad sets -> ads; Estuary's connector halves id lists listed the same way).
- **One job at a time is slow**: up to ``insights_jobs_in_flight`` report runs are in flight at once
  (Meta states no fixed limit; the insights throttle header paces the calls, as in ``usage.py``). Runs
  finish out of order, so a window may complete before an earlier one.
- **Overlapping windows duplicate rows**: the history is cut into exact, non-overlapping windows of
  ``insights_window_days`` (both ends of ``time_range`` are inclusive, so window k+1 starts the day after
  window k ends), aligned to ``time_increment`` so that no period is cut.
- **A crash restarts months**: the partition state keeps the run's range and the last day up to which
  every window is complete (``insights_progress``), written after each window; jobs are only submitted
  for the ``insights_jobs_in_flight`` windows after that day, so a killed run re-reads at most the
  windows in flight. When the run completes, the bookmark (``date_start``) becomes its last day.
- **Numbers change for 28 days** (Meta's attribution settles): each new run starts
  ``insights_lookback_days`` before the bookmark; rows carry their key (date, account, object,
  breakdowns), so targets upsert them.
- **Metrics arrive as strings**: converted exactly (``int`` for counts, ``Decimal`` for money and ratios,
  also inside lists such as ``actions``), as the schema types them, while each page is parsed
  (``metric_values.py``).
- **History is capped at 37 months** (3018 beyond): the start is clamped, with a warning; should Meta still
  refuse it (the machine's clock disagrees with Meta's), error 3018 is one configuration error line, never
  a retry (``errors.py``).

What makes rows match Ads Manager (``docs/matching-ads-manager.md`` says it for users, with the sources):

- **Archived ads**: Meta's default status filter leaves archived ads' rows out of any report run whose
  ``filtering`` has no ``<level>.effective_status`` rule, split parts filtered by ``campaign.id``
  included (airbytehq/airbyte#36998, fixed by PR #39439; singer-io/tap-facebook#33). Every report run,
  every split part and the synchronous listing of ids for a split carry that rule with the statuses of
  ``effective_statuses`` (ARCHIVED included by default). Deleted ads' rows are never served through the
  account's edge (facebook/facebook-python-business-sdk#269); their spend is in ``ads_insights_account``.
- **The account's days**: ``date_start`` is a day of the account's time zone; today, the last day,
  ``end_date``, windows and the 37-month floor are that account's (``account_days.py``).
- **Attribution as Meta serves it**: ``use_unified_attribution_setting`` and ``action_report_time`` are
  ignored by Meta since 2025-06-10 (it reports each ad set's own attribution setting, as Ads Manager
  does): they are never sent, and a report naming them is refused. The 7-day and 28-day view windows were
  retired on 2026-01-12 (Meta's blog, 2025-10-16): refused with the list of those Meta serves. Reach with
  breakdowns is served for 13 months only: such reports start there, with a warning.
- **Reconciliation**: ``ads_insights`` and ``ads_insights_account`` rows feed ``reconcile.py``, which
  checks the ads' daily sums against the account's totals when the run ends.
"""

from __future__ import annotations

import calendar
import datetime
import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers.types import Context
from singer_sdk.singerlib.catalog import MetadataMapping
from typing_extensions import override

from tap_meta_ads import checkpoint
from tap_meta_ads.account_days import AccountZone, AccountZones
from tap_meta_ads.calls import without_query
from tap_meta_ads.chains import ReportRunCap, RunChains
from tap_meta_ads.checkpoint import ResumePoint
from tap_meta_ads.client import GraphStream
from tap_meta_ads.errors import AccountSkippedError, GraphAPIError, ReportRunLostError
from tap_meta_ads.metric_values import MetricRows, MetricValueError
from tap_meta_ads.pages import CursorPaginator, GraphPage
from tap_meta_ads.partitions import AccountFetch
from tap_meta_ads.prefetch import WriterAt
from tap_meta_ads.reconcile import Reconciliation
from tap_meta_ads.reports import ALWAYS_RETURNED, ReportSpec, report_schema
from tap_meta_ads.retries import retry_reason

#: The object levels, coarse to fine: the order a failing report is split in.
SPLIT_LEVELS = ("campaign", "adset", "ad")
STATUS_COMPLETED = "Job Completed"
FAILED_STATUSES = frozenset({"Job Failed", "Job Skipped"})
#: Reach with breakdowns is served for the last 13 months only since 2025-06-10 (same Supermetrics page).
REACH_BREAKDOWN_MONTHS = 13
#: The effective statuses each level's ``<level>.effective_status`` filter takes (Meta's Campaign, Ad Set
#: and Ad references; a campaign filter naming an ad's status such as ADSET_PAUSED is refused with code 100,
#: subcode 1487561, "Only certain values may be specified for run status": facebook-python-business-sdk#388).
#: DELETED is never sent: deleted objects' rows are not served through the account's insights edge whatever
#: the filter (facebook/facebook-python-business-sdk#269, quoting Meta's "Storing ad objects" guide).
LEVEL_STATUSES = {
    "campaign": frozenset({"ACTIVE", "PAUSED", "ARCHIVED", "IN_PROCESS", "WITH_ISSUES"}),
    "adset": frozenset({"ACTIVE", "PAUSED", "ARCHIVED", "IN_PROCESS", "WITH_ISSUES", "CAMPAIGN_PAUSED"}),
    "ad": frozenset(
        {
            "ACTIVE",
            "PAUSED",
            "ARCHIVED",
            "IN_PROCESS",
            "WITH_ISSUES",
            "CAMPAIGN_PAUSED",
            "ADSET_PAUSED",
            "PENDING_REVIEW",
            "DISAPPROVED",
            "PREAPPROVED",
            "PENDING_BILLING_INFO",
        }
    ),
}
#: Meta keeps 37 months of insights; an older start is error 3018 (Airbyte's source-facebook-marketing
#: clamps the same way). Counted from the account's today, with one day of margin for how Meta counts months.
RETENTION_MONTHS = 37
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
PROGRESS_KEY = "insights_progress"


def months_back(day: datetime.date, months: int) -> datetime.date:
    """The same day of the month ``months`` earlier, clamped to the month's length."""
    year, month0 = divmod(day.year * 12 + day.month - 1 - months, 12)
    return datetime.date(year, month0 + 1, min(day.day, calendar.monthrange(year, month0 + 1)[1]))


# -- report runs -------------------------------------------------------------------------------------------


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
class _Plan:
    """What one account's run covers: its windows, and the day up to which it is complete."""

    since: datetime.date
    until: datetime.date
    windows: list[tuple[datetime.date, datetime.date]]
    resumed: bool = False


#: What a report row costs in memory while it waits for the writer, roughly: a dict of every field with exact
#: numbers and lists of actions (the run-wide byte bound's unit; see ``chains.py``).
ROW_BYTES_ESTIMATE = 6000
#: How often an account whose report runs are complete checks whether the writer has reached it.
AWAIT_WRITER_SECONDS = 0.1


@dataclass
class _Rows:
    """The rows of one completed report run, on their way from the chain to the writer."""

    rows: list[dict[str, Any]]
    body_bytes: int
    #: read within room the chain reserved (``prefetch.ReadAhead.reserve``): the feed never holds the chain back
    reserved: bool = True


@dataclass
class _Proven:
    """Meta accepted the account's first report run: the token, version and fields work (``prefetch.py``)."""

    proves_run: bool = True
    body_bytes: int = 0


@dataclass
class _Progress:
    """The days an account's report is complete through: the writer saves it in STATE after the rows before it."""

    progress: dict[str, Any]


class _RunFailedError(Exception):
    """A report run ended without rows (failed, skipped, stuck, results lost): resubmit or split it."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class InsightsStream(GraphStream):
    """An insights report as a stream: one partition per ad account, report runs underneath.

    Declared streams set ``report``; custom reports are built from ``insight_reports`` by the tap.
    """

    edge = "insights"
    replication_key = "date_start"
    report: ReportSpec = ReportSpec(name="ads_insights")
    waits_on_meta = True  # an account's chain is its report runs: seconds to minutes each at Meta
    #: Chosen on purpose (a catalog, or Meltano's ``select``): a first run reads up to 37 months of daily
    #: rows per ad, a job of its own; a run without a catalog extracts the object streams only.
    selected_by_default = False

    @property
    @override
    def metadata(self) -> MetadataMapping:
        """As the base stream's, with every property selected by default once the stream is selected.

        The stream itself is not selected by default; without this its properties would inherit that,
        and selecting only the stream would ask Meta for no fields.
        """
        mapping = super().metadata
        for breadcrumb, entry in mapping.items():
            if breadcrumb and entry.selected_by_default is None:
                entry.selected_by_default = True
        return mapping

    def __init__(self, tap: Any, report: ReportSpec | None = None) -> None:  # noqa: ANN401 - the SDK's Tap
        spec = report or type(self).report
        self.report = spec
        super().__init__(tap=tap, name=spec.name, schema=report_schema(spec))
        self.primary_keys = list(spec.primary_keys)
        cfg = self.config
        self._in_flight = int(cfg["insights_jobs_in_flight"])
        self._poll_first = float(cfg["insights_poll_interval_seconds"])
        self._stuck_after = float(cfg["insights_job_timeout_seconds"])
        self._attempts = int(cfg["insights_job_attempts"])
        self._window_days = int(cfg["insights_window_days"])
        #: The run's cache of account time zones, shared by every insights stream of the tap.
        self.account_zones: AccountZones = getattr(tap, "account_zones", None) or AccountZones()
        self._status_rule = status_rule(spec.level, cfg.get("effective_statuses") or ())
        #: Each account's state as the run found it (main thread), planned into days on its chain's thread.
        self._chain_states: dict[str, dict[str, Any]] = {}
        self._day_plans: dict[str, _Plan | None] = {}
        #: The last completed report run's rows in memory (bytes): what a run read ahead of the writer reserves.
        self.last_run_bytes = 0
        self._page_with_retries: Callable[[AccountFetch, str, str | None], GraphPage] = self.request_decorator(
            self._results_page
        )

    # -- what to ask for -------------------------------------------------------------------------

    def report_params(self) -> dict[str, Any]:
        """The parameters every report run of this stream sends (time range and scope come per job)."""
        skip = {*ALWAYS_RETURNED, *self.report.breakdowns}
        fields = [f for f in self.selected_fields() if f not in skip]
        params: dict[str, Any] = {
            "level": self.report.level,
            "fields": ",".join(fields),
            "time_increment": str(self.report.time_increment),
            "action_breakdowns": json.dumps(list(self.report.action_breakdowns)),
        }
        if self.report.breakdowns:
            params["breakdowns"] = ",".join(self.report.breakdowns)
        if self.report.action_attribution_windows:
            params["action_attribution_windows"] = json.dumps(list(self.report.action_attribution_windows))
        return params

    def job_filtering(self, scope: tuple[str, tuple[str, ...]] | None) -> str | None:
        """A report run's ``filtering``: the status rule (every job, every part) and the part's ids."""
        rules = [self._status_rule] if self._status_rule else []
        if scope:
            level, ids = scope
            rules.append({"field": f"{level}.id", "operator": "IN", "value": list(ids)})
        return json.dumps(rules) if rules else None

    @cached_property
    def metric_rows(self) -> MetricRows:
        """The report's page decoder: metrics become exact numbers while each page is parsed."""
        return MetricRows(self.schema)

    # -- the partition ---------------------------------------------------------------------------

    # -- the partition: a chain of report runs (``chains.py``) ----------------------------------------

    @override
    def plan_chain(self, context: Context, chains: RunChains) -> None:
        """Plan one account's report on the main thread: its days (from its state) and the account's pacer.

        Every account's report runs are then in flight together, each account's on its chain's thread, up to
        ``insights_jobs_in_flight`` per account; the writer writes one account after another.
        """
        key = str(context["account_id"])
        self._plans[key] = AccountFetch(
            context=dict(context),
            start=ResumePoint(after=None, pages=0, since=None, max_seen=None, cap=None),
            fresh_since=None,
            page_size_limit=int(self.config["page_size"]),
            pacer=chains.pacer(key),
        )
        self._chain_states[key] = checkpoint.peek_context_state(self, context)
        self._day_plans[key] = None

    def _zone(self, account: AccountFetch) -> AccountZone:
        """The account's time zone: one ``GET /act_{id}`` per account per run, shared by the insights streams."""

        def read_account() -> dict[str, Any]:
            url = f"{self.url_base}/act_{account.context['account_id']}"
            params = {"fields": AccountZones.FIELDS}
            body = self.send_with_retries(account, "GET", url, params, endpoint="account_time_zone").json()
            return body if isinstance(body, dict) else {}

        return self.account_zones.get(str(account.context["account_id"]), read_account)

    @override
    def fetch_chain(self, account_id: str) -> Iterator[Any]:
        """The account's report runs, on its chain's thread: chunks of rows and progress marks, in order.

        The account's time zone is read here (one call per account per run, shared by the insights streams),
        then its days are planned in it.
        """
        account = self._plans[account_id]
        stats = account.stats = self.monitor.start(self.name, account_id)
        account.started = True
        if self.monitor.has_failed(account_id):
            raise AccountSkippedError(account_id)
        try:
            zone = self._zone(account)
        except FatalAPIError as exc:
            self.note_account_error(account_id, exc)
            raise
        plan = self._day_plans[account_id] = self._plan_days(account.context, zone, self._chain_states[account_id])
        if plan is None:
            return
        self.logger.info(
            "%s account %s: %s %s..%s (days of %s) in %d windows, up to %d report runs in flight",
            *stats.key,
            "resuming" if plan.resumed else "reading",
            plan.since,
            plan.until,
            zone.name,
            len(plan.windows),
            self._in_flight,
        )
        try:
            yield from _Runner(self, account, plan).rows()
        except FatalAPIError as exc:
            self.note_account_error(account_id, exc)
            raise

    @override
    def write_chain(self, context: Context, account: AccountFetch, items: Iterator[Any]) -> Iterator[dict]:
        """Write an account's rows as its report runs complete; STATE after each contiguous window (main thread)."""
        try:
            for item in items:
                if isinstance(item, _Progress):
                    checkpoint.save_progress(self, context, PROGRESS_KEY, item.progress)
                elif isinstance(item, _Rows):
                    yield from item.rows
        except (FatalAPIError, RetriableAPIError, requests.RequestException) as exc:
            if self.end_failed_account(account, exc, lambda: None):  # its progress is saved already
                return
            account.stats.status = "failed"
            self.monitor.log_partition(self.logger, account.stats)
            if isinstance(exc, GraphAPIError):
                raise
            reason, _ = retry_reason(exc)
            gave_up = "" if isinstance(exc, FatalAPIError) else f"Gave up after {self.backoff_max_tries()} attempts "
            msg = f"{gave_up}on {self.name} account {context['account_id']} ({reason}): {without_query(str(exc))}"
            raise GraphAPIError(msg.strip()) from exc
        plan = self._day_plans[str(context["account_id"])]  # planned on the chain's thread, which has ended
        if plan is not None:
            checkpoint.complete_with(self, context, PROGRESS_KEY, plan.until.isoformat())
        account.stats.status = "complete"
        self.monitor.log_partition(self.logger, account.stats)

    def _plan_days(self, context: Context, zone: AccountZone, state: dict[str, Any] | None = None) -> _Plan | None:
        """The days to read (the account's days): a resumed run's rest, or the lookback, or the history.

        Never a day after the account's today, nor before its 37-month floor (13 months for reach with
        breakdowns).
        """
        state = self.get_context_state(context) if state is None else state
        today = zone.today()
        floor = months_back(today, RETENTION_MONTHS) + datetime.timedelta(days=1)
        reach_floor = None
        if self.report.breakdowns and "reach" in self.selected_fields():
            reach_floor = months_back(today, REACH_BREAKDOWN_MONTHS) + datetime.timedelta(days=1)
        end = self.config.get("end_date")
        until = min(_as_date(end), today) if end else today
        start = self.config.get("start_date")
        start_day = _as_date(start) if start else None
        progress = state.get(PROGRESS_KEY)
        bookmark = state.get("replication_key_value")
        resumed = False
        if isinstance(progress, dict) and _valid_progress(progress):
            since = _as_date(progress["since"])
            if progress.get("done_through"):
                since = _as_date(progress["done_through"]) + datetime.timedelta(days=1)
            until = min(max(until, _as_date(progress["until"])), today)
            resumed = True
        elif isinstance(bookmark, str) and bookmark:
            # the last ``insights_lookback_days`` days up to the bookmark again (0: none), then what is new
            lookback = int(self.config["insights_lookback_days"])
            since = _as_date(bookmark) - datetime.timedelta(days=lookback - 1)
            if start_day:
                since = max(since, start_day)
        else:
            since = start_day or floor
        if since < floor:
            self.logger.warning(
                "%s account %s: Meta keeps 37 months of insights; starting at %s instead of %s",
                self.name,
                context["account_id"],
                floor,
                since,
            )
            since = floor
        if reach_floor and since < reach_floor:
            self.logger.warning(
                "%s account %s: Meta serves reach with breakdowns for the last %d months only; starting at %s "
                "instead of %s (days of %s)",
                self.name,
                context["account_id"],
                REACH_BREAKDOWN_MONTHS,
                reach_floor,
                since,
                zone.name,
            )
            since = floor = reach_floor
        since = self._align(since, floor)
        if since > until:
            return None
        return _Plan(since=since, until=until, windows=self._windows(since, until), resumed=resumed)

    def _align(self, since: datetime.date, floor: datetime.date) -> datetime.date:
        """Start periods of ``time_increment`` days on fixed boundaries, so runs never cut a period."""
        n = self.report.time_increment
        if n == 1:
            return since
        offset = since.toordinal() % n
        aligned = since - datetime.timedelta(days=offset)
        return aligned if aligned >= floor else aligned + datetime.timedelta(days=n)

    def _windows(self, since: datetime.date, until: datetime.date) -> list[tuple[datetime.date, datetime.date]]:
        """Exact, non-overlapping, inclusive day ranges covering since..until."""
        n = self.report.time_increment
        size = math.ceil(self._window_days / n) * n
        windows = []
        first = since
        while first <= until:
            last = min(until, first + datetime.timedelta(days=size - 1))
            windows.append((first, last))
            first = last + datetime.timedelta(days=1)
        return windows

    # -- the calls ---------------------------------------------------------------------------------

    def account_url(self, context: Context) -> str:
        """``.../act_{id}/insights``."""
        return f"{self.url_base}/act_{context['account_id']}/insights"

    def _results_page(self, account: AccountFetch, run_id: str, after: str | None) -> GraphPage:
        params: dict[str, Any] = {"limit": account.page_size}
        if after:
            params["after"] = after
        response = self.send(account, "GET", f"{self.url_base}/{run_id}/insights", params, endpoint="report_run_rows")
        try:
            return GraphPage.from_response(response, self.metric_rows.decode)
        except MetricValueError as exc:
            raise GraphAPIError(f"{self.name}: {exc}") from None

    def list_ids(self, account: AccountFetch, job: Job, level: str) -> list[str]:
        """The ids of the level's objects that delivered in the job's days (and scope), synchronously."""
        params: dict[str, Any] = {
            "level": level,
            "fields": f"{level}_id",
            "time_range": json.dumps({"since": job.since.isoformat(), "until": job.until.isoformat()}),
            "limit": 500,
        }
        filtering = self.job_filtering(job.scope)
        if filtering:
            params["filtering"] = filtering
        ids: list[str] = []
        paginator = CursorPaginator()
        while not paginator.finished:
            if paginator.current_value:
                params["after"] = paginator.current_value
            url = self.account_url(account.context)
            response = self.send_with_retries(account, "GET", url, params, endpoint="insights")
            page = GraphPage.from_response(response)
            ids += [str(r[f"{level}_id"]) for r in page.records if r.get(f"{level}_id")]
            paginator.advance(page)  # type: ignore[arg-type]  # GraphPage, see CursorPaginator
        return sorted(set(ids))

    def writer_at(self, context: Context) -> WriterAt:
        """Whether the writer writes this account's report now, later, or never (``prefetch.WriterAt``)."""
        return self.run_chains().read_ahead.writer_at((self.name, str(context["account_id"])))

    def reserve_ahead(self, context: Context, size: int) -> bool:
        """Room in the chain's and the run's byte bounds to read ``size`` bytes of rows ahead of the writer."""
        return self.run_chains().read_ahead.reserve((self.name, str(context["account_id"])), size)

    def release_ahead(self, size: int) -> None:
        """Give back a ``reserve_ahead``."""
        self.run_chains().read_ahead.release(size)

    @property
    def report_runs_cap(self) -> ReportRunCap:
        """Report runs in flight over every account of the run (``insights_jobs_in_flight_total``)."""
        return self.run_chains().report_runs

    @property
    def in_flight(self) -> int:
        """How many report runs may be in flight at once."""
        return self._in_flight

    @property
    def first_poll_seconds(self) -> float:
        """The wait before a run's first poll; later waits grow by ``POLL_GROWTH``."""
        return self._poll_first

    @property
    def stuck_after_seconds(self) -> float:
        """A run whose percentage has not moved for this long is stuck."""
        return self._stuck_after

    @property
    def attempts_per_job(self) -> int:
        """Submissions of one job before it is split."""
        return self._attempts


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


def status_rule(level: str, statuses: Iterable[str]) -> dict[str, Any] | None:
    """``{"field": "<level>.effective_status", "operator": "IN", "value": [...]}`` from ``effective_statuses``.

    Without it Meta applies its default status filter and leaves archived objects' rows out
    (airbytehq/airbyte#36998). ``None`` at account level (the account's totals take no status filter) and
    when no status of the setting is one the level has (Meta's default then applies).
    """
    if level == "account":
        return None
    values = [s for s in dict.fromkeys(statuses) if s in LEVEL_STATUSES[level]]
    return {"field": f"{level}.effective_status", "operator": "IN", "value": values} if values else None


def _as_date(value: object) -> datetime.date:
    text = str(value)
    return datetime.date.fromisoformat(text[:10])


def _valid_progress(progress: dict[str, Any]) -> bool:
    try:
        _as_date(progress["since"])
        _as_date(progress["until"])
        if progress.get("done_through"):
            _as_date(progress["done_through"])
    except (KeyError, TypeError, ValueError):
        return False
    return True


class _Runner:
    """One account's report: windows in order, report runs in flight, the contiguous-days frontier."""

    def __init__(self, stream: InsightsStream, account: AccountFetch, plan: _Plan) -> None:
        self.stream = stream
        self.account = account
        self.context = account.context
        self.plan = plan
        self.params = stream.report_params()
        self.pending: deque[Job] = deque()
        self.running: list[Job] = []
        self.open_parts: dict[int, int] = {}
        self.rows_read = 0
        self.next_window = 0
        self.frontier = 0  # windows before this index are complete
        self.done: set[int] = set()
        self.floor = plan.since
        self.marks: list[_Progress] = []
        self.cap = stream.report_runs_cap

    # -- the loop ------------------------------------------------------------------------------------

    def rows(self) -> Iterator[_Rows | _Progress | _Proven]:
        """Every row of the plan, one chunk per report run as it completes; a progress mark after each window.

        Runs on the account's chain thread: the marks are written to STATE by the writer (``write_chain``),
        after the rows before them, so a STATE never covers rows that were only fetched.
        """
        self._save(done_through=None)
        yield from self._marks()
        try:
            yield from self._loop()
        finally:
            for job in self.running:  # a run that stops early gives its running report runs' places back
                if not job.ready:
                    self.cap.give()

    def _loop(self) -> Iterator[_Rows | _Progress | _Proven]:
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
                return
            if not proven:
                proven = True
                yield _Proven()
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
            try:
                rows = self._collect(job)
            except _RunFailedError as exc:
                self.stream.release_ahead(reserved)
                self.running.remove(job)  # its place in the cap was given back when it completed
                self._failed(job, exc)
                continue
            self.running.remove(job)
            self._finished(job, rows)
            size = len(rows) * ROW_BYTES_ESTIMATE
            self.stream.last_run_bytes = size
            self.stream.release_ahead(reserved)  # the queue counts the rows' real size from here
            yield _Rows(rows, size)
            yield from self._marks()

    def _reserve(self, writer: WriterAt) -> int | None:
        """Bytes reserved to read a completed run's rows now (0: the writer is here, nothing to reserve); None: wait."""
        if writer is WriterAt.NOW:
            return 0
        if writer is WriterAt.NEVER:
            return None
        size = self.stream.last_run_bytes
        return size if self.stream.reserve_ahead(self.context, size) else None

    def _poll_next(self, *, wait_for_writer: bool) -> Job | None:
        """Poll the run due first (waiting for it); the run if it just completed, else None.

        ``wait_for_writer``: a completed run waits for the writer or for room, so the wait is short
        (``AWAIT_WRITER_SECONDS``) and the caller looks again.
        """
        waiting = [j for j in self.running if not j.ready]
        if not waiting:  # every run is complete: the writer is still on an earlier account
            time.sleep(AWAIT_WRITER_SECONDS)
            return None
        job = min(waiting, key=lambda j: j.next_poll)
        wait = job.next_poll - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, AWAIT_WRITER_SECONDS) if wait_for_writer else wait)
            if wait_for_writer:
                return None
        try:
            if not self._poll(job):
                return None
        except _RunFailedError as exc:
            self.running.remove(job)
            self.cap.give()
            self._failed(job, exc)
            return None
        job.ready = True
        self.cap.give()  # complete: it no longer runs at Meta, whether or not its rows wait there for room
        return job

    def _fill(self) -> None:
        """Submit jobs while fewer than ``in_flight`` run, admitting windows only near the frontier."""
        limit = self.stream.in_flight
        while len(self.running) < limit:
            if not self.pending:
                if self.next_window >= len(self.plan.windows) or self.next_window >= self.frontier + limit:
                    return
                since, until = self.plan.windows[self.next_window]
                self.pending.append(Job(self.next_window, since, until))
                self.open_parts[self.next_window] = 1
                self.next_window += 1
            # the run's cap; the account being written, or one with no run in flight, always may
            if not self.cap.take(force=not self.running or self.stream.writer_at(self.context) is WriterAt.NOW):
                return
            job = self.pending.popleft()
            try:
                self._submit(job)
            except BaseException:
                self.cap.give()
                raise
            self.running.append(job)

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
        """Poll the run once: True when it is complete; _RunFailedError when it will never be."""
        response = self.stream.send_with_retries(
            self.account, "GET", f"{self.stream.url_base}/{job.run_id}", {}, endpoint="report_run"
        )
        doc = response.json()
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
            raise _RunFailedError(kind, f"{status}{' (' + detail + ')' if detail else ''}")
        if percent > job.percent:
            job.percent, job.progress_at = percent, now
        elif now - job.progress_at > self.stream.stuck_after_seconds:
            msg = f"stuck at {percent}% for {now - job.progress_at:.1f}s ({status})"
            raise _RunFailedError("stuck", msg)
        job.interval, wait = next_poll(job.interval, self.stream.first_poll_seconds, now - job.submitted_at, percent)
        job.next_poll = now + wait
        return False

    def _collect(self, job: Job) -> list[dict]:
        """Every row of a completed run (held until the last page, so a lost run yields nothing twice)."""
        assert job.run_id is not None
        stats = self.account.stats
        rows: list[dict] = []
        paginator = CursorPaginator()
        while not paginator.finished:
            try:
                page = self.stream._page_with_retries(self.account, job.run_id, paginator.current_value)
            except ReportRunLostError as exc:
                raise _RunFailedError("lost", f"results lost: {exc}") from None
            rows += page.records
            if stats:
                stats.pages += 1
            paginator.advance(page)  # type: ignore[arg-type]  # GraphPage, see CursorPaginator
        return rows

    # -- outcomes -----------------------------------------------------------------------------------

    def _finished(self, job: Job, rows: list[dict]) -> None:
        count = len(rows)
        stats = self.account.stats
        self.rows_read += count
        if stats:
            stats.records += count
        if Reconciliation.compares(self.stream.name):
            fields = set(self.stream.selected_fields())
            self.stream.monitor.reconciliation.add_rows(self.stream.name, str(self.context["account_id"]), rows, fields)
        self.stream.logger.info(
            "%s account %s %s: %d rows (report run %s, %d polls, attempt %d)",
            self.stream.name,
            self.context["account_id"],
            job.describe(),
            count,
            job.run_id,
            job.polls,
            job.attempts,
        )
        self._part_done(job.window)

    def _part_done(self, window: int) -> None:
        self.open_parts[window] -= 1
        if self.open_parts[window] > 0:
            return
        self.done.add(window)
        if Reconciliation.compares(self.stream.name):  # every row of those days has been read
            since, until = self.plan.windows[window]
            self.stream.monitor.reconciliation.cover(self.stream.name, str(self.context["account_id"]), since, until)
        moved = False
        while self.frontier in self.done:
            self.frontier += 1
            moved = True
        if moved:
            self._save(done_through=self.plan.windows[self.frontier - 1][1])

    def _save(self, done_through: datetime.date | None) -> None:
        """The run's range and its contiguous completed days, in STATE: where a killed run resumes."""
        progress = {
            "since": self.plan.since.isoformat(),
            "until": self.plan.until.isoformat(),
            "done_through": done_through.isoformat() if done_through else None,
        }
        self.marks.append(_Progress(progress))

    def _marks(self) -> Iterator[_Progress]:
        while self.marks:
            yield self.marks.pop(0)

    def _failed(self, job: Job, failure: _RunFailedError) -> None:
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
        if not parts:
            self._part_done(job.window)  # no object delivered in those days: no rows to read
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
