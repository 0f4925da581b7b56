"""TapMetaAds: the settings, their validation and the stream list. Knows nothing of HTTP."""

from __future__ import annotations

import datetime
import json
import re
import sys
from functools import cached_property
from typing import Any

import click
from singer_sdk import Tap
from singer_sdk import typing as th
from typing_extensions import override

from tap_meta_ads import accounts, cli, inputs, redact
from tap_meta_ads.account_days import AccountZones
from tap_meta_ads.accounts import ACCOUNT_STATUSES, DEFAULT_ACCOUNT_STATUSES, AdAccount
from tap_meta_ads.calls import appsecret_proof
from tap_meta_ads.checkpoint import StateLineWriter
from tap_meta_ads.insights import InsightsStream
from tap_meta_ads.monitor import RunMonitor
from tap_meta_ads.reports import ACTION_BREAKDOWNS, ATTRIBUTION_WINDOWS, LEVELS, report_problems, reports_from_config
from tap_meta_ads.session import session_of_run
from tap_meta_ads.streams import STREAM_TYPES
from tap_meta_ads.token_health import TokenHealth

#: The insights streams the tap declares (``ads_insights`` and the presets): a custom report may not take a name.
PRESET_NAMES = frozenset(t.report.name for t in STREAM_TYPES if issubclass(t, InsightsStream))

DEFAULT_API_VERSION = "v25.0"
#: Meta budgets ads_management calls per ad account (business use case limits), not per app, so
#: accounts read at once do not share a budget; insights add an app-wide throttle, which every
#: account's fetcher reads and paces by. Four keep a latency-bound run of many small accounts about
#: four times faster without opening more than a few connections; more rarely pays, because one
#: account is written at a time and a large account is bound by its own budget.
DEFAULT_PARALLEL_ACCOUNTS = 4
MAX_PARALLEL_ACCOUNTS = 10
#: Graph API calls a run keeps in flight at most, over every stream and account. Sized for Meta, not for
#: a local stand-in: a call takes 0.2-2 s there, so 32 calls in flight are 16-160 calls a second, which is
#: what a night of hundreds of accounts needs, while each ad account's own budget (ads_management: 300
#: calls an hour on the limited tier, 100,000 + 40 per active ad on standard) is paced from its usage
#: headers, and the app's budget (``x-app-usage``) from the same headers by every chain. The connection
#: pool keeps this many connections, so no call waits for one.
DEFAULT_MAX_CONCURRENT_REQUESTS = 32
MAX_CONCURRENT_REQUESTS = 256
API_VERSION_PATTERN = re.compile(r"^v\d{2}\.0$")
ACCOUNT_ID_PATTERN = re.compile(r"^(act_)?\d+$")
#: Every effective status an ad can have except DELETED: a backup keeps ARCHIVED ads too.
DEFAULT_EFFECTIVE_STATUSES = (
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
)


