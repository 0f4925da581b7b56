"""The sandbox's Ads Insights: deterministic performance rows and Meta's asynchronous report runs.

What Meta does, and so what this module does (sources in the comments where it matters):

- ``POST /act_{id}/insights`` with ``level``, ``fields``, ``breakdowns``, ``action_breakdowns``,
  ``action_attribution_windows``, ``time_range`` ``{"since","until"}`` (both ends inclusive),
  ``time_increment`` and ``filtering`` starts an *AdReportRun* and answers ``{"report_run_id": "..."}``.
- ``GET /{report_run_id}`` answers the run: ``async_status`` is one of "Job Not Started", "Job Started",
  "Job Running", "Job Completed", "Job Failed", "Job Skipped" (the values the public connectors test for,
  e.g. Airbyte's source-facebook-marketing ``async_job.Status``), ``async_percent_completion`` 0..100. A
  failed run carries ``error_code``, ``error_message`` and ``error_subcode`` (v25).
- ``GET /{report_run_id}/insights`` pages the rows with cursors, every metric a *string* ("9708",
  "12.34"), lists such as ``actions`` as ``[{"action_type", "value", "7d_click", ...}]``.
- ``GET /act_{id}/insights`` is the synchronous twin (the tap uses it only to list ids when it splits).
- **Statuses** (Meta's habit, the cause of the best-known mismatch with Ads Manager): without a ``filtering``
  rule on ``<level>.effective_status``, rows of ARCHIVED ads are left out, also from a job whose
  ``filtering`` names only ``campaign.id``/``adset.id`` (airbytehq/airbyte#36998, fixed in PR #39439 by
  sending every status on every job; singer-io/tap-facebook#33). Rows of DELETED ads are never served
  through the account's edge at the ad, ad set or campaign level, whatever the filter (they come only from
  ``/{ad_id}/insights``: facebook/facebook-python-business-sdk#269), while ``level=account`` rows are the
  account's totals: every ad's delivery, deleted and archived ads included. (The sandbox applies a
  ``adset.``/``campaign.effective_status`` rule to the delivering ad's status: a simplification.)
- **Days are the account's days**: ``date_start`` is cut in the account's time zone (``timezone_name``),
  so no account has rows after its own today, and the 37-month limit (error 3018) counts from it.
- **Attribution as Meta serves it**: ``7d_view`` and ``28d_view`` are no longer returned since 2026-01-12
  (Meta's blog, "Ads Insights API Metric Availability Updates", 2025-10-16): asked for, they are left out
  of each action, as Meta does; ``1d_engaged_view`` is served. ``use_unified_attribution_setting`` and
  ``action_report_time`` are ignored (Meta ignores them since 2025-06-10, per Supermetrics' "Facebook Ads
  reach and attribution changes - June 10, 2025"). Reach with breakdowns is served for the last 13 months
  only (same source): an older ``since`` with ``reach`` and a breakdown is refused with code 100 (the
  sandbox's stand-in: the source does not quote Meta's error).
- **``dma`` is gone**: Meta replaced the ``dma`` breakdown by ``comscore_market`` on 2026-06-22 (Meta's
  out-of-cycle changes 2026, quoted in singer-io/tap-facebook#271; estuary/connectors#4699): ``dma`` is
  refused with code 100 like any unknown breakdown.
- History is capped at 37 months (error 3018 beyond); some breakdown combinations are refused with
  "(#100) Current combination of data breakdown columns (...) is invalid" (seen in public issue
  threads, e.g. daroczig/fbRads#132 for ``platform_position`` without ``publisher_platform``).
- Every answer carries ``x-fb-ads-insights-throttle`` (``app_id_util_pct``, ``acc_id_util_pct``); over the
  insights budget a call gets error 80000/2446079, the ads_insights business-use-case limit.

Rows are a pure function of (seed, account, ad, day, breakdown values): an ad delivers on about half of
the days since it was created, and a row's numbers come from a hash. Coarser levels (ad set, campaign,
account) and ``time_increment`` > 1 sum the ad-day cells exactly, so every report is consistent with
every other. Faults on report runs are set on demand: the next runs fail, are skipped, stick at a
percentage, or lose their results (code 2601); and a run whose result would exceed
``max_rows_per_job`` always fails, as Meta's do on large accounts, so that a client must split it.

Never imports the tap.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import itertools
import json
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from tap_meta_ads_sandbox.data import (
    ADS_PER_ADSET,
    ADSETS_PER_CAMPAIGN,
    DEFAULT_VISIBLE,
    EFFECTIVE_STATUSES,
    AdCollection,
    attribution_of,
    mix64,
)
from tap_meta_ads_sandbox.errors import GraphError, invalid_parameter

LEVELS = ("ad", "adset", "campaign", "account")
STATUS_NOT_STARTED = "Job Not Started"
STATUS_STARTED = "Job Started"
STATUS_RUNNING = "Job Running"
STATUS_COMPLETED = "Job Completed"
STATUS_FAILED = "Job Failed"
STATUS_SKIPPED = "Job Skipped"
FATES = ("failed", "skipped", "stuck", "error")

#: Breakdown values the sandbox serves (a small realistic subset of Meta's).
BREAKDOWN_VALUES: dict[str, tuple[str, ...]] = {
    "age": ("13-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"),
    "gender": ("female", "male", "unknown"),
    "country": ("US", "GB", "DE", "FR", "BR", "IN", "CA", "AU", "ES", "NL"),
    "region": ("California", "Texas", "New York", "Bavaria", "Ile-de-France", "Ontario"),
    "comscore_market": ("New York", "Los Angeles", "Chicago", "Philadelphia", "Dallas-Ft. Worth"),
    "publisher_platform": ("facebook", "instagram", "audience_network", "messenger"),
    "platform_position": ("feed", "story", "reels", "right_hand_column", "instream_video", "marketplace"),
    "device_platform": ("mobile_app", "mobile_web", "desktop"),
    "impression_device": ("android_smartphone", "iphone", "desktop", "ipad", "android_tablet"),
}
#: Meta serves only some combinations of breakdowns ("Due to storage constraints, only some permutations
#: of breakdowns are available", Meta's Insights breakdowns guide, quoted in daroczig/fbRads#95): within
#: one group, and one geography at a time.
BREAKDOWN_GROUPS: dict[str, str] = {
    "age": "demographic",
    "gender": "demographic",
    "country": "country",
    "region": "region",
    "comscore_market": "comscore_market",
    "publisher_platform": "placement",
    "platform_position": "placement",
    "device_platform": "placement",
    "impression_device": "placement",
}
ACTION_BREAKDOWNS = ("action_type", "action_target_id", "action_destination", "action_device", "action_reaction")
#: Windows Meta accepts in ``action_attribution_windows``; the retired ones are accepted and not returned.
ATTRIBUTION_WINDOWS = ("1d_click", "7d_click", "28d_click", "1d_view", "1d_engaged_view", "7d_view", "28d_view")
RETIRED_WINDOWS = frozenset({"7d_view", "28d_view"})
#: Share (tenths) of an action's count attributed within each window.
_WINDOW_TENTHS = {"1d_click": 5, "7d_click": 8, "28d_click": 9, "1d_view": 1, "1d_engaged_view": 1}
#: The filter fields that choose statuses, and the statuses Meta's default filter keeps.
STATUS_FIELDS = ("ad.effective_status", "adset.effective_status", "campaign.effective_status")
DEFAULT_STATUSES = DEFAULT_VISIBLE
#: Reach with breakdowns: the last 13 months only (since 2025-06-10).
REACH_BREAKDOWN_MONTHS = 13

_DIMENSIONS = (
    "account_id",
    "account_name",
    "account_currency",
    "campaign_id",
    "campaign_name",
    "adset_id",
    "adset_name",
    "ad_id",
    "ad_name",
    "objective",
    "optimization_goal",
    "buying_type",
    "attribution_setting",
    "quality_ranking",
    "engagement_rate_ranking",
    "conversion_rate_ranking",
)
_COUNTS = (
    "impressions",
    "reach",
    "clicks",
    "unique_clicks",
    "inline_link_clicks",
    "unique_inline_link_clicks",
    "inline_post_engagement",
)
_RATIOS = (
    "spend",
    "frequency",
    "cpc",
    "cpm",
    "cpp",
    "ctr",
    "unique_ctr",
    "cost_per_unique_click",
    "inline_link_click_ctr",
)
_LISTS = (
    "actions",
    "action_values",
    "unique_actions",
    "conversions",
    "conversion_values",
    "cost_per_action_type",
    "cost_per_conversion",
    "outbound_clicks",
    "purchase_roas",
    "video_play_actions",
    "video_p25_watched_actions",
    "video_p50_watched_actions",
    "video_p75_watched_actions",
    "video_p95_watched_actions",
    "video_p100_watched_actions",
    "video_thruplay_watched_actions",
    "video_30_sec_watched_actions",
)
FIELDS: tuple[str, ...] = ("date_start", "date_stop", *_DIMENSIONS, *_COUNTS, *_RATIOS, *_LISTS)
_LEVEL_RANK = {"ad": 0, "adset": 1, "campaign": 2, "account": 3}
#: The finest level a field belongs to; at a coarser level Meta has no value for it.
_FIELD_LEVEL = {
    "ad_id": "ad",
    "ad_name": "ad",
    "quality_ranking": "ad",
    "engagement_rate_ranking": "ad",
    "conversion_rate_ranking": "ad",
    "adset_id": "adset",
    "adset_name": "adset",
    "optimization_goal": "adset",
    "attribution_setting": "adset",
    "campaign_id": "campaign",
    "campaign_name": "campaign",
    "objective": "campaign",
}
_OBJECTIVES = ("OUTCOME_SALES", "OUTCOME_TRAFFIC", "OUTCOME_LEADS", "OUTCOME_AWARENESS", "OUTCOME_ENGAGEMENT")
_GOALS = ("OFFSITE_CONVERSIONS", "LINK_CLICKS", "LEAD_GENERATION", "REACH", "IMPRESSIONS", "THRUPLAY")
_RANKINGS = ("ABOVE_AVERAGE", "AVERAGE", "BELOW_AVERAGE_35", "BELOW_AVERAGE_20", "BELOW_AVERAGE_10", "UNKNOWN")
_VIDEO_KEYS = ("play", "p25", "p50", "p75", "p95", "p100", "thruplay", "30_sec")
_SIX = Decimal("0.000001")
#: Meta keeps 37 months of insights (Airbyte's source-facebook-marketing: "Facebook store metrics maximum of
#: 37 months old"); an older ``since`` is error 3018.
RETENTION_MONTHS = 37
DAY = 86400


def months_back(day: datetime.date, months: int) -> datetime.date:
    """The same day of the month ``months`` earlier (clamped to the month's length)."""
    total = day.year * 12 + day.month - 1 - months
    year, month0 = divmod(total, 12)
    for d in (day.day, 30, 29, 28):
        try:
            return datetime.date(year, month0 + 1, d)
        except ValueError:
            continue
    raise ValueError(day)  # pragma: no cover - day 28 exists in every month


@dataclass
class Cell:
    """The exact numbers behind a row (counts, money in cents): summed for coarser levels and periods."""

    impressions: int = 0
    reach: int = 0
    clicks: int = 0
    unique_clicks: int = 0
    inline_link_clicks: int = 0
    unique_inline_link_clicks: int = 0
    inline_post_engagement: int = 0
    spend_cents: int = 0
    purchases: int = 0
    leads: int = 0
    purchase_value_cents: int = 0
    outbound: int = 0
    video: tuple[int, ...] = (0,) * len(_VIDEO_KEYS)

    def add(self, other: Cell) -> None:
        """Add another cell in place."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.spend_cents += other.spend_cents
        self.purchases += other.purchases
        self.leads += other.leads
        self.purchase_value_cents += other.purchase_value_cents
        self.outbound += other.outbound
        self.video = tuple(a + b for a, b in zip(self.video, other.video, strict=True))


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _ratio(numerator: Decimal, denominator: int) -> str | None:
    if denominator == 0:
        return None
    return str((numerator / denominator).quantize(_SIX, rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True)
class ReportQuery:
    """A parsed insights request."""

    level: str
    fields: tuple[str, ...]
    breakdowns: tuple[str, ...]
    action_breakdowns: tuple[str, ...]
    windows: tuple[str, ...]
    since: datetime.date
    until: datetime.date
    increment: int  # days per row; 0 = all_days
    filters: tuple[tuple[str, frozenset[str]], ...]  # (level of the id, allowed ids)
    statuses: frozenset[str] | None = None  # an ``<prefix>.effective_status`` rule; None: Meta's default
    status_prefix: str = "ad"  # which object's status the rule names

    def counted(self, ads: AdCollection) -> Callable[[int], bool]:
        """Whether an ad's delivery is in the report's rows, by its status (Meta's habit, see the module).

        An ``ad.effective_status`` rule filters on the ad's status; an ``adset.``/``campaign.`` rule (the
        sandbox's ad sets and campaigns deliver through their ads) lets archived ads' delivery in when it
        names ARCHIVED, and every live ad's delivery in any case.
        """
        if self.level == "account" and self.statuses is None:
            return lambda index: True  # the account's totals: every ad, deleted and archived included
        allowed = DEFAULT_STATUSES if self.statuses is None else self.statuses
        if self.statuses is not None and self.status_prefix != "ad":
            allowed = DEFAULT_STATUSES | (self.statuses & {"ARCHIVED", "DELETED"})
        if self.level != "account":
            allowed = allowed - {"DELETED"}  # never through the account's edge at an object level
        return lambda index: ads.effective_status(index) in allowed

    def as_dict(self) -> dict[str, Any]:
        """A JSON view for the control endpoint."""
        return {
            "level": self.level,
            "breakdowns": list(self.breakdowns),
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "filtering": {k: sorted(v) for k, v in self.filters},
            "statuses": sorted(self.statuses) if self.statuses is not None else None,
            "fields": list(self.fields),
            "windows": list(self.windows),
        }


def _list_param(raw: str | None) -> list[str] | None:
    """A list parameter as Meta takes it: a JSON array or comma-separated names."""
    if raw is None:
        return None
    text = raw.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            raise invalid_parameter(f"(#100) Invalid JSON array: {text[:60]}") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise invalid_parameter("(#100) Expected an array of strings")
        return [v.strip() for v in value if v.strip()]
    return [v.strip() for v in text.split(",") if v.strip()]


def _date(value: object, what: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(str(value))
    except ValueError:
        raise invalid_parameter(f"(#100) {what} must be a date in the form YYYY-MM-DD") from None


def parse_report(params: dict[str, str], today: datetime.date, *, default_level: str) -> ReportQuery:
    """Read an insights request as Meta does, refusing what Meta refuses (code 100, 3018)."""
    level = params.get("level", default_level)
    if level not in LEVELS:
        raise invalid_parameter(f"(#100) level must be one of {{{', '.join(LEVELS)}}}")
    fields = tuple(dict.fromkeys(_list_param(params.get("fields")) or ["spend", "impressions"]))
    for name in fields:
        if name not in FIELDS:
            raise invalid_parameter(f"(#100) {name} is not valid for fields param. please check the documentation")
    breakdowns = tuple(_list_param(params.get("breakdowns")) or ())
    for name in breakdowns:
        if name not in BREAKDOWN_VALUES:
            raise invalid_parameter(f"(#100) {name} is not valid for breakdowns param. please check the documentation")
    action_breakdowns = tuple(_list_param(params.get("action_breakdowns")) or ("action_type",))
    for name in action_breakdowns:
        if name not in ACTION_BREAKDOWNS:
            raise invalid_parameter(f"(#100) {name} is not valid for action_breakdowns param")
    _check_combination(breakdowns, action_breakdowns)
    windows = tuple(_list_param(params.get("action_attribution_windows")) or ())
    for name in windows:
        if name not in ATTRIBUTION_WINDOWS:
            raise invalid_parameter(f"(#100) {name} is not valid for action_attribution_windows param")
    since, until = _time_range(params.get("time_range"), today)
    if "reach" in fields and breakdowns and since < months_back(today, REACH_BREAKDOWN_MONTHS):
        raise invalid_parameter(
            f"(#100) Reach with breakdowns is only available for the last {REACH_BREAKDOWN_MONTHS} months"
        )
    filters, (statuses, status_prefix) = _filters(params.get("filtering"))
    return ReportQuery(
        level=level,
        fields=fields,
        breakdowns=breakdowns,
        action_breakdowns=action_breakdowns,
        windows=windows,
        since=since,
        until=until,
        increment=_increment(params.get("time_increment")),
        filters=filters,
        statuses=statuses,
        status_prefix=status_prefix,
    )


def _check_combination(breakdowns: tuple[str, ...], action_breakdowns: tuple[str, ...]) -> None:
    groups = {BREAKDOWN_GROUPS[b] for b in breakdowns}
    refused = len(groups) > 1 or ("platform_position" in breakdowns and "publisher_platform" not in breakdowns)
    if refused:
        columns = ", ".join((*action_breakdowns, *breakdowns))
        raise invalid_parameter(f"(#100) Current combination of data breakdown columns ({columns}) is invalid")


def _time_range(raw: str | None, today: datetime.date) -> tuple[datetime.date, datetime.date]:
    if raw is None:
        raise invalid_parameter("(#100) The sandbox needs time_range={'since':...,'until':...}")
    try:
        doc = json.loads(raw)
    except ValueError:
        raise invalid_parameter("(#100) time_range must be a JSON object") from None
    if not isinstance(doc, dict) or "since" not in doc or "until" not in doc:
        raise invalid_parameter("(#100) time_range must have since and until")
    since, until = _date(doc["since"], "since"), _date(doc["until"], "until")
    if since > until:
        raise invalid_parameter("(#100) since must be on or before until")
    if since < months_back(today, RETENTION_MONTHS):
        raise GraphError(
            400,
            3018,
            "(#3018) The start date of the time range cannot be beyond 37 months from the current date",
            is_transient=False,
        )
    return since, until


def _increment(raw: str | None) -> int:
    if raw is None or raw == "all_days":
        return 0
    if raw.isdigit() and 1 <= int(raw) <= 90:  # noqa: PLR2004 - Meta's range for time_increment
        return int(raw)
    raise invalid_parameter("(#100) time_increment must be all_days, monthly or an integer 1..90")


_StatusRule = tuple[frozenset[str] | None, str]


def _filters(raw: str | None) -> tuple[tuple[tuple[str, frozenset[str]], ...], _StatusRule]:
    """The id rules (level, ids) and the status rule of ``filtering``: (statuses or ``None``, object prefix)."""
    if not raw:
        return (), (None, "ad")
    try:
        rules = json.loads(raw)
    except ValueError:
        raise invalid_parameter("(#100) filtering must be a JSON array") from None
    if not isinstance(rules, list):
        raise invalid_parameter("(#100) filtering must be a JSON array")
    out: list[tuple[str, frozenset[str]]] = []
    statuses: frozenset[str] | None = None
    status_prefix = "ad"
    for rule in rules:
        if not isinstance(rule, dict):
            raise invalid_parameter("(#100) filtering items must be objects")
        name, op, value = rule.get("field"), rule.get("operator"), rule.get("value")
        prefix = str(name).split(".")[0]
        if name in STATUS_FIELDS:
            if op != "IN" or not isinstance(value, list) or not all(v in EFFECTIVE_STATUSES for v in value):
                raise invalid_parameter(f"(#100) Filter {name} takes IN with a list of effective statuses")
            statuses = frozenset(value) if statuses is None else statuses & frozenset(value)
            status_prefix = prefix
            continue
        if name not in ("campaign.id", "adset.id", "ad.id"):
            raise invalid_parameter(f"(#100) The sandbox filters insights on campaign.id, adset.id, ad.id, not {name}")
        if op == "EQUAL":
            ids = [value]
        elif op == "IN" and isinstance(value, list):
            ids = value
        else:
            raise invalid_parameter(f"(#100) Operator {op} is not valid for {name}")
        out.append((prefix, frozenset(str(v) for v in ids)))
    return tuple(out), (statuses, status_prefix)


class AccountInsights:
    """One account's insights, derived from its ads (the ``AdCollection``) by index and day."""

    def __init__(self, seed: int, ads: AdCollection) -> None:
        self.ads = ads
        self.account_id = ads.account_id
        self._key = mix64(mix64(seed ^ 0x1A5) ^ int(ads.account_id))
        self.currency = ("USD", "EUR", "GBP")[self._key % 3]
        self._names: dict[int, str] = {}
        self._lock = threading.Lock()

    def h(self, *parts: int) -> int:
        """A 64-bit hash of the account's key and ``parts`` (an ad index, a day, a salt)."""
        h = self._key
        for p in parts:
            h = mix64(h ^ (p & ((1 << 64) - 1)))
        return h

    def created_day(self, index: int) -> int:
        """The day (since the epoch) the ad was created: it delivers from then on."""
        ov = self.ads.overrides.get(index)
        created = ov.created if ov is not None and ov.created is not None else self.ads.base_times(index)[0]
        return created // DAY

    def delivers(self, index: int, day: int) -> bool:
        """Whether the ad had any delivery that day (about half of the days since it was created)."""
        return day >= self.created_day(index) and self.h(index, day, 1) % 100 < 55  # noqa: PLR2004

    def cell(self, index: int, day: int, combo: tuple[str, ...]) -> Cell:
        """The numbers of one ad on one day for one combination of breakdown values."""
        h = self.h(index, day, hash_text(combo))
        g = self.h(index, day, hash_text(combo), 2)
        impressions = 20 + h % 4000
        reach = impressions - (h >> 12) % (impressions // 3 + 1)
        clicks = (h >> 24) % (impressions // 25 + 1)
        unique_clicks = clicks - (h >> 36) % (clicks // 4 + 1)
        purchases = (g % 7) if clicks else 0
        video_base = (g >> 8) % (impressions // 4 + 1)
        video = []
        remaining = video_base
        for k in range(len(_VIDEO_KEYS)):
            video.append(remaining)
            remaining = remaining * (6 + (g >> (16 + k)) % 4) // 10
        return Cell(
            impressions=impressions,
            reach=reach,
            clicks=clicks,
            unique_clicks=unique_clicks,
            inline_link_clicks=clicks * 3 // 4,
            unique_inline_link_clicks=unique_clicks * 3 // 4,
            inline_post_engagement=clicks + (h >> 44) % 40,
            spend_cents=impressions * (3 + (h >> 50) % 20) // 10,
            purchases=purchases,
            leads=(g >> 30) % 3,
            purchase_value_cents=purchases * (1500 + (g >> 34) % 20000),
            outbound=clicks // 2,
            video=tuple(video),
        )

    def combos(self, index: int, day: int, breakdowns: tuple[str, ...]) -> list[tuple[str, ...]]:
        """The breakdown values the ad's delivery that day splits into (one to three per breakdown)."""
        per: list[list[str]] = []
        for n, name in enumerate(breakdowns):
            values = BREAKDOWN_VALUES[name]
            h = self.h(index, day, 3 + n, hash_text((name,)))
            count = 1 + h % min(3, len(values))
            start = (h >> 8) % len(values)
            per.append(sorted(values[(start + k) % len(values)] for k in range(count)))
        return [tuple(c) for c in itertools.product(*per)]

    def ad_name(self, index: int) -> str:
        """The ad's current name (as the ads edge shows it)."""
        with self._lock:
            name = self._names.get(index)
        if name is None:
            name = str(self.ads.row(index)["name"])
            with self._lock:
                self._names[index] = name
        return name


def hash_text(values: Iterable[str]) -> int:
    """A stable 64-bit hash of strings (Python's ``hash`` of str is salted per process)."""
    h = 0xCBF29CE484222325
    for value in values:
        for byte in value.encode() + b"\x00":
            h = ((h ^ byte) * 0x100000001B3) & ((1 << 64) - 1)
    return h


def _object_of(level: str, index: int) -> int:
    """The index of the level's object an ad belongs to."""
    if level == "ad":
        return index
    if level == "adset":
        return index // ADS_PER_ADSET
    if level == "campaign":
        return index // (ADS_PER_ADSET * ADSETS_PER_CAMPAIGN)
    return 0


def _id(ads: AdCollection, level: str, index: int) -> str:
    """The id of object ``index`` of a level (ids as the ads edge writes them)."""
    kind = {"ad": 0, "adset": 1, "campaign": 2}[level]
    return f"12{kind}{len(ads.account_id):02d}{ads.account_id}{index:09d}"


def report_rows(acct: AccountInsights, query: ReportQuery, today: datetime.date) -> list[dict[str, Any]]:
    """Every row of a report, in Meta's shapes, sorted by (date_start, object, breakdown values)."""
    epoch = datetime.date(1970, 1, 1)
    first, last = (query.since - epoch).days, (min(query.until, today) - epoch).days
    if last < first:
        return []
    cells: dict[tuple[int, int, tuple[str, ...]], Cell] = {}
    ads = acct.ads
    allowed = [(lvl, ids) for lvl, ids in query.filters]
    counted = query.counted(ads)
    for index in range(ads.count):
        if allowed and not all(_id(ads, lvl, _object_of(lvl, index)) in ids for lvl, ids in allowed):
            continue
        if not counted(index):
            continue
        obj = _object_of(query.level, index)
        for day in range(max(first, acct.created_day(index)), last + 1):
            if not acct.delivers(index, day):
                continue
            bucket = first if query.increment == 0 else first + (day - first) // query.increment * query.increment
            for combo in acct.combos(index, day, query.breakdowns):
                key = (bucket, obj, combo)
                total = cells.get(key)
                if total is None:
                    cells[key] = acct.cell(index, day, combo)
                else:
                    total.add(acct.cell(index, day, combo))
    rows = []
    for (bucket, obj, combo), cell in sorted(cells.items()):
        stop = last if query.increment == 0 else min(last, bucket + query.increment - 1)
        rows.append(render(acct, query, bucket, stop, obj, combo, cell))
    return rows


def count_rows(acct: AccountInsights, query: ReportQuery, today: datetime.date) -> int:
    """How many rows a report would have at the ad level and daily: its size, for always-failing jobs."""
    epoch = datetime.date(1970, 1, 1)
    first, last = (query.since - epoch).days, (min(query.until, today) - epoch).days
    ads = acct.ads
    total = 0
    counted = query.counted(ads)
    for index in range(ads.count):
        if query.filters and not all(_id(ads, lvl, _object_of(lvl, index)) in ids for lvl, ids in query.filters):
            continue
        if not counted(index):
            continue
        for day in range(max(first, acct.created_day(index)), last + 1):
            if acct.delivers(index, day):
                total += len(acct.combos(index, day, query.breakdowns))
    return total


def _action_list(items: list[tuple[str, int]], windows: tuple[str, ...], *, money: bool) -> list[dict[str, str]]:
    out = []
    for action_type, amount in items:
        if amount <= 0:
            continue
        fmt: Callable[[int], str] = _money if money else str
        entry = {"action_type": action_type, "value": fmt(amount)}
        for window in windows:
            if window not in RETIRED_WINDOWS:  # asked for, no longer returned
                entry[window] = fmt(amount * _WINDOW_TENTHS[window] // 10)
        out.append(entry)
    return out


def _cost_list(items: list[tuple[str, int]], spend: Decimal, windows: tuple[str, ...]) -> list[dict[str, str]]:
    out = []
    for action_type, count in items:
        cost = _ratio(spend, count)
        if cost is None:
            continue
        entry = {"action_type": action_type, "value": cost}
        for window in windows:
            if window in RETIRED_WINDOWS:
                continue
            part = _ratio(spend, count * _WINDOW_TENTHS[window] // 10)
            if part is not None:
                entry[window] = part
        out.append(entry)
    return out


def _video_list(cell: Cell, n: int) -> list[dict[str, str]]:
    return _action_list([("video_view", cell.video[n])], (), money=False)


def render(  # noqa: PLR0917 - one row's coordinates; called from one place
    acct: AccountInsights,
    query: ReportQuery,
    first: int,
    last: int,
    obj: int,
    combo: tuple[str, ...],
    cell: Cell,
) -> dict[str, Any]:
    """One row as Meta writes it: the asked fields (metrics as strings), dates and breakdown columns."""
    epoch = datetime.date(1970, 1, 1)
    level = query.level
    rank = _LEVEL_RANK[level]
    spend = Decimal(cell.spend_cents) / 100
    ads = acct.ads
    ad_index = obj if level == "ad" else 0
    adset_index = obj if level == "adset" else ad_index // ADS_PER_ADSET
    campaign_index = obj if level == "campaign" else adset_index // ADSETS_PER_CAMPAIGN
    actions = [
        ("link_click", cell.inline_link_clicks),
        ("post_engagement", cell.inline_post_engagement),
        ("lead", cell.leads),
        ("purchase", cell.purchases),
        ("video_view", cell.video[0]),
    ]
    values: dict[str, Callable[[], Any]] = {
        "account_id": lambda: acct.account_id,
        "account_name": lambda: f"Sandbox account {acct.account_id}",
        "account_currency": lambda: acct.currency,
        "campaign_id": lambda: _id(ads, "campaign", campaign_index),
        "campaign_name": lambda: f"Campaign {campaign_index + 1}",
        "adset_id": lambda: _id(ads, "adset", adset_index),
        "adset_name": lambda: f"Ad set {adset_index + 1}",
        "ad_id": lambda: _id(ads, "ad", ad_index),
        "ad_name": lambda: acct.ad_name(ad_index),
        "objective": lambda: _OBJECTIVES[campaign_index % len(_OBJECTIVES)],
        "optimization_goal": lambda: _GOALS[adset_index % len(_GOALS)],
        "buying_type": lambda: "AUCTION",
        "attribution_setting": lambda: attribution_of(adset_index)[0],
        "quality_ranking": lambda: _RANKINGS[acct.h(ad_index, first, 7) % len(_RANKINGS)],
        "engagement_rate_ranking": lambda: _RANKINGS[acct.h(ad_index, first, 8) % len(_RANKINGS)],
        "conversion_rate_ranking": lambda: _RANKINGS[acct.h(ad_index, first, 9) % len(_RANKINGS)],
        "spend": lambda: _money(cell.spend_cents),
        "frequency": lambda: _ratio(Decimal(cell.impressions), cell.reach),
        "cpc": lambda: _ratio(spend, cell.clicks),
        "cpm": lambda: _ratio(spend * 1000, cell.impressions),
        "cpp": lambda: _ratio(spend * 1000, cell.reach),
        "ctr": lambda: _ratio(Decimal(cell.clicks * 100), cell.impressions),
        "unique_ctr": lambda: _ratio(Decimal(cell.unique_clicks * 100), cell.reach),
        "cost_per_unique_click": lambda: _ratio(spend, cell.unique_clicks),
        "inline_link_click_ctr": lambda: _ratio(Decimal(cell.inline_link_clicks * 100), cell.impressions),
        "actions": lambda: _action_list(actions, query.windows, money=False),
        "unique_actions": lambda: _action_list(actions[:2], query.windows, money=False),
        "action_values": lambda: _action_list([("purchase", cell.purchase_value_cents)], query.windows, money=True),
        "conversions": lambda: _action_list(
            [("offsite_conversion.fb_pixel_purchase", cell.purchases)], query.windows, money=False
        ),
        "conversion_values": lambda: _action_list(
            [("offsite_conversion.fb_pixel_purchase", cell.purchase_value_cents)], query.windows, money=True
        ),
        "cost_per_action_type": lambda: _cost_list(actions, spend, query.windows),
        "cost_per_conversion": lambda: _cost_list(
            [("offsite_conversion.fb_pixel_purchase", cell.purchases)], spend, query.windows
        ),
        "outbound_clicks": lambda: _action_list([("outbound_click", cell.outbound)], (), money=False),
        "purchase_roas": lambda: (
            [{"action_type": "omni_purchase", "value": _ratio(Decimal(cell.purchase_value_cents), cell.spend_cents)}]
            if cell.purchase_value_cents and cell.spend_cents
            else []
        ),
    }
    for n, key in enumerate(_VIDEO_KEYS):
        video_field = f"video_{key}_watched_actions" if key != "play" else "video_play_actions"
        values[video_field] = functools.partial(_video_list, cell, n)
    row: dict[str, Any] = {}
    for name in query.fields:
        if name in ("date_start", "date_stop") or rank > _LEVEL_RANK.get(_FIELD_LEVEL.get(name, "account"), 3):
            continue
        if name in _COUNTS:
            row[name] = str(getattr(cell, name))
            continue
        value = values[name]()
        if value is None or value == []:
            continue  # Meta leaves out a metric it has no value for (a cost per zero clicks, no purchases)
        row[name] = value
    row["date_start"] = (epoch + datetime.timedelta(days=first)).isoformat()
    row["date_stop"] = (epoch + datetime.timedelta(days=last)).isoformat()
    for name, value in zip(query.breakdowns, combo, strict=True):
        row[name] = value
    return row


@dataclass
class ReportRun:
    """One AdReportRun and how it will go."""

    id: str
    account_id: str
    query: ReportQuery
    created: float
    fate: str | None
    polls: int = 0
    rows: list[str] | None = None  # each row's JSON text (``encoded_rows``), once asked for
    too_large: bool = False
    #: its rows, computed while it runs (``InsightsService.submit``)
    computing: Future[list[str]] | None = None

    def percent(self, polls_needed: int, seconds_needed: float, now: float) -> int:
        """Progress so far: the slower of polls and (virtual) seconds."""
        by_polls = self.polls / polls_needed if polls_needed else 1.0
        by_time = (now - self.created) / seconds_needed if seconds_needed > 0 else 1.0
        return int(min(1.0, by_polls, by_time) * 100)


@dataclass
class InsightsSettings:
    """The knobs of report runs, changed at runtime through ``POST /_sandbox/insights``."""

    polls_to_complete: int = 2
    seconds_to_complete: float = 0.0
    max_rows_per_job: int | None = None
    budget: int = 100_000  # insights calls per account per window
    window_seconds: float = 3600.0
    fates: deque[tuple[str, str | None]] = field(default_factory=deque)


class _Paged:
    """Offset cursors for insights results: base64 of ``{"q": owner, "o": offset}``."""

    @staticmethod
    def encode(owner: str, offset: int) -> str:
        raw = json.dumps({"q": owner, "o": offset}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def decode(text: str, owner: str) -> int:
        try:
            doc = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            offset = doc["o"]
            ok = doc["q"] == owner and isinstance(offset, int) and offset >= 0
        except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
            ok = False
        if not ok:
            raise GraphError(400, 2642, "(#2642) Invalid cursors values", is_transient=False)
        return int(offset)


class RawJSON(str):
    """A body already encoded as JSON: the server sends it as it is (``server.json_reply``)."""

    __slots__ = ()


def encoded_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Each row as its JSON text: a completed run keeps its rows so, until the sandbox stops.

    Kept as dicts, 250 runs' rows were millions of objects the sandbox's cyclic GC walked again and again, and
    each walk held up every answer of the sandbox (seconds at 50 accounts, bench_accounts.py); text is not
    walked, and a page is then a join, not an encode.
    """
    return [json.dumps(row, separators=(",", ":"), ensure_ascii=False) for row in rows]


def encoded_page(texts: list[str], params: dict[str, str], owner: str, url: str) -> tuple[RawJSON, int]:
    """``page_of`` rows kept as JSON texts: the page's body, and how many rows it holds."""
    doc = page_of(texts, params, owner, url)
    data = doc.pop("data")
    paging = f',"paging":{json.dumps(doc["paging"], separators=(",", ":"))}' if "paging" in doc else ""
    return RawJSON(f'{{"data":[{",".join(data)}]{paging}}}'), len(data)


def page_of(rows: list[Any], params: dict[str, str], owner: str, url: str) -> dict[str, Any]:
    """One page of rows with Meta's ``paging`` (cursors and a full ``next`` URL)."""
    try:
        limit = max(1, min(int(params.get("limit", "25")), 5000))
    except ValueError:
        raise invalid_parameter("(#100) Param limit must be a positive integer") from None
    offset = _Paged.decode(params["after"], owner) if params.get("after") else 0
    data = rows[offset : offset + limit]
    doc: dict[str, Any] = {"data": data}
    end = offset + len(data)
    if data or end < len(rows):
        doc["paging"] = {"cursors": {"before": _Paged.encode(owner, offset), "after": _Paged.encode(owner, end)}}
        if end < len(rows):
            doc["paging"]["next"] = f"{url}?limit={limit}&after={doc['paging']['cursors']['after']}"
    return doc


class InsightsService:
    """Report runs and insights answers for every account; thread-safe."""

    def __init__(self, seed: int, ads: dict[str, AdCollection], now: Callable[[], float]) -> None:
        self.accounts = {acct: AccountInsights(seed, coll) for acct, coll in ads.items()}
        self.now = now
        self.settings = InsightsSettings()
        self.runs: dict[str, ReportRun] = {}
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._next = itertools.count(1)
        self._seed = seed
        # Meta computes a run's rows while the run runs, not when its first page is asked for. Computed on the
        # first page, 250 runs of 50 accounts (about 0.1 s of the sandbox's CPU each) were computed one after
        # another on the sandbox's one interpreter while the client waited for their pages, and the client's
        # benchmarks measured the sandbox (bench_accounts.py). One worker: runs are computed in submission order.
        self._workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-report-run")

    def today(self, acct: AccountInsights) -> datetime.date:
        """The virtual clock's date in the account's time zone: no insights exist for later days."""
        offset = datetime.timedelta(seconds=acct.ads.utc_offset_seconds)
        return datetime.datetime.fromtimestamp(self.now(), tz=datetime.timezone(offset)).date()

    # ------------------------------------------------------------------ routes

    def owns(self, method: str, node: str, edge: str | None) -> bool:
        """Whether a Graph request is an insights request (the server routes it here)."""
        if node.startswith("act_"):
            return edge == "insights" and method in ("GET", "POST")
        return method == "GET" and node in self.runs and edge in (None, "insights")

    def route(self, method: str, node: str, edge: str | None) -> tuple[str, str | None]:
        """The request's name in the sandbox's stats, and its account."""
        if node.startswith("act_"):
            account_id = node[4:]
            name = "insights_submit" if method == "POST" else "insights"
            return name, account_id if account_id in self.accounts else None
        return ("report_run" if edge is None else "report_run_insights"), self.runs[node].account_id

    def serve(
        self, method: str, node: str, edge: str | None, params: dict[str, str], url: str
    ) -> tuple[int, dict[str, Any] | RawJSON, dict[str, str], int]:
        """Answer an insights request: (status, body, headers, rows served). Raises GraphError."""
        account_id = node[4:] if node.startswith("act_") else self.runs[node].account_id
        acct = self.accounts.get(account_id)
        if acct is None:
            raise GraphError(
                400, 100, f"(#100) Unsupported get request. Object with ID '{node}' does not exist", subcode=33
            )
        headers = self._count_call(account_id)
        if method == "POST":
            return 200, self.submit(acct, params), headers, 0
        if node.startswith("act_"):
            query = parse_report(params, self.today(acct), default_level="account")
            rows = report_rows(acct, query, self.today(acct))
            query_key = hash_text(f"{k}={v}" for k, v in sorted(params.items()) if k not in ("after", "limit"))
            doc = page_of(rows, params, f"sync:{account_id}:{query_key}", url)
            return 200, doc, headers, len(doc["data"])
        run = self.runs[node]
        if edge is None:
            return 200, self.poll(run), headers, 0
        body, served = self.results(run, params, url)
        return 200, body, headers, served

    def _count_call(self, account_id: str) -> dict[str, str]:
        """Count one insights call in the account's window; the throttle header, or error 80000 over budget."""
        now = self.now()
        s = self.settings
        with self._lock:
            calls = self._calls.setdefault(account_id, deque())
            while calls and calls[0] <= now - s.window_seconds:
                calls.popleft()
            over = len(calls) >= s.budget
            if not over:
                calls.append(now)
            pct = min(100.0, round(len(calls) * 100.0 / s.budget, 2))
            regain = int(calls[0] + s.window_seconds - now) + 1 if over and calls else 0
        headers = {
            "x-fb-ads-insights-throttle": json.dumps(
                {"app_id_util_pct": pct, "acc_id_util_pct": pct, "ads_api_access_tier": "standard_access"}
            )
        }
        if over:
            headers["x-business-use-case-usage"] = json.dumps(
                {
                    account_id: [
                        {
                            "type": "ads_insights",
                            "call_count": 100,
                            "total_cputime": 100,
                            "total_time": 100,
                            "estimated_time_to_regain_access": max(1, (regain + 59) // 60),
                        }
                    ]
                }
            )
            raise GraphError(
                400,
                80000,
                "There have been too many calls from this ad-account. Wait a bit and try again.",
                subcode=2446079,
                is_transient=False,
                headers=headers,
            )
        return headers

    def submit(self, acct: AccountInsights, params: dict[str, str]) -> dict[str, Any]:
        """Start a report run: parse (and refuse) now, decide its fate, answer its id."""
        query = parse_report(params, self.today(acct), default_level="account")
        s = self.settings
        with self._lock:
            fate = None
            for n, (kind, account_id) in enumerate(s.fates):
                if account_id in (None, acct.account_id):
                    fate = kind
                    del s.fates[n]
                    break
            run_id = f"6{mix64(self._seed ^ next(self._next)) % 10**15:015d}"
            run = ReportRun(run_id, acct.account_id, query, self.now(), fate)
            self.runs[run_id] = run
        limit = s.max_rows_per_job
        if limit is not None and count_rows(acct, query, self.today(acct)) > limit:
            run.too_large = True
        elif fate is None:  # a run that will complete: its rows are computed while it runs
            run.computing = self._workers.submit(lambda: encoded_rows(report_rows(acct, query, self.today(acct))))
        return {"report_run_id": run_id}

    def poll(self, run: ReportRun) -> dict[str, Any]:
        """The AdReportRun node: status and progress, one step further per poll."""
        s = self.settings
        with self._lock:
            run.polls += 1
            percent = run.percent(s.polls_to_complete, s.seconds_to_complete, self.now())
        doc: dict[str, Any] = {
            "id": run.id,
            "account_id": run.account_id,
            "time_ref": int(run.created),
            "date_start": run.query.since.isoformat(),
            "date_stop": run.query.until.isoformat(),
            "is_running": True,
        }
        status = STATUS_RUNNING if percent > 0 else STATUS_NOT_STARTED
        if run.fate == "stuck":
            percent = min(percent, 42)
            status = STATUS_RUNNING
        elif percent >= 100 and run.fate == "skipped":  # noqa: PLR2004
            status, percent = STATUS_SKIPPED, 0
        elif percent >= 50 and (run.fate == "failed" or run.too_large):  # noqa: PLR2004
            status = STATUS_FAILED
            if run.too_large:
                doc.update(
                    error_code=100,
                    error_subcode=1487534,
                    error_message="Please reduce the amount of data you're asking for, then retry your request",
                )
            else:
                doc.update(error_code=1, error_message="An unknown error occurred")
        elif percent >= 100:  # noqa: PLR2004
            status = STATUS_COMPLETED
        doc["async_status"] = status
        doc["async_percent_completion"] = percent
        doc["is_running"] = status in (STATUS_NOT_STARTED, STATUS_STARTED, STATUS_RUNNING)
        if status == STATUS_COMPLETED:
            doc["time_completed"] = int(self.now())
        return doc

    def results(self, run: ReportRun, params: dict[str, str], url: str) -> tuple[RawJSON, int]:
        """A page of a completed run's rows (computed once, on the first page)."""
        s = self.settings
        done = run.percent(s.polls_to_complete, s.seconds_to_complete, self.now()) >= 100  # noqa: PLR2004
        if run.fate == "error":
            raise GraphError(400, 2601, "Error accessing adreport job.", is_transient=False)
        if not done or run.fate in ("stuck", "failed", "skipped") or run.too_large:
            raise invalid_parameter(f"(#100) Report run {run.id} is not complete")
        if run.rows is None:
            acct = self.accounts[run.account_id]
            computing = run.computing
            run.rows = computing.result() if computing else encoded_rows(report_rows(acct, run.query, self.today(acct)))
        return encoded_page(run.rows, params, run.id, url)

    # ------------------------------------------------------------------ control and truth

    def control(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``POST /_sandbox/insights``: knobs and the fates of the next report runs."""
        allowed = {"polls_to_complete", "seconds_to_complete", "max_rows_per_job", "budget", "window_seconds", "fates"}
        unknown = sorted(set(doc) - allowed)
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
        s = self.settings
        if "polls_to_complete" in doc:
            s.polls_to_complete = _int(doc, "polls_to_complete", 0)
        if "seconds_to_complete" in doc:
            value = doc["seconds_to_complete"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError("seconds_to_complete must be a number >= 0")
            s.seconds_to_complete = float(value)
        if "max_rows_per_job" in doc:
            s.max_rows_per_job = None if doc["max_rows_per_job"] is None else _int(doc, "max_rows_per_job", 0)
        if "budget" in doc:
            s.budget = _int(doc, "budget", 1)
        if "window_seconds" in doc:
            s.window_seconds = float(_int(doc, "window_seconds", 1))
        for item in doc.get("fates", []):
            if not isinstance(item, dict) or item.get("fate") not in FATES:
                raise ValueError(f"fates items are {{'fate': one of {', '.join(FATES)}, 'count', 'account_id'}}")
            count = item.get("count", 1)
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError("count must be an integer >= 1")
            account = item.get("account_id")
            with self._lock:
                s.fates.extend([(item["fate"], None if account is None else str(account))] * count)
        return self.describe()

    def describe(self) -> dict[str, Any]:
        """``GET /_sandbox/insights``: the knobs and every report run so far, in submission order."""
        s = self.settings
        with self._lock:
            runs = [
                {
                    "id": r.id,
                    "account_id": r.account_id,
                    "fate": "too_large" if r.too_large else r.fate,
                    "polls": r.polls,
                    **r.query.as_dict(),
                }
                for r in self.runs.values()
            ]
            pending = [{"fate": f, "account_id": a} for f, a in s.fates]
        return {
            "polls_to_complete": s.polls_to_complete,
            "seconds_to_complete": s.seconds_to_complete,
            "max_rows_per_job": s.max_rows_per_job,
            "budget": s.budget,
            "pending_fates": pending,
            "runs": runs,
        }

    def truth(self, account_id: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """Every row of a report, as a report run would serve it: the ground truth for tests."""
        acct = self.accounts.get(account_id)
        if acct is None:
            raise ValueError(f"unknown account_id {account_id!r}")
        try:
            query = parse_report(params, self.today(acct), default_level="ad")
        except GraphError as exc:
            raise ValueError(exc.message) from None
        return report_rows(acct, query, self.today(acct))


def _int(doc: dict[str, Any], key: str, minimum: int) -> int:
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}")
    return value
