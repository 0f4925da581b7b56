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
from tests.insights_helpers import insights_config, select
from tests.tap_harness import base_config, duplicates, run_and_kill, run_tap, seeded

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
