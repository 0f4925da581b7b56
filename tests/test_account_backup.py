"""Issue 21: the rest of the account, end to end against the sandbox over real HTTP.

The six new streams also run through every generic test of ``test_streams.py`` (full sync equal to the
sandbox's truth for two accounts, exactly once, a mix of faults, kill -9 and resume); this module holds what
is theirs alone: the change log's ``since``/``until``, the small full-table streams killed and resumed, what
Meta cannot serve (a field, an object), the creative files, and the token check at start.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import time
import urllib.parse
from collections import Counter

import pytest
from tap_meta_ads_sandbox import FaultPlan

from tests.tap_harness import base_config, discovered_catalog, duplicates, run_streaming, run_tap
from tests.test_streams import EDGE_OF, PAGE_SIZES, SMALL_STREAMS, key_of, records, truth

ACCOUNTS = {"1001": 900, "1002": 700}
ACCOUNT_IDS = ["act_1001", "1002"]
FAST = {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.3, "max_retries": 8, "request_timeout_seconds": 5}


def config(sandbox, accounts=ACCOUNT_IDS, **overrides):
    """The tap's config for this module: the token check on (it is what production runs)."""
    return base_config(sandbox.url, accounts, check_token=True, **FAST, **overrides)


def edge_requests(sandbox, edge: str) -> list[dict]:
    return [e for e in sandbox.stats()["log"] if e["route"] == edge]


# -- the change log -------------------------------------------------------------------------------


def test_activities_incremental_through_since_until_exactly_the_new_entries(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS)
    first = run_tap(config(sandbox, page_size=25), streams=["activities"])
    assert first.returncode == 0, first.stderr[-3000:]
    assert {key_of("activities", r) for r in records(first, "activities")} == set(truth(sandbox, "activities"))
    asked = edge_requests(sandbox, "activities")
    assert asked and all("since" not in e["params"] for e in asked)  # no bookmark, no start_date: all history
    # the pass's upper bound is Meta's clock at start (measured by the token check), the same on every page
    untils = {int(e["params"]["until"]) for e in asked if e["account_id"] == "1001"}
    assert len(untils) == 1 and untils.pop() <= sandbox.now()

    sandbox.advance_clock(5)
    touched = sandbox.mutate("1001", update=3, create=2)
    touched_2 = sandbox.mutate("1002", edge="campaigns", update=2)
    sandbox.advance_clock(5)
    sandbox.reset_stats()
    second = run_tap(config(sandbox, page_size=25), state=first.last_state, streams=["activities"])
    assert second.returncode == 0, second.stderr[-3000:]
    new = records(second, "activities")
    # exactly one entry per touched object (the created ads' ad sets and creatives are logged by their edges)
    assert sorted(r["object_id"] for r in new) == sorted(touched["updated"] + touched["created"] + touched_2["updated"])
    assert {key_of("activities", r) for r in new} == set(truth(sandbox, "activities")) - {
        key_of("activities", r) for r in records(first, "activities")
    }
    for entry in edge_requests(sandbox, "activities"):
        assert "since" in entry["params"] and "until" in entry["params"] and "filtering" not in entry["params"]
    bookmark = first.last_state["bookmarks"]["activities"]["partitions"][0]["replication_key_value"]
    since = {int(e["params"]["since"]) for e in edge_requests(sandbox, "activities") if e["account_id"] == "1001"}
    assert since == {int(datetime.datetime.fromisoformat(bookmark).timestamp())}  # the bookmark itself

    sandbox.advance_clock(5)
    third = run_tap(config(sandbox), state=second.last_state, streams=["activities"])
    assert third.returncode == 0
    assert records(third, "activities") == []


