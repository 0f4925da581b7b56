"""Rate limits: truthful usage headers, throttling at the budget with the configured code, regain hints."""

from __future__ import annotations

import json

import pytest
import requests

from .conftest import ads_url, error_of


def _usage(resp: requests.Response, account: str = "1001") -> tuple[dict, dict, dict]:
    buc = json.loads(resp.headers["x-business-use-case-usage"])[account][0]
    return buc, json.loads(resp.headers["x-ad-account-usage"]), json.loads(resp.headers["x-app-usage"])


def test_usage_headers_parse_and_rise_with_use(make_sandbox, client):
    sb = make_sandbox(account_budget=10, app_budget=20)
    seen = []
    for _ in range(3):
        buc, acct, app = _usage(client.get(ads_url(sb), timeout=10))
        seen.append((buc["call_count"], acct["acc_id_util_pct"], app["call_count"]))
        assert buc["type"] == "ads_management"
        assert buc["estimated_time_to_regain_access"] == 0
        assert buc["ads_api_access_tier"] == "standard_access"
        assert acct["reset_time_duration"] > 0
    assert seen == [(10, 10, 5), (20, 20, 10), (30, 30, 15)]
    buc, _, app = _usage(client.get(ads_url(sb, "1002"), timeout=10), "1002")
    assert buc["call_count"] == 10  # per account
    assert app["call_count"] == 20  # per app


@pytest.mark.parametrize(
    ("throttle_code", "code", "subcode"),
    [("17/2446079", 17, 2446079), ("80004/2446079", 80004, 2446079), ("4", 4, None), ("613", 613, None)],
)
def test_throttled_at_budget_with_configured_code_and_hints(make_sandbox, client, throttle_code, code, subcode):
    sb = make_sandbox(account_budget=3, throttle_code=throttle_code)
    for _ in range(3):
        assert client.get(ads_url(sb), timeout=10).status_code == 200
    resp = client.get(ads_url(sb), timeout=10)
    assert resp.status_code == 400
    err = error_of(resp)
    assert err["code"] == code
    assert err.get("error_subcode") == subcode
    assert err["is_transient"] is True
    buc, acct, _ = _usage(resp)
    assert buc["call_count"] == 100
    assert buc["estimated_time_to_regain_access"] == 60  # minutes, the whole hour window
    assert 3590 <= acct["reset_time_duration"] <= 3600
    # throttled calls do not consume budget, other accounts are not affected
    assert client.get(ads_url(sb), timeout=10).status_code == 400
    assert _usage(client.get(ads_url(sb), timeout=10))[0]["call_count"] == 100
    assert client.get(ads_url(sb, "1002"), timeout=10).status_code == 200
    stats = sb.stats()
    assert stats["throttled"] == 3
    assert stats["by_outcome"] == {"ok": 4, "throttled": 3}
    sb.advance_clock(acct["reset_time_duration"])
    assert client.get(ads_url(sb), timeout=10).status_code == 200


def test_small_window_regain_hint_in_seconds_is_exact(make_sandbox, client):
    sb = make_sandbox(account_budget=2, rate_window_seconds=30)
    client.get(ads_url(sb), timeout=10)
    sb.advance_clock(10)
    client.get(ads_url(sb), timeout=10)
    resp = client.get(ads_url(sb), timeout=10)
    buc, acct, _ = _usage(resp)
    assert resp.status_code == 400
    assert buc["estimated_time_to_regain_access"] == 1  # minutes, rounded up
    assert 19 <= acct["reset_time_duration"] <= 20
    sb.advance_clock(acct["reset_time_duration"] - 2)
    assert client.get(ads_url(sb), timeout=10).status_code == 400
    sb.advance_clock(2)
    assert client.get(ads_url(sb), timeout=10).status_code == 200


def test_headers_withheld_except_on_throttled_answers(make_sandbox, client):
    sb = make_sandbox(account_budget=1, usage_headers=False)
    ok = client.get(ads_url(sb), timeout=10)
    assert ok.status_code == 200
    assert not {"x-business-use-case-usage", "x-ad-account-usage", "x-app-usage"} & {h.lower() for h in ok.headers}
    throttled = client.get(ads_url(sb), timeout=10)
    assert throttled.status_code == 400
    buc = json.loads(throttled.headers["x-business-use-case-usage"])["1001"][0]
    acct = json.loads(throttled.headers["x-ad-account-usage"])
    assert buc["estimated_time_to_regain_access"] == 60
    assert acct["reset_time_duration"] > 3500
    assert "x-app-usage" not in throttled.headers


def test_app_budget_throttles_every_account_with_code_4(make_sandbox, client):
    sb = make_sandbox(app_budget=3)
    for account in ("1001", "1002", "1001"):
        assert client.get(ads_url(sb, account), timeout=10).status_code == 200
    resp = client.get(ads_url(sb, "1002"), timeout=10)
    assert resp.status_code == 400
    assert error_of(resp)["code"] == 4
    assert json.loads(resp.headers["x-app-usage"])["call_count"] == 100


def test_config_endpoint_changes_knobs_at_runtime(sandbox, client):
    resp = requests.post(
        f"{sandbox.url}/_sandbox/config", json={"account_budget": 2, "throttle_code": "613"}, timeout=10
    )
    assert resp.json()["account_budget"] == 2
    assert requests.get(f"{sandbox.url}/_sandbox/config", timeout=10).json()["throttle_code"] == "613"
    client.get(ads_url(sandbox), timeout=10)
    client.get(ads_url(sandbox), timeout=10)
    assert error_of(client.get(ads_url(sandbox), timeout=10))["code"] == 613
    sandbox.configure(account_budget=100)
    assert client.get(ads_url(sandbox), timeout=10).status_code == 200
