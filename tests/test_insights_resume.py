"""Insights survive kill -9 at any point: resumed from the last STATE, the union is the truth, re-reads are bounded."""

from __future__ import annotations

import datetime
from typing import Any

from tests.insights_helpers import day, exact_records, insights_config, select, truth
from tests.tap_harness import run_streaming, run_tap, seeded

IN_FLIGHT, WINDOW_DAYS = 3, 7


def progress_of(state: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Each account's partition state of ads_insights."""
    if not state:
        return {}
    partitions = state.get("bookmarks", {}).get("ads_insights", {}).get("partitions", [])
    return {p["context"]["account_id"]: p for p in partitions}


def first_unread_day(partition: dict[str, Any] | None, since: datetime.date) -> datetime.date:
    """Where a resumed run must start for an account: after its contiguous completed days."""
    if not partition:
        return since
    progress = partition.get("insights_progress")
    if progress:
        done = progress.get("done_through")
        return day(done) + datetime.timedelta(days=1) if done else day(progress["since"])
    return day(partition["replication_key_value"]) + datetime.timedelta(days=1)  # complete (lookback 0)


def test_kill_9_at_random_points_then_resume_from_the_last_state_until_done(make_sandbox):
    sb = make_sandbox(accounts={"1001": 24, "1002": 12})
    since, until = "2025-01-01", "2025-03-31"
    config = insights_config(
        sb.url,
        ["1001", "1002"],
        since,
        until,
        insights_jobs_in_flight=IN_FLIGHT,
        insights_window_days=WINDOW_DAYS,
        insights_lookback_days=0,
    )
    catalog = select(config, {"ads_insights"})
    rng = seeded(2024)
    state: dict[str, Any] | None = None
    union: dict[tuple, dict[str, Any]] = {}
    kills = 0
    for attempt in range(12):
        kill_after = rng.randint(5, 400) if attempt < 10 else 10**9
        seen = 0

        def kill_now(_message: dict[str, Any], _run: Any, limit: int = kill_after) -> bool:
            nonlocal seen
            seen += 1
            return seen >= limit

        run = run_streaming(config, state=state, on_message=kill_now, streams=["ads_insights"])
        records = exact_records(run.stdout, "ads_insights")
        starts = {a: first_unread_day(p, day(since)) for a, p in progress_of(state).items()}
        for record in records:
            key = (record["date_start"], record["account_id"], record["ad_id"])
            first = starts.get(record["account_id"], day(since))
            # nothing before the first unread day is read again ...
            assert day(record["date_start"]) >= first, (attempt, key, first)
            if key in union:
                # ... and what is read again lies in the windows that were in flight
                assert day(record["date_start"]) < first + datetime.timedelta(days=IN_FLIGHT * WINDOW_DAYS), key
                assert union[key] == record
            union[key] = record
        if run.states:
            state = run.states[-1]
        if run.returncode == 0:
            break
        assert run.returncode == -9, run.stderr[-2000:]
        kills += 1
    else:
        raise AssertionError("the tap did not finish")
    assert kills >= 3
    expected = {
        (r["date_start"], r["account_id"], r["ad_id"]): r
        for account in ("1001", "1002")
        for r in truth(sb, account, since, until)
    }
    assert union == expected
    # a run after the end re-reads nothing (lookback 0) and sends no report run
    before = len(sb.insights_runs())
    again = run_tap(config, catalog=catalog, state=state)
    assert again.returncode == 0 and exact_records(again.stdout, "ads_insights") == []
    assert len(sb.insights_runs()) == before
