"""Issue 18: the sandbox's insights have Meta's habits that make pipelines differ from Ads Manager.

Archived ads' rows only with a status filter, deleted ads' rows never through the account's edge but in the
account's totals, days cut in the account's time zone, retired attribution windows and breakdowns, reach
with breakdowns for 13 months. Over real HTTP, as a client sees them.
"""

from __future__ import annotations

import datetime
import json
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from tap_meta_ads_sandbox import SandboxConfig, SandboxServer

VERSION = "v25.0"
RANGE = {"since": "2025-03-01", "until": "2025-03-10"}
ALL_BUT_DELETED = [
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
]


@pytest.fixture
def sb() -> Iterator[SandboxServer]:
    config = SandboxConfig(
        seed=11,
        accounts={"1001": 120, "1002": 10, "1003": 10},
        archived_ratio=0.2,
        deleted_ratio=0.1,
        time_zones={"1002": "Pacific/Kiritimati", "1003": "Pacific/Pago_Pago"},
    )
    with SandboxServer(config) as server:
        yield server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = "Bearer sandbox-token"
        yield session


def sync_rows(http: requests.Session, sb: SandboxServer, account: str = "1001", **params: Any) -> list[dict]:
    """Every row of a synchronous ``GET /act_{id}/insights``, page by page."""
    query = {"level": "ad", "fields": "ad_id,spend,impressions,clicks", "time_increment": "1", "limit": 500}
    query.update(
        {"time_range": json.dumps(RANGE), **{k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}}
    )
    rows: list[dict] = []
    while True:
        resp = http.get(f"{sb.url}/{VERSION}/act_{account}/insights", params=query, timeout=10)
        assert resp.status_code == 200, resp.text
        doc = resp.json()
        rows += doc["data"]
        if "next" not in doc.get("paging", {}):
            return rows
        query["after"] = doc["paging"]["cursors"]["after"]


def ids_with_status(sb: SandboxServer, account: str, status: str) -> set[str]:
    return {ad["id"] for ad in sb.visible("ads", account, [status])}


def test_archived_ads_rows_only_with_a_status_filter_and_deleted_ads_never(sb, http):
    archived, deleted = ids_with_status(sb, "1001", "ARCHIVED"), ids_with_status(sb, "1001", "DELETED")
    assert archived and deleted
    default = {r["ad_id"] for r in sync_rows(http, sb)}
    rule = [{"field": "ad.effective_status", "operator": "IN", "value": ALL_BUT_DELETED}]
    filtered = {r["ad_id"] for r in sync_rows(http, sb, filtering=rule)}
    assert not default & (archived | deleted)  # Meta's default status filter
    assert filtered & archived and not filtered & deleted
    assert default < filtered
    # a split part's id filter alone falls back to the default: its archived ads are lost
    campaigns = sorted({r["campaign_id"] for r in sync_rows(http, sb, fields="ad_id,campaign_id", filtering=rule)})
    by_id = [{"field": "campaign.id", "operator": "IN", "value": campaigns}]
    assert not {r["ad_id"] for r in sync_rows(http, sb, filtering=by_id)} & archived
    both = {r["ad_id"] for r in sync_rows(http, sb, filtering=by_id + rule)}
    assert both == filtered
    # naming DELETED does not bring deleted ads' rows through the account's edge
    with_deleted = [{"field": "ad.effective_status", "operator": "IN", "value": [*ALL_BUT_DELETED, "DELETED"]}]
    assert not {r["ad_id"] for r in sync_rows(http, sb, filtering=with_deleted)} & deleted