def test_activities_logged_during_a_run_are_read_once_by_the_next_run(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS)
    cfg = config(sandbox, accounts=["1001"], page_size=10, checkpoint_every_pages=1)
    changed: list[str] = []

    def change_during_the_run(message, run):
        if message["type"] == "STATE" and not changed and records(run, "activities"):
            changed.extend(sandbox.mutate("1001", update=2)["updated"])

    during = run_streaming(cfg, state=None, on_message=change_during_the_run, streams=["activities"])
    assert during.returncode == 0, during.stderr[-3000:]
    assert changed
    sandbox.advance_clock(5)
    after = run_tap(cfg, state=during.last_state, streams=["activities"])
    assert after.returncode == 0
    got = [key_of("activities", r) for r in records(during, "activities") + records(after, "activities")]
    assert duplicates(got) == {}  # logged after the first run's ``until``: read by the second run only
    assert set(got) == {k for k in truth(sandbox, "activities") if k[0] == "1001"}
    assert sorted(r["object_id"] for r in records(after, "activities")) == sorted(changed)


def test_an_activity_key_does_not_depend_on_the_fields_selected(make_sandbox):
    sandbox = make_sandbox(accounts={"1001": 300})
    full = run_tap(config(sandbox, accounts=["1001"]), streams=["activities"])
    catalog = discovered_catalog()
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if not entry["breadcrumb"]:
                entry["metadata"]["selected"] = stream["tap_stream_id"] == "activities"
            elif stream["tap_stream_id"] == "activities" and entry["breadcrumb"][-1] in ("actor_name", "object_name"):
                entry["metadata"]["selected"] = False
    narrow = run_tap(config(sandbox, accounts=["1001"]), catalog=catalog)
    assert narrow.returncode == 0, narrow.stderr[-3000:]
    assert all("actor_name" not in r for r in records(narrow, "activities"))
    assert sorted(r["activity_key"] for r in records(narrow, "activities")) == sorted(
        r["activity_key"] for r in records(full, "activities")
    )


# -- the small full-table streams: kill -9 and resume -----------------------------------------------


@pytest.mark.parametrize("stream", SMALL_STREAMS)
def test_small_streams_killed_after_a_checkpoint_resume_from_the_cursor(make_sandbox, stream):
    accounts = {"1001": 2400, "1002": 1200}
    sandbox = make_sandbox(accounts=accounts)
    page = 1 if stream in ("ads_pixels", "adrules") else PAGE_SIZES[stream]
    cfg = base_config(sandbox.url, ACCOUNT_IDS, page_size=page, checkpoint_every_pages=1, **FAST)

    def kill_at_first_cursor(message, _run):
        if message["type"] != "STATE":
            return False
        partitions = message["value"]["bookmarks"].get(stream, {}).get("partitions", [])
        return any(p.get("resume", {}).get("after") for p in partitions)

    killed = run_streaming(cfg, state=None, on_message=kill_at_first_cursor, streams=[stream])
    assert killed.returncode != 0 and records(killed, stream)
    resumed_account = next(
        p["context"]["account_id"]
        for p in killed.last_state["bookmarks"][stream]["partitions"]
        if p.get("resume", {}).get("after")
    )
    sandbox.reset_stats()
    rerun = run_tap(cfg, state=killed.last_state, streams=[stream])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    first_asked = next(e for e in sandbox.stats()["log"] if e["account_id"] == resumed_account)
    assert "after" in first_asked["params"]  # from the saved cursor, not page 1
    got = [key_of(stream, r) for r in records(killed, stream) + records(rerun, stream)]
    expected = truth_for(sandbox, stream, accounts)
    assert set(got) == set(expected)
    assert len(got) - len(expected) <= page  # at most the page written after the last checkpoint


def truth_for(sandbox, stream: str, accounts: dict[str, int]) -> dict:
    rows = {}
    for acct in accounts:
        for row in sandbox.visible(EDGE_OF.get(stream, stream), acct):
            row.setdefault("account_id", acct)
            rows[key_of(stream, row)] = row
    return rows


# -- what Meta cannot serve ---------------------------------------------------------------------------


