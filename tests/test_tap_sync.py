"""Issue 3: the ads stream end to end against the sandbox over real HTTP."""

from __future__ import annotations

import json
import platform

import pytest
from tap_meta_ads_sandbox import FaultPlan

from tap_meta_ads.cli import cap_malloc_arenas
from tap_meta_ads.client import rfc3339
from tap_meta_ads.tap import DEFAULT_EFFECTIVE_STATUSES
from tests.tap_harness import ADS, TOKEN, base_config, catalog_selecting, duplicates, run_streaming, run_tap

ACCOUNTS = ["act_1001", "1002"]
TIME_FIELDS = {"created_time", "updated_time", "ad_schedule_start_time", "ad_schedule_end_time"}


def truth(sandbox, account_id: str, statuses=DEFAULT_EFFECTIVE_STATUSES) -> dict[str, dict]:
    return {ad["id"]: ad for ad in sandbox.visible_ads(account_id, effective_statuses=list(statuses))}


@pytest.mark.parametrize("page_size", [37, 100, 500])
def test_full_sync_every_visible_ad_exactly_once_with_every_field(sandbox, page_size):
    run = run_tap(base_config(sandbox.url, ACCOUNTS, page_size=page_size), streams=ADS)
    assert run.returncode == 0, run.stderr[-3000:]

    ids = run.ids()
    assert duplicates(ids) == {}
    expected = {**truth(sandbox, "1001"), **truth(sandbox, "1002")}
    assert len(expected) > 4000
    assert set(ids) == set(expected)

    by_id = {m["record"]["id"]: m["record"] for m in run.records}
    properties = set(run.schemas[0]["schema"]["properties"])
    for ad_id, ad in expected.items():
        record = by_id[ad_id]
        assert record == {k: rfc3339(v) if k in TIME_FIELDS else v for k, v in ad.items() if k in properties}, ad_id
        assert record["account_id"] == ad["account_id"]
    # every selected field the sandbox knows comes back, not only `id`
    assert {"name", "status", "effective_status", "targeting", "tracking_specs", "creative"} <= set(record)

    # archived ads are part of a complete backup; deleted ones are not (by default)
    statuses = {r["effective_status"] for r in by_id.values()}
    assert "ARCHIVED" in statuses
    assert "DELETED" not in statuses
    assert sandbox.stats()["token_in_url"] == 0


def test_deleted_ads_on_request(sandbox):
    statuses = [*DEFAULT_EFFECTIVE_STATUSES, "DELETED"]
    run = run_tap(base_config(sandbox.url, ["1002"], effective_statuses=statuses, page_size=500), streams=ADS)
    assert run.returncode == 0, run.stderr[-3000:]
    expected = truth(sandbox, "1002", statuses)
    assert set(run.ids()) == set(expected)
    assert "DELETED" in {m["record"]["effective_status"] for m in run.records}


def test_incremental_returns_exactly_the_changed_ads(sandbox):
    config = base_config(sandbox.url, ACCOUNTS, page_size=500)
    first = run_tap(config, streams=ADS)
    assert first.returncode == 0, first.stderr[-3000:]

    changed = sandbox.mutate(account_id="1001", update=5, create=2)
    changed_2 = sandbox.mutate(account_id="1002", update=3)
    sandbox.advance_clock(seconds=5)
    second = run_tap(config, state=first.last_state, streams=ADS)
    assert second.returncode == 0, second.stderr[-3000:]
    assert sorted(second.ids()) == sorted(changed["updated"] + changed["created"] + changed_2["updated"])

    # the filter went to Meta, not to a client-side loop over every ad
    requests = [e for e in sandbox.stats()["log"] if e["route"] == "ads"]
    assert all("filtering" in e["params"] for e in requests[-2:])

    sandbox.advance_clock(seconds=5)
    third = run_tap(config, state=second.last_state, streams=ADS)
    assert third.returncode == 0
    assert third.ids() == []


def test_bookmark_never_skips_an_update_made_during_the_run(sandbox):
    """Ads updated while their partition is being read are read again by the next run."""
    config = base_config(sandbox.url, ["1001"], page_size=100, checkpoint_every_pages=1)
    baseline = run_tap(config, streams=ADS)
    assert baseline.returncode == 0
    sandbox.advance_clock(seconds=5)
    sandbox.mutate(account_id="1001", update=3)  # something for the next run to read
    sandbox.advance_clock(seconds=5)

    updated: list[str] = []

    def update_read_ads(message, run):
        # once two pages are out, update ads that were already read in this run
        if message["type"] == "STATE" and not updated and len(run.records) >= 2:
            ids = run.ids()[:2]
            updated.extend(sandbox.mutate(account_id="1001", update_ids=ids)["updated"])

    during = run_streaming(config, state=baseline.last_state, on_message=update_read_ads, streams=ADS)
    assert during.returncode == 0, during.stderr[-3000:]
    assert updated

    sandbox.advance_clock(seconds=5)
    after = run_tap(config, state=during.last_state, streams=ADS)
    assert after.returncode == 0
    assert set(updated) <= set(after.ids())


