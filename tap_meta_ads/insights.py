"""Ads Insights through Meta's asynchronous report runs: windows, runs in flight, splits, state.

What a report may ask for (levels, fields, breakdowns, attribution) is ``reports.py``; this module runs them.
The report runs' life cycle (submit, poll through the run's one poller, collect, resubmit, split) lives in
``report_runs.py`` (``Runner``); this module keeps the stream's side: an account's days and windows, the
report's parameters, and the STATE marks the runner's progress becomes.

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
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from typing import Any

import msgspec
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
from tap_meta_ads.errors import AccountSkippedError, GraphAPIError
from tap_meta_ads.metric_values import MetricRows, MetricValueError
from tap_meta_ads.pages import CursorPaginator, GraphPage
from tap_meta_ads.partitions import AccountFetch
from tap_meta_ads.prefetch import WriterAt
from tap_meta_ads.reconcile import Reconciliation
from tap_meta_ads.report_runs import (
    FIRST_RUN_BYTES_GUESS,
    Job,
    Plan,
    PollAnswer,
    Progress,
    ReportPoller,
    Rows,
    Runner,
)
from tap_meta_ads.reports import ALWAYS_RETURNED, ReportSpec, report_schema
from tap_meta_ads.retries import retry_reason

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
PROGRESS_KEY = "insights_progress"


def months_back(day: datetime.date, months: int) -> datetime.date:
    """The same day of the month ``months`` earlier, clamped to the month's length."""
    year, month0 = divmod(day.year * 12 + day.month - 1 - months, 12)
    return datetime.date(year, month0 + 1, min(day.day, calendar.monthrange(year, month0 + 1)[1]))


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
        self._day_plans: dict[str, Plan | None] = {}
        #: The last completed report run's rows in memory (bytes): what a run read ahead of the writer reserves.
        #: Until one is read, a guess (a guess of 0 let every account read a run ahead at once: bench_accounts.py).
        self.last_run_bytes = FIRST_RUN_BYTES_GUESS
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
        try:
            yield from self._account_chain(account_id)
        finally:  # the account needs no more places in the run's report-run cap (it may have taken none)
            self.report_runs_cap.done((self.name, account_id))

    def _account_chain(self, account_id: str) -> Iterator[Any]:
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
            yield from Runner(self, account, plan).rows()
        except FatalAPIError as exc:
            self.note_account_error(account_id, exc)
            raise

    @override
    def write_chain(self, context: Context, account: AccountFetch, items: Iterator[Any]) -> Iterator[dict]:
        """Write an account's rows as its report runs complete; STATE after each contiguous window (main thread)."""
        try:
            for item in items:
                if isinstance(item, Progress):
                    checkpoint.save_progress(self, context, PROGRESS_KEY, item.progress)
                elif isinstance(item, Rows):
                    yield from self._run_rows(account, item)
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

    def _run_rows(self, account: AccountFetch, run: Rows) -> list[dict[str, Any]]:
        """A completed report run's rows, built now from the bodies its chain read; counted, reconciled, logged.

        Built by the writer, not the chain (see ``Rows``), and all of them before the first is written, as when
        the chain built them: a page Meta sent wrong fails the account before any row of its run is written.
        """
        job = run.job
        account_id = str(account.context["account_id"])
        where = f"{self.name} account {account_id} {job.describe()} (report run {job.run_id})"
        try:
            rows = run.decode(self.metric_rows.decode_rows)
        except MetricValueError as exc:
            raise GraphAPIError(f"{where}: {exc}") from None
        except msgspec.DecodeError as exc:
            raise GraphAPIError(f"{where}: Meta sent rows that are not a list of objects ({exc})") from None
        account.stats.records += len(rows)
        if Reconciliation.compares(self.name):
            self.monitor.reconciliation.add_rows(self.name, account_id, rows, set(self.selected_fields()))
            if run.covers:  # every row of those days has been read and is now counted
                self.monitor.reconciliation.cover(self.name, account_id, *run.covers)
        self.logger.info(
            "%s account %s %s: %d rows (report run %s, %d polls, attempt %d)",
            self.name,
            account_id,
            job.describe(),
            len(rows),
            job.run_id,
            job.polls,
            job.attempts,
        )
        return rows

    def _plan_days(self, context: Context, zone: AccountZone, state: dict[str, Any] | None = None) -> Plan | None:
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
        return Plan(since=since, until=until, windows=self._windows(since, until), resumed=resumed)

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
        return GraphPage.from_response(response)  # its rows are built by the writer (``_run_rows``)

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
    def report_poller(self) -> ReportPoller:
        """The run's one poller of report runs, shared by every account and insights stream."""
        return self.run_chains().report_poller

    def poll_batch(self, account: AccountFetch, run_ids: list[str]) -> list[PollAnswer | None]:
        """Poll ``run_ids`` in one batch call (Meta's batch requests), carried by ``account``'s call.

        Sent as Meta's SDKs send batches: ``POST`` to the Graph API's root with ``batch``, each entry a
        ``relative_url`` with the version; the token travels in the header of the one call, as on every call.
        An entry Meta did not answer, or answered with something that is not an answer, is ``None``.
        """
        version = self.config["api_version"]
        batch = [{"method": "GET", "relative_url": f"{version}/{run_id}"} for run_id in run_ids]
        url = f"{self.config['api_url'].rstrip('/')}/"
        params = {"batch": json.dumps(batch, separators=(",", ":")), "include_headers": "true"}
        body = self.send_with_retries(account, "POST", url, params, endpoint="report_run_batch").json()
        if not isinstance(body, list) or len(body) != len(run_ids):
            return [None] * len(run_ids)
        return [_poll_answer(entry) for entry in body]

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


def _poll_answer(entry: object) -> PollAnswer | None:
    """One entry of a batch's answer (``{"code", "headers": [{"name", "value"}], "body": "<JSON text>"}``)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("code"), int):
        return None
    headers = {
        str(h["name"]).lower(): str(h["value"])
        for h in entry.get("headers") or []
        if isinstance(h, dict) and "name" in h and "value" in h
    }
    try:
        body = json.loads(entry.get("body") or "null")
    except (TypeError, ValueError):
        return None
    return PollAnswer(entry["code"], headers, body)


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