def test_a_custom_audience_rule_meta_cannot_serve_is_left_out_with_one_line(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS, heavy_rule_every=4)
    run = run_tap(config(sandbox, page_size=10), streams=["custom_audiences"])
    assert run.returncode == 0, run.stderr[-3000:]
    expected = truth(sandbox, "custom_audiences")
    got = records(run, "custom_audiences")
    assert duplicates([r["id"] for r in got]) == {} and {(r["id"],) for r in got} == set(expected)
    for record in got:  # every other field as Meta serves it; no rule in accounts where Meta refused one
        assert "rule" not in record
        assert record == {k: v for k, v in expected[(record["id"],)].items() if k != "rule"}
    lines = [line for line in run.stderr.splitlines() if "Meta does not serve rule of custom_audiences" in line]
    assert len(lines) == 2 and all("WARNING" in line for line in lines)  # one per account
    summary = run.summary()
    assert [p["dropped_fields"] for p in summary["partitions"]] == [["rule"], ["rule"]]


def test_a_field_refused_to_the_token_is_left_out_with_one_line(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS)
    sandbox.set_token(OTHER, denied_fields=["rule"])
    run = run_tap({**config(sandbox, page_size=10), "access_token": OTHER}, streams=["custom_audiences"])
    assert run.returncode == 0, run.stderr[-3000:]
    expected = truth(sandbox, "custom_audiences")
    got = records(run, "custom_audiences")
    assert {(r["id"],) for r in got} == set(expected) and all("rule" not in r for r in got)
    lines = [line for line in run.stderr.splitlines() if "Meta does not serve rule of custom_audiences" in line]
    assert len(lines) == 2 and all("permission refused" in line and "200" in line for line in lines)
    assert [p["dropped_fields"] for p in run.summary()["partitions"]] == [["rule"], ["rule"]]
    assert_token_nowhere(run, OTHER)


def test_custom_audience_rules_are_kept_where_meta_serves_them(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS)
    run = run_tap(config(sandbox, page_size=10), streams=["custom_audiences"])
    assert run.returncode == 0
    assert (
        sum(1 for r in records(run, "custom_audiences") if r.get("rule"))
        == sum(1 for r in truth(sandbox, "custom_audiences").values() if r.get("rule"))
        > 0
    )


def test_incomplete_creatives_are_skipped_one_line_each_and_the_stream_completes(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS, incomplete_creative_every=45)
    run = run_tap(config(sandbox, page_size=50), streams=["adcreatives"])
    assert run.returncode == 0, run.stderr[-3000:]
    expected = truth(sandbox, "adcreatives")
    incomplete = {k for k in expected if int(k[0][-9:]) % 45 == 44}
    assert len(incomplete) >= 30
    got = [key_of("adcreatives", r) for r in records(run, "adcreatives")]
    assert duplicates(got) == {}
    assert set(got) == set(expected) - incomplete
    for record in records(run, "adcreatives"):
        assert record == expected[(record["id"],)]
    for (creative_id,) in incomplete:
        lines = [line for line in run.stderr.splitlines() if f"Skipped adcreatives {creative_id} " in line]
        assert len(lines) == 1 and "Ad Creative Is Incomplete" in lines[0] and "2446289" in lines[0]
    # deleted creatives are listed by Meta too: an incomplete one is skipped (and counted) before the tap could
    # see its status and drop it
    listed = truth(sandbox, "adcreatives", ["ACTIVE", "IN_PROCESS", "WITH_ISSUES", "DELETED"])
    assert run.summary()["skipped"] == {"unservable_object": sum(int(k[0][-9:]) % 45 == 44 for k in listed)}


# -- creative files -----------------------------------------------------------------------------------

SMALL = {"1001": 200, "1002": 150}


def files_by_account(sandbox, accounts) -> dict[str, dict[str, tuple[bytes, str]]]:
    return {acct: sandbox.asset_files(acct) for acct in accounts}


def check_records_are_the_sandbox_files(run, truth_files) -> None:
    for record in records(run, "ad_assets"):
        content = base64.b64decode(record["content_base64"])
        assert hashlib.sha256(content).hexdigest() == record["sha256"]
        assert "?" not in record["url"]
        expected, mime = truth_files[record["account_id"]][record["url"]]
        assert content == expected and record["mime_type"] == mime and record["size_bytes"] == len(expected)


