"""Issue 18: insights that match Ads Manager, end to end against the sandbox's Meta habits over real HTTP.

Archived ads' rows (every job, part and listing carries the status filter), the account's totals and the
reconciliation against them, each account's own days (time zones at both ends of the world, at a fixed
hour), attribution as Meta serves it, and the presets.
"""

from __future__ import annotations

import datetime
import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
from tap_meta_ads_sandbox import SandboxServer
from tap_meta_ads_sandbox.data import EFFECTIVE_STATUSES

from tap_meta_ads.insights import months_back
from tests.insights_helpers import (
    LEVEL_STATUSES,
    day,
    duplicates,
    exact_records,
    insights_config,
    key_properties,
    select,
    truth,
)
from tests.tap_harness import discovered_catalog, run_tap

SINCE, UNTIL = "2025-02-01", "2025-02-21"


def by_key(rows: list[dict[str, Any]], *names: str) -> dict[tuple, dict[str, Any]]:
    return {tuple(r[n] for n in names): r for r in rows}


def ids_with_status(sb: SandboxServer, account: str, status: str) -> set[str]:
    return {ad["id"] for ad in sb.visible("ads", account, [status])}


def submits(sb: SandboxServer) -> list[dict[str, Any]]:
    return [e["params"] for e in sb.stats()["log"] if e["route"] == "insights_submit"]


def status_rules(params: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in json.loads(params.get("filtering", "[]")) if r["field"].endswith(".effective_status")]


# -- archived ads ----------------------------------------------------------------------------------------


def test_ads_insights_equals_the_truth_including_archived_ads_rows(make_sandbox):
    sb = make_sandbox(accounts={"1001": 60, "1002": 30}, archived_ratio=0.2, deleted_ratio=0.1)
    config = insights_config(sb.url, ["1001", "1002"], SINCE, UNTIL)
    run = run_tap(config, catalog=select(config, {"ads_insights"}))
    assert run.returncode == 0, run.stderr[-3000:]

    records = exact_records(run.stdout, "ads_insights")
    assert duplicates([(r["date_start"], r["ad_id"]) for r in records]) == {}
    for account in ("1001", "1002"):
        expected = truth(sb, account, SINCE, UNTIL)
        mine = [r for r in records if r["account_id"] == account]
        assert by_key(mine, "date_start", "ad_id") == by_key(expected, "date_start", "ad_id")
        archived = ids_with_status(sb, account, "ARCHIVED")
        assert {r["ad_id"] for r in mine} & archived  # archived ads' rows are there
        assert not {r["ad_id"] for r in mine} & ids_with_status(sb, account, "DELETED")
        # without the status filter, Meta (and the sandbox) would have left them out
        unfiltered = truth(sb, account, SINCE, UNTIL, filtering=[])
        assert len(unfiltered) < len(expected)
        assert not {r["ad_id"] for r in unfiltered} & archived
    for params in submits(sb):
        assert status_rules(params) == [
            {"field": "ad.effective_status", "operator": "IN", "value": LEVEL_STATUSES["ad"]}
        ]


def test_jobs_split_down_to_campaigns_and_a_failing_run_keep_archived_ads_rows(make_sandbox):
    sb = make_sandbox(accounts={"1001": 90}, archived_ratio=0.25, deleted_ratio=0.1)
    expected = truth(sb, "1001", SINCE, "2025-02-07")
    sb.configure_insights(max_rows_per_job=20, fates=[{"fate": "failed", "count": 1}])
    config = insights_config(sb.url, ["1001"], SINCE, "2025-02-07", insights_job_attempts=1)
    run = run_tap(config, catalog=select(config, {"ads_insights"}))
    assert run.returncode == 0, run.stderr[-3000:]

    records = exact_records(run.stdout, "ads_insights")
    assert duplicates([(r["date_start"], r["ad_id"]) for r in records]) == {}
    assert by_key(records, "date_start", "ad_id") == by_key(expected, "date_start", "ad_id")
    assert {r["ad_id"] for r in records} & ids_with_status(sb, "1001", "ARCHIVED")
    runs = sb.insights_runs()
    assert any(r["filtering"].get("campaign") for r in runs)  # split down to campaigns (and further)
    # every whole-account job failed at full size and was split (days, then campaigns, then ad sets)
    assert all(r["fate"] == "too_large" for r in runs if not r["filtering"])
    assert run.summary()["retries"]["report_run_failed"] > 1
    # every report run, whole or part, and every synchronous listing carried the status filter
    assert all(r["statuses"] == sorted(LEVEL_STATUSES["ad"]) for r in runs)
    listings = [e["params"] for e in sb.stats()["log"] if e["route"] == "insights"]
    assert listings
    assert all(
        status_rules(p) == [{"field": "ad.effective_status", "operator": "IN", "value": LEVEL_STATUSES["ad"]}]
        for p in listings
    )


