"""Issue 9: the insights streams end to end against the sandbox's async report runs, over real HTTP."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import pytest
from tap_meta_ads_sandbox import FaultPlan

from tap_meta_ads.insights import months_back
from tap_meta_ads.report_runs import POLL_CAP_FACTOR, next_poll
from tests.insights_helpers import (
    day,
    duplicates,
    exact_records,
    insights_config,
    key_properties,
    select,
    truth,
)
from tests.tap_harness import run_tap

SINCE, UNTIL = "2025-01-01", "2025-03-31"  # 90 days
ACCOUNTS = {"1001": 36, "1002": 18}


@pytest.fixture
def sb(make_sandbox):
    return make_sandbox(accounts=dict(ACCOUNTS))


def submitted(sb) -> list[dict[str, Any]]:
    """The report runs the sandbox received, in order."""
    return sb.insights_runs()


def by_key(rows: list[dict[str, Any]], *names: str) -> dict[tuple, dict[str, Any]]:
    return {tuple(r[n] for n in names): r for r in rows}


def test_90_days_of_two_accounts_one_row_per_day_and_ad_equal_to_the_truth(sb):
    config = insights_config(sb.url, ["act_1001", "1002"], SINCE, UNTIL)
    run = run_tap(config, catalog=select(config, {"ads_insights"}))
    assert run.returncode == 0, run.stderr[-3000:]

    assert key_properties(run.stdout, "ads_insights") == ["date_start", "account_id", "ad_id"]
    records = exact_records(run.stdout, "ads_insights")
    keys = [(r["date_start"], r["account_id"], r["ad_id"]) for r in records]
    assert duplicates(keys) == {}
    expected = truth(sb, "1001", SINCE, UNTIL) + truth(sb, "1002", SINCE, UNTIL)
    assert len(expected) > 1500
    assert {r["date_start"] for r in records} == {
        (day(SINCE) + datetime.timedelta(days=n)).isoformat() for n in range(90)
    }
    got = by_key(records, "date_start", "account_id", "ad_id")
    assert set(got) == set(by_key(expected, "date_start", "account_id", "ad_id"))
    for row in expected:
        assert got[row["date_start"], row["account_id"], row["ad_id"]] == row
    # metrics are numbers, exactly Meta's digits: integers for counts, decimals for money and ratios
    sample = next(r for r in records if r.get("cpc") is not None and r.get("actions"))
    assert isinstance(sample["impressions"], int)
    assert not isinstance(sample["spend"], str) and not isinstance(sample["cpc"], str)
    assert all(not isinstance(a["value"], str) for a in sample["actions"])
    # report runs covered exact, non-overlapping windows: every day asked for once per account
    for account in ("1001", "1002"):
        runs = [r for r in submitted(sb) if r["account_id"] == account]
        days = [
            day(r["since"]) + datetime.timedelta(days=n)
            for r in runs
            for n in range((day(r["until"]) - day(r["since"])).days + 1)
        ]
        assert sorted(days) == sorted(set(days)) and len(days) == 90
    assert sb.stats()["token_in_url"] == 0


def test_custom_report_by_country_has_one_row_per_day_ad_and_country(sb):
    reports = [
        {"name": "by_country", "breakdowns": ["country"], "fields": ["ad_id", "impressions", "spend", "actions"]}
    ]
    config = insights_config(sb.url, ["1002"], "2025-02-01", "2025-02-20", insight_reports=reports)
    run = run_tap(config, catalog=select(config, {"ads_insights_by_country"}))
    assert run.returncode == 0, run.stderr[-3000:]

    assert key_properties(run.stdout, "ads_insights_by_country") == ["date_start", "account_id", "ad_id", "country"]
    records = exact_records(run.stdout, "ads_insights_by_country")
    keys = [(r["date_start"], r["ad_id"], r["country"]) for r in records]
    assert duplicates(keys) == {}
    expected = truth(
        sb,
        "1002",
        "2025-02-01",
        "2025-02-20",
        fields=["ad_id", "impressions", "spend", "actions"],
        breakdowns="country",
    )
    assert len({r["country"] for r in expected}) > 3
    assert {
        k: {**r, "account_id": "1002"} for k, r in by_key(expected, "date_start", "ad_id", "country").items()
    } == by_key(records, "date_start", "ad_id", "country")
    assert all(r["breakdowns"] == ["country"] for r in submitted(sb))


def test_weekly_campaign_report_keeps_whole_weeks_across_windows(sb):
    reports = [
        {"name": "weekly", "level": "campaign", "fields": ["campaign_id", "clicks", "spend"], "time_increment": 7}
    ]
    config = insights_config(
        sb.url, ["1001"], "2025-02-01", "2025-03-10", insight_reports=reports, insights_window_days=10
    )
    run = run_tap(config, catalog=select(config, {"ads_insights_weekly"}))
    assert run.returncode == 0, run.stderr[-3000:]
    records = exact_records(run.stdout, "ads_insights_weekly")
    assert key_properties(run.stdout, "ads_insights_weekly") == ["date_start", "account_id", "campaign_id"]
    # weeks start on fixed boundaries (every window is whole weeks), so each row is one whole week
    starts = sorted({r["date_start"] for r in records})
    first = day(starts[0])
    assert first <= day("2025-02-01") and first.toordinal() % 7 == 0
    expected = truth(
        sb,
        "1001",
        starts[0],
        "2025-03-10",
        fields=["campaign_id", "clicks", "spend"],
        level="campaign",
        time_increment="7",
    )
    assert by_key(records, "date_start", "campaign_id") == {
        k: {**r, "account_id": "1001"} for k, r in by_key(expected, "date_start", "campaign_id").items()
    }


def test_second_run_requests_only_the_lookback_window(sb):
    config = insights_config(sb.url, ["1001"], "2025-01-01", "2025-02-28", insights_lookback_days=5)
    catalog = select(config, {"ads_insights"})
    first = run_tap(config, catalog=catalog)
    assert first.returncode == 0, first.stderr[-3000:]
    bookmark = first.last_state["bookmarks"]["ads_insights"]["partitions"][0]
    assert bookmark["replication_key_value"] == "2025-02-28"
    assert "insights_progress" not in bookmark
    before = len(submitted(sb))

    second = run_tap(config, catalog=catalog, state=first.last_state)
    assert second.returncode == 0, second.stderr[-3000:]
    runs = submitted(sb)[before:]
    assert min(day(r["since"]) for r in runs) == day("2025-02-24")  # the last 5 days up to the bookmark
    assert max(day(r["until"]) for r in runs) == day("2025-02-28")
    records = exact_records(second.stdout, "ads_insights")
    assert {r["date_start"] for r in records} == {f"2025-02-{d}" for d in range(24, 29)}
    expected = truth(sb, "1001", "2025-02-24", "2025-02-28")
    assert by_key(records, "date_start", "ad_id") == by_key(expected, "date_start", "ad_id")


def test_failed_skipped_stuck_and_erroring_report_runs_recover(sb):
    fates = [{"fate": f, "count": 1} for f in ("failed", "skipped", "stuck", "error", "failed")]
    sb.configure_insights(fates=fates)
    sb.set_faults(FaultPlan(("http500~0.05", "transient~0.05"), seed=5))
    config = insights_config(sb.url, ["1001"], "2025-01-01", "2025-02-15")
    run = run_tap(config, catalog=select(config, {"ads_insights"}))
    assert run.returncode == 0, run.stderr[-3000:]

    records = exact_records(run.stdout, "ads_insights")
    assert duplicates([(r["date_start"], r["ad_id"]) for r in records]) == {}
    assert by_key(records, "date_start", "ad_id") == by_key(
        truth(sb, "1001", "2025-01-01", "2025-02-15"), "date_start", "ad_id"
    )
    retries = run.summary()["retries"]
    assert retries["report_run_failed"] == 2
    assert retries["report_run_skipped"] == 1
    assert retries["report_run_stuck"] == 1
    assert retries["report_run_lost"] == 1
    assert sum(n for reason, n in retries.items() if not reason.startswith("report_run")) > 0


@pytest.mark.parametrize("split_by_objects", [False, True])
def test_a_job_that_always_fails_at_full_size_succeeds_through_splitting(sb, split_by_objects):
    expected = truth(sb, "1001", "2025-01-01", "2025-01-21")
    per_day = max(sum(1 for r in expected if r["date_start"] == d) for d in {r["date_start"] for r in expected})
    # days: a week fails, two days pass; objects: even one day fails, so campaigns (then ad sets) split it
    rows_limit = 10 if split_by_objects else per_day * 2
    assert (per_day > rows_limit) is split_by_objects
    sb.configure_insights(max_rows_per_job=rows_limit)
    config = insights_config(sb.url, ["1001"], "2025-01-01", "2025-01-21", insights_job_attempts=1)
    run = run_tap(config, catalog=select(config, {"ads_insights"}))
    assert run.returncode == 0, run.stderr[-3000:]

    records = exact_records(run.stdout, "ads_insights")
    assert duplicates([(r["date_start"], r["ad_id"]) for r in records]) == {}
    assert by_key(records, "date_start", "ad_id") == by_key(expected, "date_start", "ad_id")
    runs = submitted(sb)
    assert any(r["fate"] == "too_large" for r in runs)
    assert any(r["filtering"].get("campaign") for r in runs) is split_by_objects
    assert any(r["filtering"].get("adset") for r in runs) is split_by_objects
    assert "splitting it into 2 parts" in run.stderr


def test_a_job_that_cannot_be_split_further_fails_with_one_line(sb):
    sb.configure_insights(max_rows_per_job=0)
    config = insights_config(sb.url, ["1002"], "2025-01-01", "2025-01-02", insights_job_attempts=1)
    run = run_tap(config, catalog=select(config, {"ads_insights"}))
    assert run.returncode == 1
    # one ERROR line says what happened (the SDK adds a generic "unhandled error" line of its own)
    errors = [line for line in run.stderr.splitlines() if "| ERROR" in line and "unhandled error" not in line]
    assert len(errors) == 1 and "cannot be split further" in errors[0], run.stderr[-2000:]
    # whichever single day and ad fails first (the runs of both days are in flight together)
    assert re.search(r"2025-01-0([12])\.\.2025-01-0\1 \(1 ad\)", errors[0]), errors[0]


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ({"name": "x", "level": "creative"}, "insight_reports[0] 'x': level 'creative' is not one of"),
        ({"name": "Bad Name"}, "insight_reports[0] 'Bad Name': name must be"),
        ({"name": "mix", "breakdowns": ["age", "country"]}, "insight_reports[0] 'mix': Meta refuses the breakdown"),
        ({"name": "pos", "breakdowns": ["platform_position"]}, "'pos': Meta refuses breakdown 'platform_position'"),
        ({"name": "f", "fields": ["spend", "nope"]}, "insight_reports[0] 'f': unknown field 'nope'"),
        ({"name": "lvl", "level": "campaign", "fields": ["ad_id"]}, "field 'ad_id' has no value at level 'campaign'"),
        ({"name": "w", "action_attribution_windows": ["2d_click"]}, "attribution window '2d_click' is not one of"),
    ],
)
def test_bad_report_definitions_fail_before_any_request(sb, report, message):
    config = insights_config(sb.url, ["1001"], SINCE, UNTIL, insight_reports=[report])
    run = run_tap(config)
    assert run.returncode != 0
    assert message in run.stderr, run.stderr[-2000:]
    assert sb.stats()["requests"] == 0


def test_history_is_clamped_to_37_months(make_sandbox):
    sb = make_sandbox(accounts={"1001": 4})
    # the account's days (its time zone), as Meta counts its 37 months
    zone = datetime.timezone(datetime.timedelta(hours=sb.account("1001")["timezone_offset_hours_utc"]))
    today = datetime.datetime.now(zone).date()
    config = insights_config(
        sb.url, ["1001"], "2020-01-01", today.isoformat(), insights_window_days=90, insights_jobs_in_flight=10
    )
    run = run_tap(config, catalog=select(config, {"ads_insights"}))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Meta keeps 37 months of insights" in run.stderr
    first = min(day(r["since"]) for r in submitted(sb))
    assert months_back(today, 37) < first <= months_back(today, 37) + datetime.timedelta(days=2)
    assert "error:3018" not in sb.stats()["by_outcome"]


def test_the_insights_throttle_is_paced_and_error_80000_waited_out(sb):
    sb.configure_insights(budget=12, window_seconds=1)
    config = insights_config(sb.url, ["1002"], "2025-01-01", "2025-01-28", backoff_max_seconds=1)
    run = run_tap(config, catalog=select(config, {"ads_insights"}))
    assert run.returncode == 0, run.stderr[-3000:]
    summary = run.summary()
    assert summary["pacing_wait_seconds"] > 0 or summary["retries"].get("throttled:80000/2446079", 0) > 0
    records = exact_records(run.stdout, "ads_insights")
    assert by_key(records, "date_start", "ad_id") == by_key(
        truth(sb, "1002", "2025-01-01", "2025-01-28"), "date_start", "ad_id"
    )


def test_settings_reach_the_report_runs(sb):
    reports = [
        {
            "name": "pp",
            "level": "adset",
            "breakdowns": ["publisher_platform", "platform_position"],
            "fields": ["adset_id", "spend"],
            "action_breakdowns": ["action_type", "action_device"],
            "action_attribution_windows": ["7d_click"],
        }
    ]
    config = insights_config(sb.url, ["1001"], "2025-01-01", "2025-01-03", insight_reports=reports)
    run = run_tap(config, catalog=select(config, {"ads_insights_pp"}))
    assert run.returncode == 0, run.stderr[-3000:]
    submits = [e["params"] for e in sb.stats()["log"] if e["route"] == "insights_submit"]
    assert submits and all(p["level"] == "adset" for p in submits)
    assert json.loads(submits[0]["action_breakdowns"]) == ["action_type", "action_device"]
    assert json.loads(submits[0]["action_attribution_windows"]) == ["7d_click"]
    assert submits[0]["breakdowns"] == "publisher_platform,platform_position"
    assert set(submits[0]["fields"].split(",")) == {"account_id", "adset_id", "spend"}
    assert key_properties(run.stdout, "ads_insights_pp") == [
        "date_start",
        "account_id",
        "adset_id",
        "publisher_platform",
        "platform_position",
    ]


def _schedule(first: float, run_seconds: float, percent_at=lambda elapsed, run: int(min(1.0, elapsed / run) * 100)):
    """Poll times of one run of ``run_seconds`` whose progress is ``percent_at(elapsed)``, until found done."""
    polls, interval, at = [], first, first
    while True:
        polls.append(at)
        percent = percent_at(at, run_seconds)
        if percent >= 100:
            return polls
        interval, wait = next_poll(interval, first, at, percent)
        at += wait


@pytest.mark.parametrize("run_seconds", [3.0, 10.0, 30.0, 60.0, 200.0])
def test_a_run_that_shows_steady_progress_is_found_done_soon_after_it_is(run_seconds):
    """Polled when its pace says it is done: found within 10 % (or a quarter of the first wait) of its end,
    where the growing interval alone found a 10 s run after 13.5 s; never more polls than growth alone."""
    first = 5 / 3
    found = _schedule(first, run_seconds)
    grown = _schedule(first, run_seconds, percent_at=lambda at, run: 100 if at >= run else 0)  # no progress shown
    assert found[-1] <= max(run_seconds * 1.10, run_seconds + first * 0.25)
    assert found[-1] <= grown[-1]
    assert len(found) <= len(grown)


def test_a_run_whose_progress_stalls_or_jumps_is_never_polled_later_than_the_growing_interval():
    """Meta's percentage is coarse: a guess that is early costs a poll, but the growing interval stays the latest."""
    first = 5.0
    interval = first
    for percent, elapsed in [(1, 5.0), (99, 6.0), (50, 400.0), (0, 700.0), (100, 800.0)]:
        before = interval
        interval, wait = next_poll(interval, first, elapsed, percent)
        assert interval == min(first * POLL_CAP_FACTOR, before * 1.5)
        assert first * 0.25 <= wait <= interval


