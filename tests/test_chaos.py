"""Issue 4: the chaos suite. Every fault the sandbox offers, rate limits, kill -9 and resume.

All runs are real tap processes against the sandbox over real HTTP. A clean run of the same
sandbox is the reference: a faulty run must produce the same set of records, with no loss and
no duplicates, and exit 0; a fatal fault must end the run fast, with one clear line, after
flushing what was already extracted.
"""

from __future__ import annotations

import json
import time

import pytest
from tap_meta_ads_sandbox import FaultPlan, SandboxConfig, SandboxServer

from tap_meta_ads.tap import DEFAULT_EFFECTIVE_STATUSES
from tests.tap_harness import ADS, base_config, duplicates, run_and_kill, run_tap, seeded

ACCOUNTS = {"1001": 900, "1002": 700}
ACCOUNT_IDS = ["act_1001", "1002"]
#: Waits capped low so that honoured hints (60 s on Meta) keep the suite fast; the cap is the feature under test.
CHAOS = {
    "page_size": 100,
    "backoff_base_seconds": 0.01,
    "backoff_max_seconds": 0.3,
    "max_retries": 8,
    "request_timeout_seconds": 1,
}

RECOVERABLE = [
    *[f"throttle:{c}" for c in ("4", "17", "17/2446079", "32", "613")],
    *[f"throttle:{c}" for c in range(80000, 80015)],
    "http429",
    "http500",
    "http502",
    "http503",
    "http504",
    "code1",
    "code2",
    "transient",
    "aborted",
    "reduce",
    "reset",
    "truncated",
    "slow",
    "expired_cursor",
]
FATAL = {
    "token_expired": "invalid or expired",
    "param": "100",
    "unknown_code": "99999",
    "deprecated_version": "2635",
}
#: Errors that concern one ad account (``errors.ACCOUNT_SCOPED``): that account ends, the others complete.
ACCOUNT_SCOPED = {
    "permission": "a permission is missing on this ad account (200",
    "blocked": "blocked or disabled by Meta (368",
    "unknown_object": "does not exist or this token cannot read it (100/33",
}


@pytest.fixture(scope="module")
def clean_ids():
    """What a clean run returns: every ad the sandbox shows under the tap's default statuses.

    (The chaos sandboxes share its seed and accounts; ``test_tap_sync`` shows a clean run equals it.)
    """
    with SandboxServer(SandboxConfig(seed=7, accounts=ACCOUNTS), port=0) as sandbox:
        ids = [ad["id"] for a in ACCOUNTS for ad in sandbox.visible_ads(a, list(DEFAULT_EFFECTIVE_STATUSES))]
    assert len(ids) > 1200
    return sorted(ids)


#: Faults on an answer's content, shown where that content is read: a metric that is no number is a report
#: row's (``tests/test_insights_tap.py``, ``test_a_report_page_with_a_metric_that_is_no_number_stops_...``).
CONTENT = {"bad_number"}


def test_every_recoverable_fault_kind_is_in_the_suite():
    from tap_meta_ads_sandbox.faults import BASE_KINDS

    fatal_or_listed = set(RECOVERABLE) | set(FATAL) | set(ACCOUNT_SCOPED) | CONTENT
    assert set(BASE_KINDS) <= fatal_or_listed


@pytest.mark.parametrize("kind", RECOVERABLE)
def test_fault_kind_is_survived_with_no_loss_and_no_duplicates(make_sandbox, clean_ids, kind):
    # requests 2, 3, 5 and 9 fail: two in a row force a second retry of the same page
    faults = FaultPlan.from_specs([f"{kind}@2,3,5,9"], slow_seconds=3)
    sandbox = make_sandbox(accounts=ACCOUNTS, faults=faults)
    run = run_tap(base_config(sandbox.url, ACCOUNT_IDS, **CHAOS), streams=ADS)
    assert run.returncode == 0, run.stderr[-3000:]
    assert duplicates(run.ids()) == {}
    assert sorted(run.ids()) == clean_ids
    stats = sandbox.stats()
    assert stats["faulted"] == 4
    summary = run.summary()
    assert summary["requests"] == stats["requests"]
    if kind == "reduce":
        assert summary["page_size_reductions"] >= 2
    elif kind == "expired_cursor":
        assert sum(p["cursor_restarts"] for p in summary["partitions"]) == 4
        assert "refused the paging cursor" in run.stderr
    else:
        assert summary["retries_total"] == 4
        assert "Retrying ads account" in run.stderr


