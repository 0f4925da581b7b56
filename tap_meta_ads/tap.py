"""TapMetaAds: the settings, their validation and the stream list. Knows nothing of HTTP."""

from __future__ import annotations

import datetime
import re
from typing import Any

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from typing_extensions import override

from tap_meta_ads import cli, inputs, redact
from tap_meta_ads.client import appsecret_proof
from tap_meta_ads.insights import (
    ACTION_BREAKDOWNS,
    ATTRIBUTION_WINDOWS,
    LEVELS,
    InsightsStream,
    report_problems,
    reports_from_config,
)
from tap_meta_ads.monitor import RunMonitor
from tap_meta_ads.streams import STREAM_TYPES

DEFAULT_API_VERSION = "v25.0"
#: Meta budgets ads_management calls per ad account (business use case limits), not per app, so
#: accounts read at once do not share a budget; insights add an app-wide throttle, which every
#: account's fetcher reads and paces by. Four keep a latency-bound run of many small accounts about
#: four times faster without opening more than a few connections; more rarely pays, because one
#: account is written at a time and a large account is bound by its own budget.
DEFAULT_PARALLEL_ACCOUNTS = 4
MAX_PARALLEL_ACCOUNTS = 10  # requests' connection pool keeps 10 connections per host
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
            required=True,
            title="Ad account ids",
            description="Ad accounts to extract, as `act_123` or `123`; each is one state partition.",
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
            "to back up deleted objects too.",
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
            description="How many ad accounts are fetched at the same time (each has its own rate budget; "
            "records and STATE are still written one account after another). 1 reads them in turn.",
        ),
        th.Property(
            "end_date",
            th.DateType,
            title="End date",
            description="Last day of insights to extract (inclusive). Absent: today (UTC).",
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
                        description=f"Default [1d_click, 7d_click, 1d_view]; any of {', '.join(ATTRIBUTION_WINDOWS)}.",
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
            "insights_job_attempts",
            th.IntegerType(minimum=1),
            default=3,
            title="Report run attempts",
            description="Submissions of a failing, skipped or stuck report run before it is split.",
        ),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - the SDK's signature
        self.monitor = TapMetaAds.last_monitor = RunMonitor()
        super().__init__(*args, **kwargs)
        token, app_secret = self.config.get("access_token") or "", self.config.get("app_secret")
        redact.install([token, app_secret or "", appsecret_proof(token, app_secret) or ""])

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Add the checks JSON schema cannot express, with one line naming each setting.

        Numbers written as text are read as numbers first (``inputs.numbers_from_text``): that is how a
        ``number`` setting arrives from ``TAP_META_ADS_<SETTING>``, ``.env`` or ``--config ENV``.
        """
        self._config = inputs.numbers_from_text(self._config, self.config_jsonschema)
        errors = config_problems(self._config) or super()._validate_config(raise_errors=False)
        if errors and raise_errors:
            raise ConfigValidationError(errors[0], errors=errors)
        return errors

    @override
    def discover_streams(self) -> list[Any]:
        streams = [stream_type(tap=self) for stream_type in STREAM_TYPES]
        streams += [InsightsStream(tap=self, report=spec) for spec in reports_from_config(self.config)]
        for stream in streams:
            stream.monitor = self.monitor
            cli.quiet_sdk_notices(stream.logger)
        return streams

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
    accounts = config.get("account_ids")
    if not config.get("access_token"):
        problems.append("access_token: required, and must not be empty")
    if not isinstance(accounts, list) or not accounts:
        problems.append("account_ids: give at least one ad account id, such as act_123 or 123")
    else:
        bad = [a for a in accounts if not isinstance(a, str) or not ACCOUNT_ID_PATTERN.match(a.strip())]
        if bad:
            problems.append(f"account_ids: {bad!r} are not ad account ids (expected act_123 or 123)")
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
    problems.extend(report_problems(config))
    version = config.get("api_version")
    if version is not None and not API_VERSION_PATTERN.match(str(version)):
        problems.append(f"api_version: {version!r} is not of the form vNN.0 (for example {DEFAULT_API_VERSION})")
    return problems


def main() -> None:
    """Console entry point ``tap-meta-ads``: the SDK's command line, inside the tap's process boundary (``cli.py``)."""
    cli.run(TapMetaAds)


if __name__ == "__main__":
    main()