# -- account totals and reconciliation ------------------------------------------------------------------


def test_account_totals_include_deleted_ads_and_the_reconciliation_reports_their_spend(make_sandbox):
    sb = make_sandbox(accounts={"1001": 40, "1002": 24}, archived_ratio=0.15, deleted_ratio=0.15)
    config = insights_config(sb.url, ["1001", "1002"], SINCE, UNTIL)
    run = run_tap(config, catalog=select(config, {"ads_insights", "ads_insights_account"}))
    assert run.returncode == 0, run.stderr[-3000:]

    assert key_properties(run.stdout, "ads_insights_account") == ["date_start", "account_id"]
    totals = exact_records(run.stdout, "ads_insights_account")
    ads = exact_records(run.stdout, "ads_insights")
    summary = run.summary()["reconciliation"]
    for account in ("1001", "1002"):
        expected = truth(
            sb, account, SINCE, UNTIL, fields=["account_id", "spend", "impressions", "clicks"], level="account"
        )
        mine = {r["date_start"]: r for r in totals if r["account_id"] == account}
        assert {d: {k: r[k] for k in ("spend", "impressions", "clicks")} for d, r in mine.items()} == {
            r["date_start"]: {k: r[k] for k in ("spend", "impressions", "clicks")} for r in expected
        }
        # the gap, computed here from the sandbox's truth: the deleted ads' delivery
        sums: dict[str, Decimal] = defaultdict(Decimal)
        for row in ads:
            if row["account_id"] == account:
                sums[row["date_start"]] += row["spend"]
        gaps = {d: r["spend"] - sums[d] for d, r in mine.items()}
        off = {d: g for d, g in gaps.items() if g}
        assert off and all(g > 0 for g in off.values())
        assert summary[account] == {"days_checked": 21, "days_off": len(off), "spend_gap": float(sum(off.values()))}
        lines = [line for line in run.stderr.splitlines() if f"Reconciliation: account {account} on " in line]
        assert len(lines) == len(off)
        for d, gap in off.items():
            assert any(f" on {d}:" in line and f"(gap {gap})" in line for line in lines), d


def test_reconciliation_reports_nothing_when_there_is_no_gap(make_sandbox):
    sb = make_sandbox(accounts={"1001": 30}, archived_ratio=0.2, deleted_ratio=0.0)
    config = insights_config(sb.url, ["1001"], SINCE, "2025-02-10")
    run = run_tap(config, catalog=select(config, {"ads_insights", "ads_insights_account"}))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.summary()["reconciliation"] == {"1001": {"days_checked": 10, "days_off": 0, "spend_gap": 0.0}}
    assert "Reconciliation: account" not in run.stderr
    # one stream alone: nothing to reconcile, nothing reported
    alone = run_tap(config, catalog=select(config, {"ads_insights"}))
    assert alone.returncode == 0 and alone.summary()["reconciliation"] == {}


# -- the account's days ---------------------------------------------------------------------------------

ZONES = {"1002": ("Pacific/Kiritimati", 14), "1003": ("Pacific/Pago_Pago", -11)}


def fixed_now(sb: SandboxServer, hour: int, minute: int) -> tuple[datetime.datetime, dict[str, str]]:
    """Tomorrow (UTC) at hour:minute for both clocks: the sandbox's is moved there, the tap's is set to it."""
    now = datetime.datetime.fromtimestamp(sb.now(), datetime.timezone.utc)
    target = (now + datetime.timedelta(days=1)).replace(hour=hour, minute=minute, second=0, microsecond=0)
    sb.advance_clock((target - now).total_seconds())
    return target, {"META_ADS_TEST_NOW": target.isoformat()}