class TapMetaAds(Tap):
    """Extracts a client's Meta (Facebook/Instagram) ads data through the Marketing API."""

    name = "tap-meta-ads"
    package_name = "tap-meta-ads"
    message_writer_class = cli.SingerOutput
    #: The monitor of the tap this process built last: ``main`` logs its run summary at exit.
    last_monitor: RunMonitor | None = None

    config_jsonschema = th.PropertiesList(
        th.Property(
            "access_token",
            th.StringType(min_length=1),
            required=True,
            secret=True,
            title="Access token",
            description="Meta Marketing API access token with ads_read. Sent only in the Authorization header.",
        ),
        th.Property(
            "account_ids",
            th.ArrayType(th.StringType(pattern=ACCOUNT_ID_PATTERN.pattern)),
            title="Ad account ids",
            description="Ad accounts to extract, as `act_123` or `123`; each is one state partition. Absent or "
            "empty: the accounts of business_ids, or else every account of the token (/me/adaccounts).",
        ),
        th.Property(
            "business_ids",
            th.ArrayType(th.StringType(pattern=r"^\d+$")),
            default=[],
            title="Business ids",
            description="Without account_ids: extract the owned and client ad accounts of these businesses "
            "instead of the token's /me/adaccounts.",
        ),
        th.Property(
            "account_statuses",
            th.ArrayType(th.IntegerType(allowed_values=sorted(ACCOUNT_STATUSES))),
            default=list(DEFAULT_ACCOUNT_STATUSES),
            title="Account statuses",
            description="Discovered accounts are kept when their account_status is one of these (Meta's codes: "
            "1 ACTIVE, 2 DISABLED, 3 UNSETTLED, 7 PENDING_RISK_REVIEW, 8 PENDING_SETTLEMENT, 9 IN_GRACE_PERIOD, "
            "100 PENDING_CLOSURE, 101 CLOSED). Default: all but CLOSED, whose data no longer changes.",
        ),
        th.Property(
            "exclude_account_ids",
            th.ArrayType(th.StringType(pattern=ACCOUNT_ID_PATTERN.pattern)),
            default=[],
            title="Excluded ad accounts",
            description="Ad accounts never extracted, whether listed in account_ids or discovered.",
        ),
        th.Property(
            "on_account_error",
            th.StringType(allowed_values=["fail", "skip"]),
            default="fail",
            title="When one ad account fails",
            description="An account that denies access, is unknown or disabled (see the docs) ends alone: every "
            "other account and stream completes and its STATE is written. fail: the run then exits 1; skip: "
            "exit 0 with the same ERROR lines. Either way the run summary lists the failed accounts.",
        ),
        th.Property(
            "start_date",
            th.DateTimeType,
            title="Start date",
            description="Only objects updated at or after this time (ISO 8601). Absent: all history.",
        ),
        th.Property(
            "api_version",
            th.StringType(pattern=API_VERSION_PATTERN.pattern),
            default=DEFAULT_API_VERSION,
            title="Graph API version",
            description="Marketing API version, as `vNN.0`.",
        ),
        th.Property(
            "api_url",
            th.URIType,
            default="https://graph.facebook.com",
            title="Graph API base URL",
            description="Base URL of the Graph API; point it at the sandbox for offline runs and tests.",
        ),
        th.Property(
            "page_size",
            th.IntegerType(minimum=1, maximum=5000),
            default=100,
            title="Page size",
            description="Rows per request (`limit`). Halved automatically when Meta asks for less data.",
        ),
        th.Property(
            "request_timeout_seconds",
            th.NumberType(minimum=1),
            default=120,
            title="Request timeout (seconds)",
            description="How long one HTTP request may take before it is retried.",
        ),
        th.Property(
            "app_secret",
            th.StringType,
            secret=True,
            title="App secret",
            description="When set, every request carries `appsecret_proof` (HMAC-SHA256 of the token).",
        ),
        th.Property(
            "effective_statuses",
            th.ArrayType(th.StringType),
            default=list(DEFAULT_EFFECTIVE_STATUSES),
            title="Effective statuses",
            description="Which effective statuses to extract. The default includes ARCHIVED; add DELETED "
            "to back up deleted objects too. Every insights report run filters on these statuses (Meta leaves "
            "archived ads' rows out otherwise); deleted ads' rows are only in ads_insights_account's totals.",
        ),
        th.Property(
            "max_retries",
            th.IntegerType(minimum=0),
            default=10,
            title="Maximum retries",
            description="Retries of one request (throttling, transient faults) before the run stops.",
        ),
        th.Property(
            "backoff_base_seconds",
            th.NumberType(minimum=0),
            default=5,
            title="Backoff base (seconds)",
            description="First wait of the exponential backoff when Meta gives no hint.",
        ),
        th.Property(
            "backoff_max_seconds",
            th.NumberType(minimum=0),
            default=900,
            title="Backoff cap (seconds)",
            description="Longest single wait, whatever Meta's hint says.",
        ),
        th.Property(
            "throttle_threshold_pct",
            th.NumberType(minimum=1, maximum=100),
            default=75,
            title="Pacing threshold (%)",
            description="Usage percentage (from Meta's usage headers) above which the tap slows down.",
        ),
        th.Property(
            "checkpoint_every_pages",
            th.IntegerType(minimum=1),
            default=10,
            title="Checkpoint every N pages",
            description="Pages between STATE messages that save the paging cursor for resume.",
        ),
        th.Property(
            "parallel_accounts",
            th.IntegerType(minimum=1, maximum=MAX_PARALLEL_ACCOUNTS),
            default=DEFAULT_PARALLEL_ACCOUNTS,
            title="Accounts read at once",
            description="Deprecated and ignored: every (stream, account) chain is read at once, under "
            "max_concurrent_requests.",
        ),
        th.Property(
            "max_concurrent_requests",
            th.IntegerType(minimum=1, maximum=MAX_CONCURRENT_REQUESTS),
            default=DEFAULT_MAX_CONCURRENT_REQUESTS,
            title="Calls in flight",
            description="Graph API calls in flight at once over every stream and account (the connection "
            "pool's size). Each account is still paced by its own usage headers.",
        ),
        th.Property(
            "end_date",
            th.DateType,
            title="End date",
            description="Last day of insights to extract (inclusive), a day of each ad account's time zone. "
            "Absent: each account's today.",
        ),
        th.Property(
            "insights_lookback_days",
            th.IntegerType(minimum=0, maximum=365),
            default=28,
            title="Insights lookback (days)",
            description="Each run reads the last this many days up to the bookmark again: Meta's numbers "
            "keep changing for 28 days (attribution). Rows upsert on their key. 0: only new days.",
        ),
        th.Property(
            "insight_reports",
            th.ArrayType(
                th.ObjectType(
                    th.Property("name", th.StringType, required=True, description="Stream ads_insights_<name>."),
                    th.Property("level", th.StringType, allowed_values=list(LEVELS), description="Default ad."),
                    th.Property("fields", th.ArrayType(th.StringType), description="Default: all of the level."),
                    th.Property("breakdowns", th.ArrayType(th.StringType), description="Each becomes a key column."),
                    th.Property(
                        "action_breakdowns",
                        th.ArrayType(th.StringType),
                        description=f"Default [action_type]; any of {', '.join(ACTION_BREAKDOWNS)}.",
                    ),
                    th.Property(
                        "action_attribution_windows",
                        th.ArrayType(th.StringType),
                        description=f"Default [1d_click, 7d_click, 1d_view]; any of {', '.join(ATTRIBUTION_WINDOWS)} "
                        "(7d_view and 28d_view were retired by Meta on 2026-01-12).",
                    ),
                    th.Property("time_increment", th.IntegerType(minimum=1, maximum=90), description="Days per row."),
                    additional_properties=False,
                )
            ),
            default=[],
            title="Custom insights reports",
            description="Extra insights reports, each the stream ads_insights_<name>: {name, level, fields, "
            "breakdowns, action_breakdowns, action_attribution_windows, time_increment}.",
        ),
        th.Property(
            "insights_window_days",
            th.IntegerType(minimum=1, maximum=90),
            default=7,
            title="Days per report run",
            description="Days one async report run covers; a run that keeps failing is split further.",
        ),
        th.Property(
            "insights_jobs_in_flight",
            th.IntegerType(minimum=1, maximum=100),
            default=10,
            title="Report runs in flight",
            description="Async report runs kept running at once per ad account.",
        ),
        th.Property(
            "insights_jobs_in_flight_total",
            th.IntegerType(minimum=1, maximum=1000),
            default=100,
            title="Report runs in flight (run)",
            description="Async report runs in flight at once over every ad account of the run (each account "
            "within insights_jobs_in_flight), given to the accounts in the order they are written; the account "
            "being written may always start one. Meta states no fixed limit; its insights throttle header paces "
            "the calls.",
        ),
        th.Property(
            "insights_poll_interval_seconds",
            th.NumberType(minimum=0),
            default=5,
            title="First poll wait (seconds)",
            description="Wait before a report run's first status poll; it grows 1.5x per poll, to 12x.",
        ),
        th.Property(
            "insights_job_timeout_seconds",
            th.NumberType(minimum=0),
            default=1800,
            title="Stuck report run (seconds)",
            description="A report run whose progress has not moved for this long is submitted again.",
        ),
        th.Property(
            "asset_max_bytes",
            th.IntegerType(minimum=1),
            default=10_000_000,
            title="Largest creative file (bytes)",
            description="ad_assets skips (and counts) image and thumbnail files larger than this; they are "
            "tried again on the next run.",
        ),
        th.Property(
            "check_token",
            th.BooleanType,
            default=True,
            title="Check the token at start",
            description="Before extracting, inspect the access token (debug_token: expiry, scopes) and check that "
            "it sees every configured account; a token that cannot work stops the run with one line.",
        ),
        th.Property(
            "token_expiry_warning_days",
            th.IntegerType(minimum=0),
            default=7,
            title="Token expiry warning (days)",
            description="At start the tap inspects the access token (debug_token) and warns when it or the app's "
            "data access expires in fewer days than this.",
        ),
        th.Property(
            "insights_job_attempts",
            th.IntegerType(minimum=1),
            default=3,
            title="Report run attempts",
            description="Submissions of a failing, skipped or stuck report run before it is split.",
        ),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - the SDK's signature
        self.monitor = TapMetaAds.last_monitor = RunMonitor()
        self.account_zones = AccountZones()  # each account's time zone, read once per run (insights)
        super().__init__(*args, **kwargs)
        self._state_writer = StateLineWriter(self.message_writer)  # the SDK's, without a deep copy per STATE
        # Before the first stream reads anything (``Tap.sync_all`` is final in the SDK, so the streams call it):
        # a token that cannot work stops the run with one line before any extraction.
        if self.config.get("check_token", True):
            self.monitor.preflight = TokenHealth(dict(self.config), self.logger, self.monitor).check
        token, app_secret = self.config.get("access_token") or "", self.config.get("app_secret")
        redact.install([token, app_secret or "", appsecret_proof(token, app_secret) or ""])
        self.monitor.fail_on_account_error = self.config.get("on_account_error", "fail") != "skip"

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Add the checks JSON schema cannot express, with one line naming each setting.

        The schema's validation runs first in every mode: it is what fills in the defaults, so ``--discover``
        with a config that lacks optional settings works as a sync does. Problems raise in every mode too
        (the SDK only validates for a sync), as ``inputs.SettingsError``: one line per setting, the same
        lines for ``--discover`` and a sync (``cli.run``). Numbers written as text are read as numbers first
        (``inputs.numbers_from_text``): that is how a ``number`` setting arrives from
        ``TAP_META_ADS_<SETTING>``, ``.env`` or ``--config ENV``.
        """
        self._config = inputs.numbers_from_text(self._config, self.config_jsonschema)
        schema_errors = super()._validate_config(raise_errors=False)
        errors = config_problems(self._config) or schema_errors
        if errors:
            raise inputs.SettingsError(errors)
        return errors

    @cached_property
    def ad_accounts(self) -> list[AdAccount]:
        """The run's ad accounts (``accounts.py``): read once, when the first stream asks for its partitions."""
        config = self.config
        session = session_of_run(self, int(config["max_concurrent_requests"]))
        proof = appsecret_proof(config["access_token"], config.get("app_secret"))
        return accounts.resolve(config, accounts.AccountLister(session, config, proof), self.logger)

    @override
    def discover_streams(self) -> list[Any]:
        streams = [stream_type(tap=self) for stream_type in STREAM_TYPES]
        streams += [InsightsStream(tap=self, report=spec) for spec in reports_from_config(self.config, PRESET_NAMES)]
        for stream in streams:
            stream.monitor = self.monitor
            cli.quiet_sdk_notices(stream.logger)
        return streams

    @classmethod
    @override
    def get_singer_command(cls) -> click.Command:
        """The SDK's command line plus ``--list-accounts``: the run's ad accounts as JSON, for sharding."""
        command = super().get_singer_command()
        command.params.append(
            click.Option(
                ["--list-accounts"],
                is_flag=True,
                help="Print the ad accounts a sync would read (account_ids, or discovered) as JSON, and exit.",
                callback=cls.cb_list_accounts,
                expose_value=False,
            )
        )
        return command

    @classmethod
    def cb_list_accounts(cls, ctx: click.Context, _param: click.Option, value: bool) -> None:  # noqa: FBT001 - click's signature
        """Print ``[{"account_id", "name", "account_status"}, ...]`` (the orchestrator shards this list)."""
        if not value:
            return
        given = ctx.params.get("config")
        tap = cls(
            config=dict(getattr(given, "config", None) or {}),
            parse_env_config=bool(getattr(given, "parse_env", False)),
            validate_config=True,
            setup_mapper=False,
        )
        listed = [{"account_id": a.account_id, "name": a.name, "account_status": a.status} for a in tap.ad_accounts]
        sys.stdout.write(json.dumps(listed) + "\n")
        ctx.exit()

    @override
    def load_state(self, state: dict[str, Any]) -> None:
        """Check the catalog and the state against this tap's streams first: what it cannot use is one clear line.

        (The SDK reads the catalog just before the state, in ``__init__``; this is its validation hook.)
        """
        if self.input_catalog is not None:
            unknown = inputs.check_catalog_for_streams(self.input_catalog, self.streams)
            if unknown:
                self.logger.warning(
                    "The catalog lists streams this tap does not have (%s): ignored", ", ".join(unknown)
                )
        if state.get("bookmarks"):
            unknown = inputs.check_state_for_streams(state, self.streams)
            if unknown:
                self.logger.warning(
                    "The state has bookmarks for streams this tap does not have (%s): kept, and ignored",
                    ", ".join(unknown),
                )
        super().load_state(state)


def config_problems(config: dict[str, Any]) -> list[str]:
    """Semantic checks, each a one-line message that names the setting."""
    problems: list[str] = []
    if not config.get("access_token"):
        problems.append("access_token: required, and must not be empty")
    problems.extend(_account_problems(config))
    start = config.get("start_date")
    if start is not None:
        try:
            datetime.datetime.fromisoformat(str(start))
        except ValueError:
            problems.append(f"start_date: {start!r} is not an ISO 8601 date or date-time")
    end = config.get("end_date")
    if end is not None:
        try:
            datetime.date.fromisoformat(str(end)[:10])
        except ValueError:
            problems.append(f"end_date: {end!r} is not an ISO 8601 date")
    problems.extend(report_problems(config, PRESET_NAMES))
    version = config.get("api_version")
    if version is not None and not API_VERSION_PATTERN.match(str(version)):
        problems.append(f"api_version: {version!r} is not of the form vNN.0 (for example {DEFAULT_API_VERSION})")
    return problems


def _account_problems(config: dict[str, Any]) -> list[str]:
    """The settings that choose the run's ad accounts (``accounts.py``)."""
    problems: list[str] = []
    for name in ("account_ids", "exclude_account_ids"):
        ids = config.get(name)
        if ids is None:
            continue
        if not isinstance(ids, list):
            problems.append(f'{name}: must be a list of ad account ids, such as ["act_123", "456"]')
            continue
        bad = [a for a in ids if not isinstance(a, str) or not ACCOUNT_ID_PATTERN.match(a.strip())]
        if bad:
            problems.append(f"{name}: {bad!r} are not ad account ids (expected act_123 or 123)")
    businesses = config.get("business_ids")
    if businesses is not None and (
        not isinstance(businesses, list) or not all(isinstance(b, str) and b.strip().isdigit() for b in businesses)
    ):
        problems.append(f'business_ids: {businesses!r} must be a list of business ids (digits, such as "123")')
    statuses = config.get("account_statuses")
    if statuses is not None:
        known = sorted(ACCOUNT_STATUSES)
        if not isinstance(statuses, list) or not statuses or any(s not in ACCOUNT_STATUSES for s in statuses):
            problems.append(f"account_statuses: {statuses!r} must be a non-empty list of Meta's codes {known}")
    return problems


def main() -> None:
    """Console entry point ``tap-meta-ads``: the SDK's command line, inside the tap's process boundary (``cli.py``)."""
    cli.run(TapMetaAds)


if __name__ == "__main__":
    main()