def test_start_date_limits_history(sandbox):
    ads = truth(sandbox, "1002")
    times = sorted(ad["updated_time"] for ad in ads.values())
    start = times[len(times) // 2]
    run = run_tap(base_config(sandbox.url, ["1002"], start_date=start, page_size=500), streams=ADS)
    assert run.returncode == 0, run.stderr[-3000:]
    from tap_meta_ads.checkpoint import to_epoch

    expected = {i for i, ad in ads.items() if to_epoch(ad["updated_time"]) >= to_epoch(start)}
    assert set(run.ids()) == expected


def test_deselected_properties_shrink_fields_on_the_wire(sandbox, tmp_path):
    config = base_config(sandbox.url, ["1002"], page_size=500)
    catalog = catalog_selecting(ADS)
    stream = next(s for s in catalog["streams"] if s["tap_stream_id"] == "ads")
    keep = {"id", "updated_time", "name", "status"}
    for entry in stream["metadata"]:
        breadcrumb = entry["breadcrumb"]
        if not breadcrumb:
            entry["metadata"]["selected"] = True
        elif breadcrumb[-1] not in keep:
            entry["metadata"]["selected"] = False
        else:
            entry["metadata"]["selected"] = True
    sandbox.reset_stats()
    run = run_tap(config, catalog=catalog)
    assert run.returncode == 0, run.stderr[-3000:]
    fields = {e["params"]["fields"] for e in sandbox.stats()["log"] if e["route"] == "ads"}
    assert len(fields) == 1
    assert set(fields.pop().split(",")) == keep | {"account_id"}  # account_id names the partition: always kept
    record = run.records[0]["record"]
    assert set(record) == keep | {"account_id"}


def test_token_never_in_url_output_or_state_across_errors(make_sandbox):
    secret = "SECRET-tok-7f3a9c"
    faults = FaultPlan.from_specs(["http503@2", "reset@4", "throttle:17@6", "token_expired@9"])
    sandbox = make_sandbox(tokens=(secret,), app_secret="app-SECRET-55", faults=faults)
    config = base_config(sandbox.url, ACCOUNTS, access_token=secret, app_secret="app-SECRET-55", page_size=500)
    run = run_tap(config, env={"TAP_META_ADS_LOGLEVEL": "DEBUG"}, streams=ADS)
    assert run.returncode != 0  # the expired token at request 9 ends the run
    assert "invalid or expired" in run.stderr
    assert sandbox.stats()["faulted"] >= 4
    for text in (run.stdout, run.stderr, json.dumps(run.states)):
        assert secret not in text
        assert "app-SECRET-55" not in text
    assert sandbox.stats()["token_in_url"] == 0


def test_malloc_arenas_are_capped_unless_the_environment_chose(monkeypatch):
    """The run's threads share two malloc arenas (``cli.MALLOC_ARENAS``); a ``MALLOC_ARENA_MAX`` is the user's."""
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_malloc_arenas() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert cap_malloc_arenas() is (platform.libc_ver()[0] == "glibc")


def test_about_and_discover(sandbox):
    about = run_tap({}, extra_args=["--about", "--format=json"])
    assert about.returncode == 0
    info = json.loads(about.stdout)
    settings = set(info["settings"]["properties"])
    assert {
        "access_token",
        "account_ids",
        "start_date",
        "api_version",
        "api_url",
        "page_size",
        "request_timeout_seconds",
        "app_secret",
        "effective_statuses",
        "max_retries",
        "backoff_base_seconds",
        "backoff_max_seconds",
        "throttle_threshold_pct",
        "checkpoint_every_pages",
    } <= settings
    assert info["settings"]["properties"]["access_token"].get("secret") is True
    assert info["settings"]["properties"]["app_secret"].get("secret") is True

    discovered = run_tap(base_config(sandbox.url, ACCOUNTS), extra_args=["--discover"])
    assert discovered.returncode == 0
    streams = json.loads(discovered.stdout)["streams"]
    ads = next(s for s in streams if s["tap_stream_id"] == "ads")
    assert ads["key_properties"] == ["id"]
    assert ads["replication_key"] == "updated_time"
    assert sandbox.stats()["requests"] == 0


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"access_token": None}, "access_token"),
        ({"access_token": ""}, "access_token"),
        ({"business_ids": ["acme"]}, "business_ids"),
        ({"exclude_account_ids": ["12x"]}, "exclude_account_ids"),
        ({"account_statuses": []}, "account_statuses"),
        ({"account_ids": ["act_12x"]}, "account_ids"),
        ({"account_ids": "1001"}, "account_ids"),
        ({"start_date": "last tuesday"}, "start_date"),
        ({"api_version": "25"}, "api_version"),
        ({"api_version": "v25.1"}, "api_version"),
    ],
)
def test_bad_config_fails_before_any_request(sandbox, override, setting):
    config = base_config(sandbox.url, ACCOUNTS)
    for key, value in override.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    run = run_tap(config, streams=ADS)
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert errors and setting in errors[0], run.stderr
    assert "Traceback" not in run.stderr
    assert sandbox.stats()["requests"] == 0
    assert run.records == []
    assert TOKEN not in run.stderr