def today_of(at: datetime.datetime, offset: int) -> datetime.date:
    return (at + datetime.timedelta(hours=offset)).date()


@pytest.mark.parametrize(("hour", "minute"), [(0, 30), (10, 30), (11, 30), (12, 30), (23, 30)])
def test_accounts_at_utc_plus_14_and_minus_11_are_read_up_to_their_own_today(make_sandbox, hour, minute):
    sb = make_sandbox(accounts={"1002": 12, "1003": 12}, time_zones={a: z for a, (z, _) in ZONES.items()})
    at, env = fixed_now(sb, hour, minute)
    start = at.date() - datetime.timedelta(days=4)
    config = insights_config(sb.url, ["1002", "1003"], start.isoformat(), "2099-01-01", insights_lookback_days=2)
    del config["end_date"]
    run = run_tap(config, catalog=select(config, {"ads_insights_account"}), env=env)
    assert run.returncode == 0, run.stderr[-3000:]

    runs = sb.insights_runs()
    records = exact_records(run.stdout, "ads_insights_account")
    for account, (_, offset) in ZONES.items():
        today = today_of(at, offset)
        mine = [r for r in runs if r["account_id"] == account]
        assert max(day(r["until"]) for r in mine) == today, (account, hour)
        assert min(day(r["since"]) for r in mine) == start
        days = {day(r["date_start"]) for r in records if r["account_id"] == account}
        assert days == {start + datetime.timedelta(days=n) for n in range((today - start).days + 1)}
    # one read of each account's time zone for the run
    reads = [e for e in sb.stats()["log"] if e["route"] == "node" and "timezone_name" in e["params"].get("fields", "")]
    assert sorted(e["account_id"] for e in reads) == ["1002", "1003"]
    # the bookmark is the account's today, a plain date; the next run starts the lookback before it
    bookmarks = {
        p["context"]["account_id"]: p["replication_key_value"]
        for p in run.last_state["bookmarks"]["ads_insights_account"]["partitions"]
    }
    assert bookmarks == {a: today_of(at, o).isoformat() for a, (_, o) in ZONES.items()}


def test_the_37_month_floor_is_the_accounts_own(make_sandbox):
    sb = make_sandbox(accounts={"1002": 2, "1003": 2}, time_zones={a: z for a, (z, _) in ZONES.items()})
    at, env = fixed_now(sb, 10, 30)  # UTC+14 is on tomorrow, UTC-11 still on yesterday
    config = insights_config(
        sb.url, ["1002", "1003"], "2020-01-01", "2099-01-01", insights_window_days=90, insights_jobs_in_flight=10
    )
    del config["end_date"]
    run = run_tap(config, catalog=select(config, {"ads_insights_account"}), env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    runs = sb.insights_runs()
    for account, (_, offset) in ZONES.items():
        floor = months_back(today_of(at, offset), 37) + datetime.timedelta(days=1)
        assert min(day(r["since"]) for r in runs if r["account_id"] == account) == floor
    assert "error:3018" not in sb.stats()["by_outcome"]


def test_error_3018_is_one_configuration_line_never_a_retry(make_sandbox):
    sb = make_sandbox(accounts={"1002": 2}, time_zones={"1002": "Pacific/Kiritimati"})
    _, env = fixed_now(sb, 10, 30)
    sb.advance_clock(5 * 86400)  # Meta's clock is five days ahead of this machine's
    config = insights_config(sb.url, ["1002"], "2020-01-01", "2099-01-01", insights_window_days=90)
    del config["end_date"]
    run = run_tap(config, catalog=select(config, {"ads_insights_account"}), env=env)
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "| ERROR" in line and "unhandled error" not in line]
    assert len(errors) == 1 and "3018" in errors[0] and "37 months" in errors[0], run.stderr[-2000:]
    assert "start_date" in errors[0]
    assert len(submits(sb)) == 1  # refused once, never retried


# -- attribution ------------------------------------------------------------------------------------------