def test_ad_assets_are_the_sandbox_files_each_once_across_two_runs(make_sandbox):
    sandbox = make_sandbox(accounts=SMALL)
    cfg = config(sandbox, accounts=list(SMALL), page_size=50)
    first = run_tap(cfg, streams=["ad_assets"])
    assert first.returncode == 0, first.stderr[-3000:]
    truth_files = files_by_account(sandbox, SMALL)
    check_records_are_the_sandbox_files(first, truth_files)
    got = [(r["account_id"], r["sha256"]) for r in records(first, "ad_assets")]
    assert duplicates(got) == {}
    assert set(got) == {
        (a, hashlib.sha256(c).hexdigest()) for a, files in truth_files.items() for c, _ in files.values()
    }
    assert {r["source_field"] for r in records(first, "ad_assets")} == {"url", "thumbnail_url"}  # image_url = url
    cdn = sandbox.cdn_requests()
    assert cdn and not any(r["authorization"] for r in cdn)  # the token never travels to the file host
    assert Counter(r["path"] for r in cdn).most_common(1)[0][1] == 1  # each file fetched once
    assert set(sandbox.stats()["by_route"]) == {"adimages", "adcreatives", "debug_token", "node"}

    before = len(sandbox.cdn_requests())
    second = run_tap(cfg, state=first.last_state, streams=["ad_assets"])
    assert second.returncode == 0, second.stderr[-3000:]
    assert records(second, "ad_assets") == []
    assert len(sandbox.cdn_requests()) == before  # what the state says is stored is not fetched again

    created = sandbox.mutate("1001", edge="adimages", create=2)["created"]
    third = run_tap(cfg, state=second.last_state, streams=["ad_assets"])
    assert third.returncode == 0
    new = records(third, "ad_assets")
    assert sorted(r["source_id"] for r in new if r["source_type"] == "adimage") == sorted(
        c.split(":")[1] for c in created
    )


def test_ad_assets_is_not_selected_by_default():
    entry = next(s for s in discovered_catalog()["streams"] if s["tap_stream_id"] == "ad_assets")
    top = next(m for m in entry["metadata"] if not m["breadcrumb"])
    assert top["metadata"]["selected-by-default"] is False
    assert entry["key_properties"] == ["account_id", "sha256"]


def test_expired_urls_and_too_large_files_are_counted_warnings(make_sandbox):
    ttl = int(time.time()) - 1735689600  # URLs of objects last changed before 2025 have expired
    sandbox = make_sandbox(accounts=SMALL, asset_url_ttl_seconds=ttl)
    cap = 30_000
    run = run_tap(config(sandbox, accounts=list(SMALL), page_size=50, asset_max_bytes=cap), streams=["ad_assets"])
    assert run.returncode == 0, run.stderr[-3000:]
    now = sandbox.now()
    expired = too_large = 0
    stored: set[tuple[str, str]] = set()
    for acct in SMALL:
        files = sandbox.asset_files(acct)
        rows = [(r, ("url",)) for r in sandbox.visible("adimages", acct, ["ACTIVE", "INTERNAL"])]
        rows += [
            (r, ("image_url", "thumbnail_url"))
            for r in sandbox.visible("adcreatives", acct, ["ACTIVE", "IN_PROCESS", "WITH_ISSUES"])
        ]
        for row, fields in rows:
            for name in fields:
                url = row.get(name)
                if not url or (acct, url.split("?")[0]) in stored:
                    continue
                oe = int(urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["oe"][0], 16)
                if oe < now:
                    expired += 1
                elif len(files[url.split("?")[0]][0]) > cap:
                    too_large += 1
                else:
                    stored.add((acct, url.split("?")[0]))
    assert expired >= 10 and too_large >= 5 and stored
    assert {(r["account_id"], r["url"]) for r in records(run, "ad_assets")} == stored
    check_records_are_the_sandbox_files(run, files_by_account(sandbox, SMALL))
    assert run.summary()["skipped"] == {"asset_unavailable": expired, "asset_too_large": too_large}
    lines = run.stderr.splitlines()
    assert sum("Skipped the file of" in line and "URL signature expired" in line for line in lines) == expired
    assert sum("Skipped the file of" in line and f"asset_max_bytes={cap}" in line for line in lines) == too_large
    assert not any("?" in line and "/_cdn/" in line for line in lines)  # signed URLs are logged without the query


