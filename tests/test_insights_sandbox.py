"""The sandbox's insights: report runs as Meta runs them, faults on demand, truth that adds up."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from tap_meta_ads_sandbox import SandboxConfig, SandboxServer

VERSION = "v25.0"
RANGE = {"since": "2025-03-01", "until": "2025-03-14"}


@pytest.fixture
def sb() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(seed=3, accounts={"1001": 60, "1002": 20})) as server:
        yield server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = "Bearer sandbox-token"
        yield session


def submit(http: requests.Session, sb: SandboxServer, account: str = "1001", **params: Any) -> requests.Response:
    form = {"level": "ad", "fields": "ad_id,impressions,spend", "time_increment": "1", "time_range": json.dumps(RANGE)}
    form.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()})
    return http.post(f"{sb.url}/{VERSION}/act_{account}/insights", data=form, timeout=10)


def truth(sb: SandboxServer, account: str = "1001", **params: Any) -> list[dict]:
    """The sandbox's rows for a daily report over RANGE (Meta's default period is all_days)."""
    return sb.insights_truth(account, **{"level": "ad", "time_increment": "1", "time_range": RANGE, **params})


def poll_until_done(http: requests.Session, sb: SandboxServer, run_id: str, max_polls: int = 20) -> list[dict]:
    seen = []
    for _ in range(max_polls):
        doc = http.get(f"{sb.url}/{VERSION}/{run_id}", timeout=10).json()
        seen.append(doc)
        if not doc["is_running"]:
            return seen
    return seen


def all_rows(http: requests.Session, sb: SandboxServer, run_id: str, limit: int = 7) -> list[dict]:
    rows: list[dict] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        resp = http.get(f"{sb.url}/{VERSION}/{run_id}/insights", params=params, timeout=10)
        assert resp.status_code == 200, resp.text
        doc = resp.json()
        rows += doc["data"]
        if "next" not in doc.get("paging", {}):
            return rows
        params["after"] = doc["paging"]["cursors"]["after"]


def test_a_report_run_progresses_over_polls_then_pages_exactly_the_truth(sb, http):
    resp = submit(http, sb, fields="ad_id,impressions,spend,actions,ctr,quality_ranking")
    assert resp.status_code == 200, resp.text
    assert "acc_id_util_pct" in json.loads(resp.headers["x-fb-ads-insights-throttle"])
    run_id = resp.json()["report_run_id"]
    statuses = poll_until_done(http, sb, run_id)
    assert [s["async_status"] for s in statuses] == ["Job Running", "Job Completed"]
    assert [s["async_percent_completion"] for s in statuses] == [50, 100]

    rows = all_rows(http, sb, run_id)
    assert rows == truth(sb, fields="ad_id,impressions,spend,actions,ctr,quality_ranking")
    assert len(rows) > 100
    # both ends of time_range are inclusive; one row per (day, ad); metrics are strings as on Meta
    assert {r["date_start"] for r in rows} == {f"2025-03-{d:02d}" for d in range(1, 15)}
    assert Counter((r["date_start"], r["ad_id"]) for r in rows).most_common(1)[0][1] == 1
    assert all(r["date_start"] == r["date_stop"] for r in rows)
    assert all(isinstance(r["impressions"], str) and isinstance(r["spend"], str) for r in rows)
    assert all(isinstance(a["value"], str) for r in rows for a in r.get("actions", []))


def test_results_before_completion_are_refused(sb, http):
    run_id = submit(http, sb).json()["report_run_id"]
    resp = http.get(f"{sb.url}/{VERSION}/{run_id}/insights", timeout=10)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == 100


@pytest.mark.parametrize(
    ("fate", "final_status", "results_code"),
    [("failed", "Job Failed", 100), ("skipped", "Job Skipped", 100), ("stuck", "Job Running", 100)],
)
def test_faults_on_report_runs(sb, http, fate, final_status, results_code):
    sb.configure_insights(fates=[{"fate": fate, "count": 1, "account_id": "1001"}])
    other = submit(http, sb, account="1002").json()["report_run_id"]  # the fate is for account 1001 only
    run_id = submit(http, sb).json()["report_run_id"]
    statuses = poll_until_done(http, sb, run_id, max_polls=6)
    assert statuses[-1]["async_status"] == final_status
    if fate == "stuck":
        assert {s["async_percent_completion"] for s in statuses[1:]} == {42}
    if fate == "failed":
        assert statuses[-1]["error_code"] == 1
    assert http.get(f"{sb.url}/{VERSION}/{run_id}/insights", timeout=10).json()["error"]["code"] == results_code
    assert poll_until_done(http, sb, other)[-1]["async_status"] == "Job Completed"
    # the next run of the account is healthy again
    again = submit(http, sb).json()["report_run_id"]
    assert poll_until_done(http, sb, again)[-1]["async_status"] == "Job Completed"


def test_a_run_that_loses_its_results_answers_2601(sb, http):
    sb.configure_insights(fates=[{"fate": "error"}])
    run_id = submit(http, sb).json()["report_run_id"]
    assert poll_until_done(http, sb, run_id)[-1]["async_status"] == "Job Completed"
    resp = http.get(f"{sb.url}/{VERSION}/{run_id}/insights", timeout=10)
    assert resp.json()["error"]["code"] == 2601


def test_a_job_over_the_size_limit_always_fails_and_its_parts_add_up(sb, http):
    whole = truth(sb, fields="ad_id,impressions")
    sb.configure_insights(max_rows_per_job=len(whole) * 2 // 3)
    for _ in range(2):  # always, not once
        run_id = submit(http, sb, fields="ad_id,impressions").json()["report_run_id"]
        last = poll_until_done(http, sb, run_id)[-1]
        assert last["async_status"] == "Job Failed"
        assert (last["error_code"], last["error_subcode"]) == (100, 1487534)
    # the same rows, in two halves by campaign id (filtering), each small enough
    campaigns = sorted({r["campaign_id"] for r in truth(sb, fields="campaign_id")})
    assert len(campaigns) == 2
    parts: list[dict] = []
    for ids in ([campaigns[0]], [campaigns[1]]):
        rule = [{"field": "campaign.id", "operator": "IN", "value": ids}]
        run_id = submit(http, sb, fields="ad_id,impressions", filtering=rule).json()["report_run_id"]
        assert poll_until_done(http, sb, run_id)[-1]["async_status"] == "Job Completed"
        parts += all_rows(http, sb, run_id, limit=100)
    key = lambda r: (r["date_start"], r["ad_id"])  # noqa: E731
    assert sorted(parts, key=key) == sorted(whole, key=key)


def test_levels_and_periods_sum_the_ad_days_exactly(sb):
    fields = "ad_id,adset_id,campaign_id,impressions,clicks,spend"
    ads = truth(sb, fields=fields)
    adsets = truth(sb, level="adset", fields=fields)
    weekly = truth(sb, level="campaign", fields=fields, time_increment="7")
    assert all("ad_id" not in r for r in adsets) and all("adset_id" not in r for r in weekly)
    by_adset: Counter[tuple[str, str]] = Counter()
    spend: dict[tuple[str, str], Decimal] = {}
    for r in ads:
        k = (r["date_start"], r["adset_id"])
        by_adset[k] += int(r["impressions"])
        spend[k] = spend.get(k, Decimal(0)) + Decimal(r["spend"])
    assert {(r["date_start"], r["adset_id"]): int(r["impressions"]) for r in adsets} == dict(by_adset)
    assert {(r["date_start"], r["adset_id"]): Decimal(r["spend"]) for r in adsets} == spend
    assert {(r["date_start"], r["date_stop"]) for r in weekly} == {
        ("2025-03-01", "2025-03-07"),
        ("2025-03-08", "2025-03-14"),
    }
    assert sum(int(r["clicks"]) for r in weekly) == sum(int(r["clicks"]) for r in ads)


def test_breakdowns_give_one_row_per_value_and_refused_combinations_are_code_100(sb, http):
    rows = truth(sb, "1002", fields="ad_id,impressions", breakdowns="country")
    assert Counter((r["date_start"], r["ad_id"], r["country"]) for r in rows).most_common(1)[0][1] == 1
    assert len({r["country"] for r in rows}) > 3
    for breakdowns in ("age,country", "platform_position", "country,region"):
        resp = submit(http, sb, breakdowns=breakdowns)
        assert resp.status_code == 400
        assert "Current combination of data breakdown columns" in resp.json()["error"]["message"]
    assert submit(http, sb, breakdowns="publisher_platform,platform_position").status_code == 200
    assert submit(http, sb, breakdowns="age,gender").status_code == 200


def test_history_beyond_37_months_is_3018_and_unknown_fields_are_100(sb, http):
    resp = submit(http, sb, time_range={"since": "2020-01-01", "until": "2020-01-02"})
    assert resp.json()["error"]["code"] == 3018
    assert submit(http, sb, fields="ad_id,nonsense").json()["error"]["code"] == 100


def test_the_insights_throttle_header_and_error_80000(sb, http):
    sb.configure_insights(budget=4)
    pcts = []
    for _ in range(4):
        resp = submit(http, sb)
        pcts.append(json.loads(resp.headers["x-fb-ads-insights-throttle"])["acc_id_util_pct"])
    assert pcts == [25.0, 50.0, 75.0, 100.0]
    resp = submit(http, sb)
    error = resp.json()["error"]
    assert (error["code"], error["error_subcode"]) == (80000, 2446079)
    usage = json.loads(resp.headers["x-business-use-case-usage"])
    assert usage["1001"][0]["type"] == "ads_insights"
    assert usage["1001"][0]["estimated_time_to_regain_access"] >= 1


def test_control_endpoint_and_sync_insights(sb, http):
    resp = http.post(f"{sb.url}/_sandbox/insights", json={"polls_to_complete": 1, "bogus": 1}, timeout=10)
    assert resp.status_code == 400 and "bogus" in resp.json()["error"]
    resp = http.post(f"{sb.url}/_sandbox/insights", json={"polls_to_complete": 1}, timeout=10)
    assert resp.json()["polls_to_complete"] == 1
    run_id = submit(http, sb).json()["report_run_id"]
    assert poll_until_done(http, sb, run_id)[0]["async_status"] == "Job Completed"
    assert http.get(f"{sb.url}/_sandbox/insights", timeout=10).json()["runs"][0]["id"] == run_id
    # the synchronous edge (used to list the campaigns that delivered) serves the same rows
    params = {"level": "campaign", "fields": "campaign_id", "time_range": json.dumps(RANGE), "limit": 500}
    sync = http.get(f"{sb.url}/{VERSION}/act_1001/insights", params=params, timeout=10).json()["data"]
    assert sync == truth(sb, level="campaign", fields="campaign_id", time_increment="all_days")
    served = http.get(
        f"{sb.url}/_sandbox/truth/act_1001/insights",
        params={"fields": "ad_id", "time_range": json.dumps(RANGE), "time_increment": "1"},
        timeout=10,
    ).json()["data"]
    assert served == truth(sb, fields="ad_id")