def test_what_the_tap_sends_for_attribution_is_what_meta_honours(make_sandbox):
    sb = make_sandbox(accounts={"1001": 12})
    reports = [
        {"name": "attr", "fields": ["ad_id", "actions"], "action_attribution_windows": ["28d_click", "1d_engaged_view"]}
    ]
    config = insights_config(sb.url, ["1001"], SINCE, "2025-02-03", insight_reports=reports)
    run = run_tap(config, catalog=select(config, {"ads_insights_attr", "ads_insights"}))
    assert run.returncode == 0, run.stderr[-3000:]
    sent = submits(sb)
    assert sent
    for params in sent:
        assert not {"use_unified_attribution_setting", "action_report_time", "use_account_attribution_setting"} & set(
            params
        )
    windows = {json.dumps(json.loads(p["action_attribution_windows"])) for p in sent}
    assert windows == {json.dumps(["28d_click", "1d_engaged_view"]), json.dumps(["1d_click", "7d_click", "1d_view"])}
    actions = [a for r in exact_records(run.stdout, "ads_insights_attr") for a in r.get("actions", [])]
    assert actions and all({"value", "28d_click", "1d_engaged_view"} <= set(a) for a in actions)


RETIRED_7D_VIEW = (
    "attribution window '7d_view' was retired by Meta on 2026-01-12 and is no longer served; "
    "Meta serves 1d_click, 7d_click, 28d_click, 1d_view, 1d_engaged_view"
)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"insight_reports": [{"name": "v", "action_attribution_windows": ["7d_view"]}]},
            RETIRED_7D_VIEW,
        ),
        (
            {"insight_reports": [{"name": "v", "action_attribution_windows": ["1d_click", "28d_view"]}]},
            "'28d_view' was retired by Meta",
        ),
        (
            {"insight_reports": [{"name": "t", "action_report_time": "impression"}]},
            "insight_reports[0] 't': action_report_time is ignored by Meta since 2025-06-10",
        ),
        (
            {"use_unified_attribution_setting": True},
            "| use_unified_attribution_setting is ignored by Meta since 2025-06-10 (Meta always reports",
        ),
        (
            {"insight_reports": [{"name": "d", "breakdowns": ["dma"]}]},
            "breakdown 'dma' was retired by Meta on 2026-06-22; use 'comscore_market' instead",
        ),
        (
            {"insight_reports": [{"name": "account"}]},
            "insight_reports[0] 'account': ads_insights_account is a preset stream of the tap",
        ),
        (
            {"insight_reports": [{"name": "country", "breakdowns": ["country"]}]},
            "ads_insights_country is a preset stream",
        ),
    ],
)
def test_retired_windows_ignored_parameters_dma_and_preset_names_are_refused_with_one_line(sandbox, overrides, message):
    config = insights_config(sandbox.url, ["1001"], SINCE, UNTIL, **overrides)
    run = run_tap(config)
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if message in line]
    assert len(lines) == 1, run.stderr[-2000:]
    assert sandbox.stats()["requests"] == 0