def test_a_file_host_fault_is_retried(make_sandbox):
    sandbox = make_sandbox(accounts={"1001": 60})
    sandbox.fail_cdn(503, 503, 500)
    run = run_tap(config(sandbox, accounts=["1001"]), streams=["ad_assets"])
    assert run.returncode == 0, run.stderr[-3000:]
    assert {r["url"] for r in records(run, "ad_assets")} == set(sandbox.asset_files("1001"))
    assert run.summary()["retries"] == {"transient:http503": 2, "transient:http500": 1}


def test_ad_assets_killed_and_resumed_store_each_file_once_but_for_the_last_page(make_sandbox):
    sandbox = make_sandbox(accounts=SMALL)
    cfg = config(sandbox, accounts=list(SMALL), page_size=20)
    seen = 0

    def kill_in_the_middle(message, _run):
        nonlocal seen
        seen += message["type"] == "RECORD"
        return seen >= 150

    killed = run_streaming(cfg, state=None, on_message=kill_in_the_middle, streams=["ad_assets"])
    assert killed.returncode != 0
    fetched_before = len(sandbox.cdn_requests())
    rerun = run_tap(cfg, state=killed.last_state, streams=["ad_assets"])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    truth_files = files_by_account(sandbox, SMALL)
    total = sum(len(f) for f in truth_files.values())
    got = [(r["account_id"], r["sha256"]) for r in records(killed, "ad_assets") + records(rerun, "ad_assets")]
    assert len(set(got)) == total
    # files written after the killed run's last checkpoint come again: at most one source page's worth (20 rows,
    # up to two files each)
    assert len(got) - total <= 40
    assert len(sandbox.cdn_requests()) - fetched_before < total  # the stored ones were not fetched again


# -- token health at start ----------------------------------------------------------------------------

SOON = "EAAGsoon0expiring0token0123456789"
OTHER = "EAAGother0token0abcdefghijklmnop"


def assert_token_nowhere(run, token: str) -> None:
    assert token not in run.stdout and token not in run.stderr
    assert all(token not in json.dumps(state) for state in run.states)


def test_a_token_expiring_soon_warns_with_the_days_left(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS)
    sandbox.set_token(SOON, expires_in_seconds=3 * 86400 + 3600)
    run = run_tap({**config(sandbox), "access_token": SOON}, streams=["adlabels"])
    assert run.returncode == 0, run.stderr[-3000:]
    warning = [line for line in run.stderr.splitlines() if "The access token expires on" in line]
    assert len(warning) == 1 and "WARNING" in warning[0] and "in 3.0 days" in warning[0]
    token = run.summary()["token"]
    assert token["inspected"] is True and token["days_left"] == 3.0 and token["warning"] is True
    assert token["scopes"] == ["ads_management", "ads_read", "business_management", "read_insights"]
    assert len(records(run, "adlabels")) > 0
    assert_token_nowhere(run, SOON)


def test_a_token_with_weeks_left_is_logged_without_a_warning(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS)
    run = run_tap(config(sandbox), streams=["adlabels"])
    assert run.returncode == 0
    assert "60.0 days left" in run.stderr and run.summary()["token"]["warning"] is False


STOPS = {
    "expired": ({"expires_in_seconds": -3600}, "The access token expired on"),
    "missing scope": ({"scopes": ["pages_show_list", "business_management"]}, "neither ads_read nor ads_management"),
    "data access expired": ({"data_access_expires_in_seconds": -60}, "data access for this user expired"),
}