def test_account_level_rows_are_the_totals_of_every_ad_deleted_included(sb, http):
    account = sync_rows(http, sb, level="account", fields="spend,impressions,clicks")
    everything = [{"field": "ad.effective_status", "operator": "IN", "value": [*ALL_BUT_DELETED, "DELETED"]}]
    ads = sync_rows(http, sb, filtering=[{"field": "ad.effective_status", "operator": "IN", "value": ALL_BUT_DELETED}])
    assert not {r["ad_id"] for r in sync_rows(http, sb, filtering=everything)} & ids_with_status(sb, "1001", "DELETED")
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for row in ads:
        sums[row["date_start"]] += Decimal(row["spend"])
    gaps = {r["date_start"]: Decimal(r["spend"]) - sums[r["date_start"]] for r in account}
    assert len(gaps) == 10
    assert all(gap >= 0 for gap in gaps.values()) and any(gap > 0 for gap in gaps.values())  # the deleted ads'


def fix_clock(sb: SandboxServer, hour: int, minute: int) -> datetime.datetime:
    """Move the sandbox's clock to tomorrow (UTC) at hour:minute, or later: a fixed hour, whenever the test runs."""
    now = datetime.datetime.fromtimestamp(sb.now(), datetime.timezone.utc)
    target = (now + datetime.timedelta(days=1)).replace(hour=hour, minute=minute, second=0, microsecond=0)
    sb.advance_clock((target - now).total_seconds())
    return target


def test_accounts_have_time_zones_and_serve_no_rows_after_their_own_today(sb, http):
    node = http.get(f"{sb.url}/{VERSION}/act_1002", params={"fields": "timezone_name"}, timeout=10).json()
    assert node["timezone_name"] == "Pacific/Kiritimati"
    assert sb.account("1003")["timezone_name"] == "Pacific/Pago_Pago"
    assert sb.account("1003")["timezone_offset_hours_utc"] == -11
    at = fix_clock(sb, 10, 30)  # Kiritimati is already on tomorrow, Pago Pago still on yesterday
    for account, today in (
        ("1002", at.date() + datetime.timedelta(days=1)),
        ("1003", at.date() - datetime.timedelta(days=1)),
    ):
        span = {
            "since": (today - datetime.timedelta(days=20)).isoformat(),
            "until": (today + datetime.timedelta(days=3)).isoformat(),
        }
        rows = sync_rows(http, sb, account, time_range=span, level="account", fields="spend")
        assert max(datetime.date.fromisoformat(r["date_start"]) for r in rows) == today, account


def test_attribution_windows_reach_and_breakdowns_as_meta_serves_them(sb, http):
    fields = "ad_id,actions"
    rows = sync_rows(
        http, sb, fields=fields, action_attribution_windows=["7d_click", "7d_view", "28d_view", "1d_engaged_view"]
    )
    keys = {k for r in rows for a in r.get("actions", []) for k in a}
    assert {"7d_click", "1d_engaged_view", "value"} <= keys
    assert not keys & {"7d_view", "28d_view"}  # asked for, no longer returned
    # parameters Meta ignores change nothing
    plain = sync_rows(http, sb, fields="ad_id,actions")
    ignored = sync_rows(
        http, sb, fields="ad_id,actions", use_unified_attribution_setting="false", action_report_time="impression"
    )
    assert plain == ignored
    # dma is gone; comscore_market replaces it
    resp = http.get(
        f"{sb.url}/{VERSION}/act_1001/insights",
        params={"level": "ad", "fields": "spend", "breakdowns": "dma", "time_range": json.dumps(RANGE)},
        timeout=10,
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == 100
    assert {r["comscore_market"] for r in sync_rows(http, sb, breakdowns="comscore_market")}
    # reach with breakdowns: the last 13 months only
    today = datetime.datetime.fromtimestamp(sb.now(), datetime.timezone.utc).date()
    old = {
        "since": (today - datetime.timedelta(days=420)).isoformat(),
        "until": (today - datetime.timedelta(days=400)).isoformat(),
    }
    params = {"level": "ad", "fields": "reach", "breakdowns": "country", "time_range": json.dumps(old)}
    resp = http.get(f"{sb.url}/{VERSION}/act_1001/insights", params=params, timeout=10)
    assert resp.status_code == 400 and "13 months" in resp.json()["error"]["message"]
    params["fields"] = "impressions"
    assert http.get(f"{sb.url}/{VERSION}/act_1001/insights", params=params, timeout=10).status_code == 200