def test_reach_with_breakdowns_clamps_to_13_months_in_the_accounts_days(make_sandbox):
    sb = make_sandbox(accounts={"1003": 2}, time_zones={"1003": "Pacific/Pago_Pago"})
    at, env = fixed_now(sb, 10, 30)
    config = insights_config(
        sb.url, ["1003"], "2020-01-01", "2099-01-01", insights_window_days=90, insights_jobs_in_flight=10
    )
    del config["end_date"]
    run = run_tap(config, catalog=select(config, {"ads_insights_country"}), env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    today = today_of(at, -11)
    assert min(day(r["since"]) for r in sb.insights_runs()) == months_back(today, 13) + datetime.timedelta(days=1)
    assert "Meta serves reach with breakdowns for the last 13 months only" in run.stderr
    assert not [k for k in sb.stats()["by_outcome"] if k.startswith("error")]


def test_adsets_carry_the_attribution_spec_that_produced_each_insights_row(sandbox):
    config = insights_config(sandbox.url, ["1002"], SINCE, "2025-02-03")
    run = run_tap(config, catalog=select(config, {"adsets", "ads_insights"}))
    assert run.returncode == 0, run.stderr[-3000:]
    records = [r["record"] for r in run.records if r["stream"] == "adsets"]
    statuses = list(EFFECTIVE_STATUSES)
    truth_specs = {a["id"]: a["attribution_spec"] for a in sandbox.visible("adsets", "1002", statuses)}
    assert records
    for record in records:
        assert record["attribution_spec"] == truth_specs[record["id"]]
    # each row's attribution_setting is its ad set's spec, as Ads Manager names it (7d_click_1d_view, 1d_click...)
    kinds = {"CLICK_THROUGH": "click", "VIEW_THROUGH": "view"}
    every = sandbox.visible("adsets", "1002", statuses)  # DELETED too: ads of a deleted ad set deliver in the sandbox
    named = {
        a["id"]: "_".join(f"{s['window_days']}d_{kinds[s['event_type']]}" for s in a["attribution_spec"]) for a in every
    }
    rows = exact_records(run.stdout, "ads_insights")
    assert rows and all(row["attribution_setting"] == named[row["adset_id"]] for row in rows)
    assert len({row["attribution_setting"] for row in rows}) > 1


# -- presets ----------------------------------------------------------------------------------------------

PRESETS = {
    "ads_insights_account": ["date_start", "account_id"],
    "ads_insights_campaign": ["date_start", "account_id", "campaign_id"],
    "ads_insights_adset": ["date_start", "account_id", "adset_id"],
    "ads_insights_age_and_gender": ["date_start", "account_id", "ad_id", "age", "gender"],
    "ads_insights_country": ["date_start", "account_id", "ad_id", "country"],
    "ads_insights_region": ["date_start", "account_id", "ad_id", "region"],
    "ads_insights_comscore_market": ["date_start", "account_id", "ad_id", "comscore_market"],
    "ads_insights_platform_and_device": [
        "date_start",
        "account_id",
        "ad_id",
        "publisher_platform",
        "platform_position",
        "impression_device",
    ],
    "ads_insights_action_type": ["date_start", "account_id", "ad_id"],
}


def test_every_preset_is_discoverable_with_its_key_and_not_selected_by_default():
    streams = {s["tap_stream_id"]: s for s in discovered_catalog()["streams"]}
    for name, key in PRESETS.items():
        assert streams[name]["key_properties"] == key, name
        top = next(m["metadata"] for m in streams[name]["metadata"] if m["breadcrumb"] == [])
        assert top["selected-by-default"] is False, name
        for column in key:
            assert column in streams[name]["schema"]["properties"], (name, column)
    assert all("dma" not in s["schema"]["properties"] for s in streams.values())


@pytest.mark.parametrize(
    ("stream", "params"),
    [
        ("ads_insights_platform_and_device", {"breakdowns": "publisher_platform,platform_position,impression_device"}),
        ("ads_insights_comscore_market", {"breakdowns": "comscore_market"}),
        ("ads_insights_campaign", {"level": "campaign"}),
    ],
)
def test_presets_equal_the_truth(make_sandbox, stream, params):
    sb = make_sandbox(accounts={"1001": 18})
    # recent days: reports with breakdowns read reach for the last 13 months only
    today = datetime.datetime.fromtimestamp(sb.now(), datetime.timezone.utc).date()
    since, until = (today - datetime.timedelta(days=40)).isoformat(), (today - datetime.timedelta(days=36)).isoformat()
    config = insights_config(sb.url, ["1001"], since, until)
    run = run_tap(config, catalog=select(config, {stream}))
    assert run.returncode == 0, run.stderr[-3000:]
    key = PRESETS[stream]
    records = exact_records(run.stdout, stream)
    assert duplicates([tuple(r[k] for k in key) for r in records]) == {}
    schema = next(s for s in discovered_catalog()["streams"] if s["tap_stream_id"] == stream)["schema"]
    breakdowns = params.get("breakdowns", "").split(",")
    fields = [f for f in schema["properties"] if f not in ("date_start", "date_stop", *breakdowns)]
    expected = truth(sb, "1001", since, until, fields=fields, **params)
    assert len(expected) >= 5
    assert by_key(records, *key) == by_key(expected, *key)