def test_random_faults_of_every_kind_at_once(make_sandbox, clean_ids):
    specs = [f"{kind}~0.03" for kind in RECOVERABLE if kind != "slow"] + ["slow~0.01*2"]
    sandbox = make_sandbox(accounts=ACCOUNTS, faults=FaultPlan.from_specs(specs, seed=5, slow_seconds=3))
    run = run_tap(base_config(sandbox.url, ACCOUNT_IDS, **{**CHAOS, "max_retries": 12}), streams=ADS)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(set(run.ids())) == clean_ids
    assert duplicates(run.ids()) == {}
    stats = sandbox.stats()
    assert stats["faulted"] >= 5
    assert run.summary()["requests"] == stats["requests"]


def test_pacing_keeps_a_long_run_under_the_budget(make_sandbox, clean_ids):
    # 2 s window, 12 calls per account: the run needs 16 pages, so it must spread them out
    sandbox = make_sandbox(accounts=ACCOUNTS, rate_window_seconds=2.0, account_budget=12, app_budget=10000)
    run = run_tap(
        base_config(sandbox.url, ACCOUNT_IDS, **{**CHAOS, "throttle_threshold_pct": 50, "backoff_max_seconds": 5}),
        streams=ADS,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(run.ids()) == clean_ids
    stats = sandbox.stats()
    assert stats["throttled"] == 0
    assert run.summary()["pacing_wait_seconds"] > 0


def test_without_usage_headers_the_regain_hint_still_gets_the_run_through(make_sandbox, clean_ids):
    sandbox = make_sandbox(
        accounts=ACCOUNTS, rate_window_seconds=2.0, account_budget=4, app_budget=10000, usage_headers=False
    )
    run = run_tap(
        base_config(sandbox.url, ACCOUNT_IDS, **{**CHAOS, "backoff_max_seconds": 5, "max_retries": 6}), streams=ADS
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(run.ids()) == clean_ids
    stats = sandbox.stats()
    assert stats["throttled"] > 0
    summary = run.summary()
    assert summary["throttle_wait_seconds"] > 0
    # honouring the hint means one throttle answer per wall, not a burst of blind retries
    assert stats["throttled"] <= summary["retries_total"]
    assert stats["throttled"] <= 8


@pytest.mark.parametrize("kind", sorted(FATAL))
def test_fatal_errors_stop_fast_with_one_line_after_flushing(make_sandbox, kind):
    sandbox = make_sandbox(accounts=ACCOUNTS, faults=FaultPlan.from_specs([f"{kind}@4"]))
    started = time.monotonic()
    run = run_tap(base_config(sandbox.url, ACCOUNT_IDS, **CHAOS), streams=ADS)
    elapsed = time.monotonic() - started
    assert run.returncode != 0
    assert elapsed < 30
    assert sandbox.stats()["requests"] == 4  # no retries of a fatal error
    # one ERROR line says what happened (issue 11: the SDK's generic "unhandled error" line is DEBUG now)
    errors = [line for line in run.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, run.stderr[-3000:]
    assert FATAL[kind] in errors[0]
    assert "Traceback" not in run.stderr
    # the three pages read before the fault were flushed, with a STATE to resume from
    assert len(run.ids()) == 300
    partition = run.last_state["bookmarks"]["ads"]["partitions"][0]
    assert partition["resume"]["pages"] == 3 and partition["resume"]["after"]
    # an unsorted stream's bookmark only advances when its account completes
    assert "replication_key_value" not in partition
    assert run.summary()["status"] == "failed"


@pytest.mark.parametrize("kind", sorted(ACCOUNT_SCOPED))
def test_account_errors_end_that_account_alone_after_flushing(make_sandbox, kind):
    sandbox = make_sandbox(accounts=ACCOUNTS, faults=FaultPlan.from_specs([f"{kind}@4"]))
    run = run_tap(base_config(sandbox.url, ACCOUNT_IDS, **CHAOS), streams=ADS)
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, run.stderr[-3000:]
    assert ACCOUNT_SCOPED[kind] in errors[0]
    assert "act_1001" in errors[0]
    by_account = {a: [r["record"]["id"] for r in run.records if r["record"]["account_id"] == a] for a in ACCOUNTS}
    assert len(by_account["1001"]) == 300  # the three pages read before the fault, flushed
    expected_1002 = sorted(ad["id"] for ad in sandbox.visible_ads("1002", list(DEFAULT_EFFECTIVE_STATUSES)))
    assert sorted(by_account["1002"]) == expected_1002
    assert duplicates(run.ids()) == {}
    partitions = {p["context"]["account_id"]: p for p in run.last_state["bookmarks"]["ads"]["partitions"]}
    assert partitions["1001"]["resume"]["pages"] == 3
    assert "replication_key_value" not in partitions["1001"]
    assert partitions["1002"]["replication_key_value"]
    assert [f["account_id"] for f in run.summary()["failed_accounts"]] == ["1001"]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_kill_minus_nine_and_resume_until_done(make_sandbox, clean_ids, seed):
    every = 2
    page_size = 50
    sandbox = make_sandbox(accounts=ACCOUNTS)
    config = base_config(sandbox.url, ACCOUNT_IDS, **{**CHAOS, "page_size": page_size, "checkpoint_every_pages": every})
    rng = seeded(seed)
    state = None
    all_ids: list[str] = []
    kills = 0
    for _ in range(20):
        sandbox.reset_stats()
        resumed = _resumed_account(state)
        run = run_and_kill(config, state=state, kill_after_lines=rng.randint(40, 900), streams=ADS)
        all_ids += run.ids()
        if resumed:
            # the resumed account started from the saved cursor, not from page 1
            log = sandbox.stats()["log"]
            first = next(e for e in log if e["route"] == "ads" and e["account_id"] == resumed)
            assert "after" in first["params"], first
        if run.returncode == 0:
            break
        kills += 1
        state = run.last_state or state
    else:
        pytest.fail("the tap never finished")
    assert kills >= 1
    assert sorted(set(all_ids)) == clean_ids
    extra = len(all_ids) - len(clean_ids)
    assert extra <= kills * every * page_size, (extra, kills)


def _resumed_account(state):
    """The account whose partition state holds a saved cursor, if any."""
    if not state:
        return None
    for partition in state["bookmarks"].get("ads", {}).get("partitions", []):
        if partition.get("resume", {}).get("after"):
            return partition["context"]["account_id"]
    return None


def test_secrets_never_leak_with_every_fault_on(make_sandbox):
    token = "SECRET-" + seeded(99).randbytes(8).hex()
    app_secret = "APPSECRET-" + seeded(98).randbytes(8).hex()
    specs = [f"{kind}~0.04" for kind in RECOVERABLE if kind != "slow"] + ["slow@3", "token_expired@after:40"]
    sandbox = make_sandbox(
        accounts=ACCOUNTS,
        tokens=(token,),
        app_secret=app_secret,
        faults=FaultPlan.from_specs(specs, seed=3, slow_seconds=3),
    )
    config = base_config(sandbox.url, ACCOUNT_IDS, **CHAOS, access_token=token, app_secret=app_secret)
    run = run_tap(config, env={"TAP_META_ADS_LOGLEVEL": "DEBUG"}, streams=ADS)
    assert sandbox.stats()["faulted"] > 5
    assert run.returncode != 0  # the token expires at request 41
    for text in (run.stdout, run.stderr, json.dumps(run.states)):
        assert token not in text
        assert app_secret not in text
    assert sandbox.stats()["token_in_url"] == 0


def test_run_summary_counts_match_the_sandbox(make_sandbox):
    faults = FaultPlan.from_specs(["http503@2", "throttle:17@5", "reset@7", "reduce@9"], slow_seconds=3)
    sandbox = make_sandbox(accounts=ACCOUNTS, faults=faults)
    run = run_tap(base_config(sandbox.url, ACCOUNT_IDS, **CHAOS), streams=ADS)
    assert run.returncode == 0, run.stderr[-3000:]
    stats = sandbox.stats()
    summary = run.summary()
    assert summary["requests"] == stats["requests"]
    assert summary["records"] == len(run.ids())
    # the reset at request 7 cut a page the sandbox had counted as served: exactly one page more
    assert stats["records_served"] == summary["records"] + CHAOS["page_size"]
    assert summary["retries_total"] == stats["faulted"] + stats["throttled"] == 4
    assert summary["retries"]["throttled:17"] == 1
    assert summary["retries"]["reduce_data"] == 1
    for partition in summary["partitions"]:
        assert partition["requests"] == stats["by_account"][partition["account_id"]]


def _waits(stderr: str, reason: str) -> list[float]:
    """The waits the tap logged for retries of one reason."""
    waits = []
    for line in stderr.splitlines():
        if "Retrying ads account" in line and f"reason={reason} " in line:
            waits.append(float(line.split("waiting ")[1].split("s")[0]))
    return waits


def test_waits_follow_metas_hints(make_sandbox):
    """Retry-After and the usage headers decide the wait; without a hint, exponential backoff."""
    faults = FaultPlan.from_specs(["http429@2", "throttle:17/2446079@4", "http503@6,7"], retry_after_seconds=1)
    sandbox = make_sandbox(accounts=ACCOUNTS, faults=faults)
    run = run_tap(
        base_config(sandbox.url, ACCOUNT_IDS, **{**CHAOS, "backoff_max_seconds": 1.5, "backoff_base_seconds": 0.05}),
        streams=ADS,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (retry_after,) = _waits(run.stderr, "throttled:http429")
    assert 1.0 <= retry_after <= 1.06  # Retry-After: 1, plus at most 5 % jitter
    (regain,) = _waits(run.stderr, "throttled:17/2446079")
    assert regain == pytest.approx(1.5, abs=0.01)  # Meta's hint (a minute) capped by backoff_max_seconds
    first, second = _waits(run.stderr, "transient:http503")
    assert 0.025 <= first <= 0.05 and 0.05 <= second <= 0.1  # base x 2^n with jitter in [0.5, 1]
    assert "fbtrace_id=" in next(line for line in run.stderr.splitlines() if "reason=throttled:17" in line)


def test_page_size_shrinks_on_reduce_and_grows_back(make_sandbox, clean_ids):
    sandbox = make_sandbox(accounts=ACCOUNTS, faults=FaultPlan.from_specs(["reduce@2,3"]))
    run = run_tap(base_config(sandbox.url, ACCOUNT_IDS, **CHAOS), streams=ADS)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(run.ids()) == clean_ids
    limits = [int(e["params"]["limit"]) for e in sandbox.stats()["log"] if e["route"] == "ads"]
    assert limits[:4] == [100, 100, 50, 25]
    assert 50 in limits[4:] and limits[-1] == 100  # back up after runs of good pages
    assert run.summary()["page_size_reductions"] == 2


def test_a_cursor_refused_on_resume_restarts_the_account_from_its_bookmark(make_sandbox, clean_ids):
    sandbox = make_sandbox(accounts=ACCOUNTS, cursor_ttl_seconds=600)
    config = base_config(sandbox.url, ACCOUNT_IDS, **{**CHAOS, "page_size": 50, "checkpoint_every_pages": 2})
    killed = run_and_kill(config, state=None, kill_after_lines=250, streams=ADS)
    assert killed.returncode != 0
    account = _resumed_account(killed.last_state)
    assert account is not None
    sandbox.advance_clock(seconds=3600)  # the saved cursor is now an hour old: Meta refuses it
    resumed = run_tap(config, state=killed.last_state, streams=ADS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "refused the paging cursor" in resumed.stderr
    assert sorted(set(killed.ids()) | set(resumed.ids())) == clean_ids
    assert duplicates(resumed.ids()) == {}


def test_giving_up_is_one_line_and_resumable(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS, faults=FaultPlan.from_specs(["http503@after:3"]))
    run = run_tap(base_config(sandbox.url, ACCOUNT_IDS, **{**CHAOS, "max_retries": 3}), streams=ADS)
    assert run.returncode == 1
    assert sandbox.stats()["requests"] == 3 + 4  # three good pages, then 1 + 3 retries
    errors = [line for line in run.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1
    assert "Gave up on ads account 1001 after 4 attempts (transient:http503)" in errors[0]
    assert len(run.ids()) == 300
    assert run.last_state["bookmarks"]["ads"]["partitions"][0]["resume"]["pages"] == 3


def test_unreachable_api_gives_up_without_leaking_secrets():
    token, app_secret = "SECRET-unreachable-token", "SECRET-unreachable-app"
    config = base_config(
        "http://127.0.0.1:9", ACCOUNT_IDS, **{**CHAOS, "max_retries": 8}, access_token=token, app_secret=app_secret
    )
    run = run_tap(config, env={"TAP_META_ADS_LOGLEVEL": "DEBUG"}, streams=ADS)
    assert run.returncode == 1
    # issue 11: nothing ever answered, so the first contact stops after 3 tries, not max_retries + 1
    assert "Cannot connect to http://127.0.0.1:9 (connection refused; 3 attempts)" in run.stderr
    for text in (run.stdout, run.stderr):
        assert token not in text
        assert app_secret not in text
        assert "appsecret_proof=" not in text