def test_a_report_page_with_a_metric_that_is_no_number_stops_the_run_after_the_accounts_before_it(make_sandbox):
    """A run's pages wait for the writer as Meta's JSON and are built when written (``report_runs.Rows``).

    A bad value is then found by the writer: one ERROR line naming the field, nothing of that account's report
    written, and every account written before it complete, its STATE saved.
    """
    sandbox = make_sandbox(accounts={"1001": 12, "1002": 12}, faults=FaultPlan(["act_1002:bad_number@after:0"]))
    config = insights_config(sandbox.url, ["1001", "1002"], "2025-01-01", "2025-01-14")
    run = run_tap(config, catalog=select(config, {"ads_insights"}))
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, run.stderr[-3000:]
    named = r"ads_insights account 1002 2025-01-\d\d\.\.2025-01-\d\d \(report run \d+\): "
    assert re.search(named + r"Meta sent a bad value for spend \('n/a' is not a number\) on 2025-01-\d\d$", errors[0])
    assert "Traceback" not in run.stderr
    records = exact_records(run.stdout, "ads_insights")
    assert {r["account_id"] for r in records} == {"1001"}
    expected = truth(sandbox, "1001", "2025-01-01", "2025-01-14")
    assert len(records) == len(expected) > 0
    states = [m["value"] for m in map(json.loads, run.stdout.splitlines()) if m["type"] == "STATE"]
    partitions = states[-1]["bookmarks"]["ads_insights"]["partitions"]
    done = {p["context"]["account_id"]: p.get("replication_key_value") for p in partitions}
    assert done["1001"] == "2025-01-14"
