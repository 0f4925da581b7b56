"""Issue 10: accounts read at once, pages read ahead; what is written and what STATE says stay exact."""

from __future__ import annotations

import itertools
import json

import pytest

from tap_meta_ads.chains import PROVEN_AFTER_PAGES
from tap_meta_ads.tap import DEFAULT_EFFECTIVE_STATUSES
from tests.tap_harness import ADS, base_config, duplicates, run_tap

ACCOUNTS = {str(3001 + i): 450 + 50 * i for i in range(5)}
IDS = [f"act_{a}" for a in ACCOUNTS]


def test_accounts_are_fetched_at_once_but_written_one_after_another(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS, latency_seconds=0.02)
    config = base_config(sandbox.url, IDS, page_size=50, checkpoint_every_pages=3, parallel_accounts=3)
    run = run_tap(config, streams=ADS)
    assert run.returncode == 0, run.stderr[-3000:]
    assert duplicates(run.ids()) == {}
    # written in the configured order, one account after another
    order = [r["record"]["account_id"] for r in run.records]
    assert [a for i, a in enumerate(order) if i == 0 or order[i - 1] != a] == list(ACCOUNTS)
    assert len(order) == sum(len(sandbox.visible_ads(a, list(DEFAULT_EFFECTIVE_STATUSES))) for a in ACCOUNTS)
    # fetched at once: some account's first request came before the previous account's last one
    log = [e["account_id"] for e in sandbox.stats()["log"] if e["route"] == "ads"]
    first = {a: log.index(a) for a in ACCOUNTS}
    last = {a: len(log) - 1 - log[::-1].index(a) for a in ACCOUNTS}
    accounts = list(ACCOUNTS)
    assert any(first[b] < last[a] for a, b in itertools.pairwise(accounts))
    # the first account read PROVEN_AFTER_PAGES pages before any other was asked for anything
    assert PROVEN_AFTER_PAGES >= 2
    assert all(a == accounts[0] for a in log[:PROVEN_AFTER_PAGES])


def test_every_state_covers_exactly_the_records_written_before_it(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS)
    config = base_config(sandbox.url, IDS, page_size=50, checkpoint_every_pages=2, parallel_accounts=4)
    run = run_tap(config, streams=ADS)
    assert run.returncode == 0, run.stderr[-3000:]
    written: dict[str, int] = dict.fromkeys(ACCOUNTS, 0)
    checked = 0
    for line in run.stdout.splitlines():
        if '"type":"RECORD"' in line:
            written[line.split('"account_id":"')[1].split('"')[0]] += 1
        elif '"type":"STATE"' in line:
            for partition in _partitions(line):
                resume = partition.get("resume")
                if resume and resume.get("after"):
                    # a resume point covers the pages written so far, and no page merely fetched
                    assert written[partition["context"]["account_id"]] == resume["pages"] * 50
                    checked += 1
    assert checked >= 10


def _partitions(line):
    return json.loads(line)["value"]["bookmarks"]["ads"]["partitions"]


@pytest.mark.parametrize("width", [1, 4])
def test_the_app_budget_holds_with_accounts_read_at_once(make_sandbox, width):
    # every account has budget to spare; the app allows 30 calls in any 2 s for all of them together
    sandbox = make_sandbox(accounts=ACCOUNTS, rate_window_seconds=2.0, account_budget=10000, app_budget=30)
    config = base_config(
        sandbox.url,
        IDS,
        page_size=50,
        parallel_accounts=width,
        throttle_threshold_pct=50,
        backoff_max_seconds=5,
    )
    run = run_tap(config, streams=ADS)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sandbox.stats()["throttled"] == 0
    assert run.summary()["pacing_wait_seconds"] > 0
