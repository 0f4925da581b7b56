"""Every (stream, account) chain at once (``chains.py``): output exactly as a sequential run writes it.

What must hold with the chains of every stream overlapping: exact records and no duplicates, SCHEMA before a
stream's records and streams written one after another, every STATE covering only records written, kill -9
and resume, paced budgets with zero throttles, report runs of every account in flight together.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tap_meta_ads.tap import DEFAULT_EFFECTIVE_STATUSES
from tests.insights_helpers import exact_records, insights_config, select
from tests.insights_helpers import truth as insights_truth
from tests.tap_harness import TOKEN, base_config, duplicates, run_and_kill, run_tap, seeded

ACCOUNTS = {"4001": 400, "4002": 250, "4003": 300, "4004": 150}
STREAMS = ["ads", "adsets", "campaigns", "adaccounts"]
STATUSED = ("ads", "adsets", "campaigns")


def truth(sandbox: Any, accounts: dict[str, int] = ACCOUNTS) -> dict[str, list[str]]:
    out = {s: sorted(o["id"] for a in accounts for o in sandbox.visible(s, a, list(DEFAULT_EFFECTIVE_STATUSES)))
           for s in STATUSED}  # fmt: skip
    out["adaccounts"] = sorted(f"act_{a}" for a in accounts)
    return out


def test_chains_of_every_stream_overlap_while_streams_are_written_in_order(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS, latency_seconds=0.02)
    run = run_tap(base_config(sandbox.url, list(ACCOUNTS), page_size=25), streams=STREAMS)
    assert run.returncode == 0, run.stderr[-3000:]
    expected = truth(sandbox)
    for stream in STREAMS:
        assert sorted(run.ids(stream)) == expected[stream], stream
        assert duplicates(run.ids(stream)) == {}
    # streams are written one after another, each after its SCHEMA, accounts in order within a stream
    kinds = [(m["type"], m.get("stream")) for m in map(json.loads, run.stdout.splitlines()) if m["type"] != "STATE"]
    blocks = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
    record_blocks = [s for t, s in blocks if t == "RECORD"]
    assert sorted(record_blocks) == sorted(STREAMS)  # one block per stream, in the SDK's stream order
    assert all(blocks[blocks.index(("RECORD", s)) - 1] == ("SCHEMA", s) for s in STREAMS)
    for stream in STREAMS:
        order = [r["record"]["account_id"] for r in run.records if r["stream"] == stream]
        assert [a for i, a in enumerate(order) if i == 0 or order[i - 1] != a] == list(ACCOUNTS)
    # ... while the calls of later streams were made before the first stream's last call
    log = [e["route"] for e in sandbox.stats()["log"]]
    last_ads = len(log) - 1 - log[::-1].index("ads")
    assert log.index("campaigns") < last_ads
    assert log.index("adsets") < last_ads
    assert log.index("node") < last_ads


def test_every_state_covers_exactly_what_was_written_with_chains_overlapping(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS)
    config = base_config(sandbox.url, list(ACCOUNTS), page_size=20, checkpoint_every_pages=2)
    run = run_tap(config, streams=["ads", "adsets"])
    assert run.returncode == 0, run.stderr[-3000:]
    written: dict[tuple[str, str], int] = {}
    checked = 0
    for message in map(json.loads, run.stdout.splitlines()):
        if message["type"] == "RECORD":
            key = (message["stream"], message["record"]["account_id"])
            written[key] = written.get(key, 0) + 1
        elif message["type"] == "STATE":
            for stream, bookmark in message["value"]["bookmarks"].items():
                for partition in bookmark.get("partitions", []):
                    resume = partition.get("resume")
                    if resume and resume.get("after"):
                        assert written.get((stream, partition["context"]["account_id"]), 0) == resume["pages"] * 20
                        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("seed", [11, 12])
def test_kill_minus_nine_and_resume_with_chains_overlapping(make_sandbox, seed):
    sandbox = make_sandbox(accounts=ACCOUNTS)
    config = base_config(sandbox.url, list(ACCOUNTS), page_size=25, checkpoint_every_pages=2)
    rng = seeded(seed)
    state = None
    seen: dict[str, list[str]] = {s: [] for s in STREAMS}
    kills = 0
    for _ in range(30):
        run = run_and_kill(config, state=state, kill_after_lines=rng.randint(20, 200), streams=STREAMS)
        for stream in STREAMS:
            seen[stream] += run.ids(stream)
        if run.states:
            state = run.last_state
        if run.returncode == 0:
            break
        kills += 1
    else:
        raise AssertionError("the tap did not finish")
    assert kills >= 2
    expected = truth(sandbox)
    for stream in STREAMS:
        assert sorted(set(seen[stream])) == expected[stream], stream  # nothing lost
    # a resumed chain re-reads at most the pages after its last STATE: duplicates stay few
    assert len(seen["ads"]) - len(expected["ads"]) <= kills * len(ACCOUNTS) * 2 * 25 * 2


def test_an_accounts_budget_is_shared_by_its_chains_and_paced_with_zero_throttles(make_sandbox):
    # each account may make 8 calls in any 2 s, over all of its streams together
    accounts = {"4101": 150, "4102": 150}
    sandbox = make_sandbox(accounts=accounts, rate_window_seconds=2.0, account_budget=8, app_budget=100000)
    config = base_config(
        sandbox.url, list(accounts), page_size=25, throttle_threshold_pct=50, backoff_max_seconds=5
    )  # fmt: skip
    run = run_tap(config, streams=["ads", "adsets", "campaigns"])
    assert run.returncode == 0, run.stderr[-3000:]
    assert sandbox.stats()["throttled"] == 0
    assert run.summary()["pacing_wait_seconds"] > 0
    expected = truth(sandbox, accounts)
    for stream in ("ads", "adsets", "campaigns"):
        assert sorted(run.ids(stream)) == expected[stream]


def test_report_runs_of_every_account_are_in_flight_together(make_sandbox):
    accounts = {str(4201 + i): 6 for i in range(4)}
    sandbox = make_sandbox(accounts=accounts)
    sandbox.configure_insights(seconds_to_complete=0.5, polls_to_complete=1)
    config = insights_config(sandbox.url, list(accounts), "2026-03-01", "2026-03-07", insights_jobs_in_flight=1)
    run = run_tap(config, catalog=select(config, {"ads_insights"}))
    assert run.returncode == 0, run.stderr[-3000:]
    assert {r["record"]["account_id"] for r in run.records} == set(accounts)
    log = [(e["route"], e["account_id"]) for e in sandbox.stats()["log"]]
    submitted = [a for r, a in log if r == "insights_submit"]
    assert sorted(submitted) == sorted(accounts)  # one report run each
    first_rows = next(i for i, (r, _) in enumerate(log) if r == "report_run_insights")
    # every account's report run was submitted before the first account's rows were read
    assert all(i < first_rows for i, (r, _) in enumerate(log) if r == "insights_submit")


BATCHED = {str(4301 + i): 5 for i in range(6)}


def batched_run(make_sandbox: Any, faults: list[str], **overrides: Any) -> tuple[Any, Any]:
    """Insights of six accounts, one report run each, every run done after its fourth poll."""
    from tap_meta_ads_sandbox import FaultPlan

    sandbox = make_sandbox(accounts=BATCHED, faults=FaultPlan(faults))
    sandbox.configure_insights(polls_to_complete=4)
    config = insights_config(
        sandbox.url, list(BATCHED), "2026-03-01", "2026-03-07", insights_poll_interval_seconds=0.05, **overrides
    )
    run = run_tap(config, catalog=select(config, {"ads_insights"}))
    return sandbox, run


def assert_exact_insights(sandbox: Any, run: Any) -> None:
    """Every account's rows exactly as the sandbox has them, once each."""
    assert run.returncode == 0, run.stderr[-3000:]
    records = exact_records(run.stdout, "ads_insights")
    keys = [(r["date_start"], r["account_id"], r["ad_id"]) for r in records]
    assert len(keys) == len(set(keys))
    expected = [r for a in BATCHED for r in insights_truth(sandbox, a, "2026-03-01", "2026-03-07")]
    assert len(expected) > 0
    key = "date_start", "account_id", "ad_id"
    assert {tuple(r[k] for k in key): r for r in records} == {tuple(r[k] for k in key): r for r in expected}


