"""Account discovery (``tap_meta_ads/accounts.py``) against the sandbox's listings, over real HTTP.

The listings page by cursor and their ``next`` repeats the token, as Meta's do: the tap must read exactly the
accounts listed with the chosen statuses, and never put the token in a URL or a log line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from tap_meta_ads_sandbox import SandboxServer

from tap_meta_ads.accounts import LISTING_PAGE_SIZE
from tests.tap_harness import TOKEN, base_config, run_tap

#: Twelve small accounts: enough for listings of several pages at a small page size.
TWELVE = {str(2001 + i): 6 for i in range(12)}
STATUSES = {"2002": 2, "2003": 101, "2005": 3, "2007": 100, "2008": 101, "2011": 9}


def discovering(url: str, **overrides: Any) -> dict[str, Any]:
    config = base_config(url, [], **overrides)
    del config["account_ids"]
    return config


def account_ids_read(run: Any, stream: str = "adaccounts") -> list[str]:
    return sorted({r["record"]["account_id"] for r in run.records if r["stream"] == stream})


@pytest.fixture
def agency(make_sandbox: Callable[..., SandboxServer]) -> SandboxServer:
    return make_sandbox(
        accounts=TWELVE,
        # the token lists them in an order that is not sorted, one of them twice over two listings
        me_accounts=("2009", "2001", "2003", "2002", "2012", "2005", "2004", "2006", "2007", "2008", "2010"),
        businesses={"77": {"owned": ["2004", "2001", "2003"], "client": ["2011", "2001", "2012"]}, "78": {}},
        account_statuses=STATUSES,
    )


def test_the_sandbox_pages_listings_with_the_token_in_next(agency):
    import requests

    page = requests.get(
        f"{agency.url}/v25.0/me/adaccounts",
        params={"fields": "account_id,name,account_status", "limit": 4},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    ).json()
    assert [r["account_id"] for r in page["data"]] == ["2009", "2001", "2003", "2002"]
    assert f"access_token={TOKEN}" in page["paging"]["next"]
    assert page["data"][2]["account_status"] == 101


def test_discovery_from_the_token_reads_exactly_the_listed_accounts_with_the_chosen_statuses(agency):
    run = run_tap(discovering(agency.url), streams=["adaccounts", "campaigns"])
    assert run.returncode == 0, run.stderr[-3000:]
    listed = ["2009", "2001", "2003", "2002", "2012", "2005", "2004", "2006", "2007", "2008", "2010"]
    expected = sorted(a for a in listed if STATUSES.get(a, 1) != 101)  # the default: every status but CLOSED
    assert account_ids_read(run) == expected
    assert account_ids_read(run, "campaigns") == expected  # every stream reads the discovered list
    stats = agency.stats()
    assert stats["token_in_url"] == 0
    assert stats["by_route"]["adaccounts"] == 1  # one listing page (the tap asks for 200 a page)
    assert TOKEN not in run.stderr
    (line,) = [x for x in run.stderr.splitlines() if "Ad accounts: " in x]
    assert "Ad accounts: 9 from me/adaccounts" in line
    assert "act_2002 (Example Shop 2002, DISABLED)" in line
    left_out = [x for x in run.stderr.splitlines() if "Ad accounts left out" in x]
    assert "act_2003" in left_out[0]
    assert "act_2008" in left_out[0]
    # partitions in sorted order, whatever order Meta listed them in
    first_seen = list(dict.fromkeys(r["record"]["account_id"] for r in run.records if r["stream"] == "adaccounts"))
    assert first_seen == expected


def test_listings_of_several_pages_are_followed_by_cursor(make_sandbox):
    many = {str(5000 + i): 0 for i in range(450)}
    sandbox = make_sandbox(accounts=many)
    run = run_tap(discovering(sandbox.url), streams=["adaccounts"])
    assert run.returncode == 0, run.stderr[-3000:]
    assert account_ids_read(run) == sorted(many)
    listing = [e for e in sandbox.stats()["log"] if e["route"] == "adaccounts"]
    assert len(listing) == -(-len(many) // LISTING_PAGE_SIZE) == 3  # 200 + 200 + 50
    assert [bool(e["params"].get("after")) for e in listing] == [False, True, True]
    assert sandbox.stats()["token_in_url"] == 0


def test_discovery_from_businesses_dedupes_and_excludes(agency):
    config = discovering(agency.url, business_ids=["77", "78"], exclude_account_ids=["act_2012"])
    run = run_tap(config, streams=["adaccounts"])
    assert run.returncode == 0, run.stderr[-3000:]
    # owned 2004, 2001, 2003 (CLOSED); clients 2011, 2001 (again), 2012 (excluded)
    assert account_ids_read(run) == ["2001", "2004", "2011"]
    routes = agency.stats()["by_route"]
    assert routes["owned_ad_accounts"] == 2
    assert routes["client_ad_accounts"] == 2
    assert "adaccounts" not in routes
    assert agency.stats()["token_in_url"] == 0


def test_configured_accounts_are_read_as_given_without_a_listing(agency):
    run = run_tap(base_config(agency.url, ["act_2003", "2001", "2003"], exclude_account_ids=["2001"]),
                  streams=["adaccounts"])  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert account_ids_read(run) == ["2003"]  # a CLOSED account chosen by hand is read
    assert "adaccounts" not in agency.stats()["by_route"]


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"business_ids": ["99"]}, "Listing ad accounts (99/owned_ad_accounts): Meta API error 100/33"),
        ({"account_statuses": [101], "exclude_account_ids": ["2003", "2008"]}, "No ad account to extract"),
        ({"access_token": "expired-token"}, "The access token is invalid or expired"),
    ],
)
def test_discovery_that_finds_nothing_or_fails_is_one_line(agency, overrides, says):
    run = run_tap({**discovering(agency.url), **overrides}, streams=["adaccounts"])
    assert run.returncode == 1
    errors = [x for x in run.stderr.splitlines() if "| ERROR" in x]
    assert len(errors) == 1, run.stderr[-3000:]
    assert says in errors[0]
    assert "Traceback" not in run.stderr
    assert "expired-token" not in run.stderr
    assert run.records == []


def test_discover_needs_no_accounts_and_applies_every_default(tmp_path):
    run = run_tap({"access_token": TOKEN, "api_url": "http://127.0.0.1:9"}, extra_args=["--discover"])
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert {s["tap_stream_id"] for s in json.loads(run.stdout)["streams"]} >= {"ads", "adaccounts", "ads_insights"}


@pytest.mark.parametrize("mode", [["--discover"], []])
def test_discover_gives_the_same_one_line_errors_as_a_sync(mode):
    config = {"account_ids": "act_1", "account_statuses": [5], "api_url": "http://127.0.0.1:9"}
    run = run_tap(config, extra_args=mode)
    assert run.returncode == 1
    errors = [x.split("| ")[-1] for x in run.stderr.splitlines() if "| ERROR" in x]
    assert [e.split(":")[0] for e in errors] == ["access_token", "account_ids", "account_statuses"]
    assert "Traceback" not in run.stderr