@pytest.mark.parametrize("case", sorted(STOPS))
def test_a_token_that_cannot_work_stops_before_extraction_with_one_line(make_sandbox, case):
    profile, words = STOPS[case]
    sandbox = make_sandbox(accounts=ACCOUNTS)
    sandbox.set_token(OTHER, **profile)
    run = run_tap({**config(sandbox), "access_token": OTHER}, streams=["ads", "adlabels", "activities"])
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and words in errors[0] and "No data was extracted" in errors[0], run.stderr[-3000:]
    assert run.records == []
    assert set(sandbox.stats()["by_route"]) <= {"debug_token", "node"}  # no edge was read
    assert "Traceback" not in run.stderr
    assert run.summary()["status"] == "failed" and run.summary()["partitions"] == []
    assert_token_nowhere(run, OTHER)


@pytest.mark.parametrize("on_account_error", ["fail", "skip"])
def test_an_account_the_check_finds_refused_fails_alone(make_sandbox, on_account_error):
    sandbox = make_sandbox(accounts=ACCOUNTS, faults=FaultPlan.from_specs(["act_1002:permission@after:0"]))
    run = run_tap({**config(sandbox), "on_account_error": on_account_error}, streams=["adlabels"])
    assert run.returncode == (1 if on_account_error == "fail" else 0), run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "act_1002" in errors[0] and "permission" in errors[0], errors
    others = [a for a in ACCOUNTS if a != "1002"]
    assert others
    assert sorted(r["record"]["id"] for r in run.records) == sorted(
        o["id"] for a in others for o in sandbox.visible("adlabels", a)
    )
    assert [f["account_id"] for f in run.summary()["failed_accounts"]] == ["1002"]
    # act_1002 was asked once, by the check before the run: its stream was never read
    assert [e["account_id"] for e in sandbox.stats()["log"] if e["route"] != "debug_token"].count("1002") == 1


def test_an_account_the_token_cannot_see_fails_alone(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS)
    sandbox.set_token(OTHER, accounts=["1001"])
    run = run_tap({**config(sandbox), "access_token": OTHER}, streams=["adlabels"])
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "act_1002" in errors[0], run.stderr[-3000:]
    assert {r["record"]["account_id"] for r in run.records} == {"1001"}
    assert_token_nowhere(run, OTHER)


def test_meta_refusing_the_inspection_is_one_line_and_the_run_goes_on(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS)
    sandbox.set_token(OTHER, can_inspect=False)
    run = run_tap({**config(sandbox), "access_token": OTHER}, streams=["adlabels"])
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stderr.splitlines() if "Meta refused to inspect the access token" in line]
    assert len(lines) == 1 and "going on" in lines[0]
    assert run.summary()["token"] == {"inspected": False, "reason": "100"}
    assert len(records(run, "adlabels")) == len(truth(sandbox, "adlabels"))
    assert_token_nowhere(run, OTHER)


def test_the_inspected_token_is_never_logged_even_at_debug(make_sandbox):
    """Meta's inspection takes the token in the query string (input_token): that URL must not reach a log."""
    sandbox = make_sandbox(accounts=ACCOUNTS)
    sandbox.set_token(SOON, expires_in_seconds=3 * 86400)
    run = run_tap(
        {**config(sandbox), "access_token": SOON}, streams=["adlabels"], env={"TAP_META_ADS_LOGLEVEL": "DEBUG"}
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "debug_token" in sandbox.stats()["by_route"]
    assert next(e for e in sandbox.stats()["log"] if e["route"] == "debug_token")["params"].get("input_token")
    assert "| DEBUG " in run.stderr  # (urllib3 logs each request's URL at DEBUG: not that one)
    assert "input_token" not in run.stderr
    assert_token_nowhere(run, SOON)


def test_an_unreachable_api_is_one_line_at_the_token_check(refusing_port):
    cfg = base_config(f"http://127.0.0.1:{refusing_port}", ACCOUNT_IDS, check_token=True, **FAST)
    run = run_tap(cfg, streams=["adlabels"])
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, run.stderr[-3000:]
    assert f"Cannot connect to http://127.0.0.1:{refusing_port} (connection refused; 3 attempts" in errors[0]
    assert "input_token" not in run.stderr and "sandbox-token" not in run.stderr