def split_at_batch_calls(log: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The log after each batch call, up to the next one."""
    starts = [i for i, e in enumerate(log) if e["route"] == "batch"]
    return [log[a + 1 : b] for a, b in zip(starts, [*starts[1:], len(log)], strict=True)]


def polls(sandbox: Any, account: str | None = None) -> list[dict[str, Any]]:
    return [
        e for e in sandbox.stats()["log"] if e["route"] == "report_run" and account in (None, e["account_id"])
    ]  # fmt: skip


def test_report_runs_of_every_account_are_polled_together_in_batch_calls(make_sandbox):
    sandbox, run = batched_run(make_sandbox, [])
    assert_exact_insights(sandbox, run)
    log = sandbox.stats()["log"]
    assert all(e["batched"] for e in polls(sandbox))  # no run was polled alone
    assert len(polls(sandbox)) == 4 * len(BATCHED)  # four polls each: every one answered
    # the six accounts' runs are due together: batch calls poll several runs each (4 calls of 6 when unloaded)
    # (one poller: batch calls never overlap, so a call's entries are the batched ones before the next call)
    sizes = [sum(1 for e in part if e["batched"]) for part in split_at_batch_calls(log)]
    assert len(sizes) <= 2 * len(BATCHED)
    assert max(sizes) >= 3
    assert sandbox.stats()["batched"] == 4 * len(BATCHED)


def test_a_batched_poll_that_errors_is_polled_again_alone(make_sandbox):
    # 4303's calls: token check, submit, four polls (the 4th call is its 2nd poll), rows
    sandbox, run = batched_run(make_sandbox, ["act_4303:transient@4", "act_4305:http503@3"])
    assert_exact_insights(sandbox, run)
    for account, faulted in (("4303", "fault:transient"), ("4305", "fault:http503")):
        seen = [(e["batched"], e["outcome"]) for e in polls(sandbox, account)]
        at = seen.index((True, faulted))
        assert seen[at + 1] == (False, "ok")  # its runner asked Meta again itself, at once
        assert all(batched for batched, _ in seen[at + 2 :])  # ... and the poller polls it from then on
    assert all(e["batched"] for a in ("4301", "4302", "4304", "4306") for e in polls(sandbox, a))


def test_batch_calls_that_keep_failing_leave_each_run_polled_alone(make_sandbox):
    # A Meta that refuses batches: three batch calls are tried, then every run is polled alone; rows exact.
    sandbox, run = batched_run(make_sandbox, ["batch:param@after:0"])
    assert_exact_insights(sandbox, run)
    assert [e["route"] for e in sandbox.stats()["log"]].count("batch") == 3
    assert len([e for e in polls(sandbox) if not e["batched"]]) == 4 * len(BATCHED)
    warnings = [line for line in run.stderr.splitlines() if "in one batch call failed" in line]
    assert len(warnings) == 3
    assert "(#100) Invalid parameter" in warnings[0]
    assert "for the rest of the run (3 batch calls failed in a row)" in warnings[-1]
    assert TOKEN not in run.stderr


def test_report_runs_are_submitted_in_the_writers_order_under_a_small_cap(make_sandbox):
    # 2 places for 5 accounts of 2 runs each: the places go to the accounts the writer reaches first
    accounts = {str(4401 + i): 4 for i in range(5)}
    sandbox = make_sandbox(accounts=accounts)
    sandbox.configure_insights(seconds_to_complete=0.2, polls_to_complete=1)
    config = insights_config(
        sandbox.url, list(accounts), "2026-03-01", "2026-03-14", insights_jobs_in_flight=2,
        insights_jobs_in_flight_total=2,
    )  # fmt: skip
    run = run_tap(config, catalog=select(config, {"ads_insights"}))
    assert run.returncode == 0, run.stderr[-3000:]
    submitted = [e["account_id"] for e in sandbox.stats()["log"] if e["route"] == "insights_submit"]
    assert submitted == sorted(submitted)
    assert sorted(set(submitted)) == sorted(accounts)
    assert {r["record"]["account_id"] for r in run.records} == set(accounts)


def test_an_accounts_report_runs_go_at_once_after_its_first_is_accepted(make_sandbox):
    """The first report run of an account goes alone (a request Meta refuses is sent once); the others at once.

    One after another, each submit waits for Meta's answer to the one before it (0.2-2 s each).
    """
    latency = 1.0
    sandbox = make_sandbox(accounts={"4501": 6}, latency_seconds=latency)
    sandbox.configure_insights(seconds_to_complete=0, polls_to_complete=1)
    config = insights_config(
        sandbox.url, ["4501"], "2026-03-01", "2026-03-05", insights_window_days=1, insights_jobs_in_flight=5
    )
    run = run_tap(config, catalog=select(config, {"ads_insights"}))
    assert run.returncode == 0, run.stderr[-3000:]
    times = sorted(e["t"] for e in sandbox.stats()["log"] if e["route"] == "insights_submit")
    assert len(times) == 5  # a run a day
    assert times[1] - times[0] >= latency  # the second waited for the first's answer
    assert times[-1] - times[1] < latency  # the other four went before any of them was answered
    records = exact_records(run.stdout, "ads_insights")
    expected = insights_truth(sandbox, "4501", "2026-03-01", "2026-03-05")
    key = "date_start", "account_id", "ad_id"
    assert len(expected) > 0
    assert sorted(tuple(r[k] for k in key) for r in records) == sorted(tuple(r[k] for k in key) for r in expected)
