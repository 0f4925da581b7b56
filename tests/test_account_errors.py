"""One bad ad account fails alone (``errors.ACCOUNT_SCOPED``); a token error still stops the run at once.

The sandbox denies one account with Meta's own answers (``act_ID:KIND@after:0``: every call to that account);
every other account's records must be exact and its state saved, the bad account named in one ERROR line.
"""

from __future__ import annotations

import pytest
from tap_meta_ads_sandbox import FaultPlan

from tap_meta_ads.tap import DEFAULT_EFFECTIVE_STATUSES
from tests.tap_harness import base_config, duplicates, run_tap

ACCOUNTS = {"1001": 300, "1002": 200, "1003": 250}
STREAMS = ["ads", "campaigns", "adaccounts"]


def expected_ads(sandbox, accounts):
    return sorted(ad["id"] for a in accounts for ad in sandbox.visible_ads(a, list(DEFAULT_EFFECTIVE_STATUSES)))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "| ERROR" in line]


def partition_states(state: dict, stream: str) -> dict[str, dict]:
    return {p["context"]["account_id"]: p for p in state["bookmarks"][stream].get("partitions", [])}


@pytest.mark.parametrize(
    ("bad", "kind", "reason"),
    [
        ("1002", "permission", "a permission is missing on this ad account (200"),
        ("1001", "unknown_object", "the ad account does not exist or this token cannot read it (100/33"),
        ("1003", "blocked", "the ad account is blocked or disabled by Meta (368/1404078"),
    ],
)
def test_an_account_that_denies_access_fails_alone(make_sandbox, bad, kind, reason):
    sandbox = make_sandbox(accounts=ACCOUNTS, faults=FaultPlan([f"act_{bad}:{kind}@after:0"]))
    run = run_tap(base_config(sandbox.url, list(ACCOUNTS), page_size=50), streams=STREAMS)
    good = [a for a in ACCOUNTS if a != bad]
    assert run.returncode == 1  # on_account_error: fail (the default)
    (error,) = error_lines(run.stderr)
    assert f"Ad account act_{bad} failed" in error
    assert reason in error
    assert "sandbox-token" not in run.stderr
    # every other account and stream: exact records, no duplicates, state saved
    assert sorted(run.ids("ads")) == expected_ads(sandbox, good)
    assert duplicates(run.ids("ads")) == {}
    assert sorted(r["record"]["account_id"] for r in run.records if r["stream"] == "adaccounts") == good
    campaigns = {r["record"]["account_id"] for r in run.records if r["stream"] == "campaigns"}
    assert campaigns == set(good)
    state = run.last_state
    assert state is not None
    for stream in ("ads", "campaigns"):
        partitions = partition_states(state, stream)
        for account in good:
            assert partitions[account].get("replication_key_value"), (stream, account)
            assert "resume" not in partitions[account]
        assert not partitions.get(bad, {}).get("replication_key_value")
    # each chain of the bad account stopped at its first answer; chains that had not started were not read
    bad_calls = sandbox.stats()["by_account"][bad]
    assert 1 <= bad_calls <= len(STREAMS)
    summary = run.summary()
    assert summary["status"] == "failed"
    assert [(f["account_id"], reason in f["reason"]) for f in summary["failed_accounts"]] == [(bad, True)]


def test_skip_exits_zero_with_the_same_lines(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS, faults=FaultPlan(["act_1002:permission@after:0"]))
    config = base_config(sandbox.url, list(ACCOUNTS), page_size=50, on_account_error="skip")
    run = run_tap(config, streams=["ads"])
    assert run.returncode == 0, run.stderr[-3000:]
    (error,) = error_lines(run.stderr)
    assert "Ad account act_1002 failed in ads" in error
    assert sorted(run.ids()) == expected_ads(sandbox, ["1001", "1003"])
    summary = run.summary()
    assert summary["status"] == "succeeded_with_failed_accounts"
    assert [f["account_id"] for f in summary["failed_accounts"]] == ["1002"]


def test_an_account_that_fails_after_some_pages_keeps_them_and_resumes_there(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS, faults=FaultPlan(["act_1001:permission@after:3"]))
    config = base_config(sandbox.url, list(ACCOUNTS), page_size=50, checkpoint_every_pages=1)
    run = run_tap(config, streams=["ads"])
    assert run.returncode == 1
    written_1001 = [r["record"]["id"] for r in run.records if r["record"]["account_id"] == "1001"]
    assert len(written_1001) == 150  # three pages, written before the denial
    assert partition_states(run.last_state, "ads")["1001"]["resume"]["pages"] == 3
    assert sorted(set(run.ids()) - set(written_1001)) == expected_ads(sandbox, ["1002", "1003"])
    sandbox.set_faults(FaultPlan())
    rerun = run_tap(config, state=run.last_state, streams=["ads"])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    rest = [r["record"]["id"] for r in rerun.records if r["record"]["account_id"] == "1001"]
    assert sorted(written_1001 + rest) == expected_ads(sandbox, ["1001"])
    assert duplicates(written_1001 + rest) == {}


def test_a_token_error_still_stops_the_run_at_once(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS, faults=FaultPlan(["token_expired@after:0"]))
    run = run_tap(base_config(sandbox.url, list(ACCOUNTS), page_size=50), streams=STREAMS)
    assert run.returncode == 1
    (error,) = error_lines(run.stderr)
    assert "The access token is invalid or expired" in error
    assert run.records == []
    assert sandbox.stats()["requests"] == 1  # the first account's first call: nobody else starts
    assert "failed_accounts" not in error


def test_an_account_that_denies_insights_fails_alone(make_sandbox):
    from tests.insights_helpers import insights_config, select, truth

    accounts = {"1001": 12, "1002": 12}
    sandbox = make_sandbox(accounts=accounts, faults=FaultPlan(["act_1001:permission@after:0"]))
    config = insights_config(sandbox.url, list(accounts), "2026-03-01", "2026-03-10")
    run = run_tap(config, catalog=select(config, {"ads_insights"}))
    assert run.returncode == 1
    (error,) = error_lines(run.stderr)
    assert "Ad account act_1001 failed in ads_insights" in error
    rows = [r["record"] for r in run.records if r["stream"] == "ads_insights"]
    assert {r["account_id"] for r in rows} == {"1002"}
    expected = truth(sandbox, "1002", "2026-03-01", "2026-03-10")
    assert sorted((r["date_start"], r["ad_id"]) for r in rows) == sorted(
        (r["date_start"], r["ad_id"]) for r in expected
    )
    assert partition_states(run.last_state, "ads_insights")["1002"]["replication_key_value"] == "2026-03-10"
