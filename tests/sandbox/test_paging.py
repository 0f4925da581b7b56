"""Pagination: every visible ad exactly once, Meta's paging shape, cursors and the ``next`` URL."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from tap_meta_ads_sandbox.data import AD_FIELDS, EFFECTIVE_STATUSES

from .conftest import TOKEN, ads_url, error_of, fetch_all


@pytest.mark.parametrize(("account", "limit"), [("1002", 1), ("1001", 7), ("1001", 25), ("1001", 100), ("1001", 500)])
def test_every_visible_ad_exactly_once(sandbox, client, account, limit):
    truth = [ad["id"] for ad in sandbox.visible_ads(account)]
    rows, pages = fetch_all(client, ads_url(sandbox, account), {"limit": limit})
    ids = [r["id"] for r in rows]
    assert ids == truth
    assert len(set(ids)) == len(ids)
    assert all(len(p["data"]) <= limit for p in pages)
    assert "next" not in pages[-1].get("paging", {})


def test_default_limit_is_25_and_hidden_statuses_are_left_out(sandbox, client):
    doc = client.get(ads_url(sandbox), timeout=10).json()
    assert len(doc["data"]) == 25
    visible = len(sandbox.visible_ads("1001"))
    everything = sandbox.visible_ads("1001", list(EFFECTIVE_STATUSES))
    assert len(everything) == 300
    assert 0 < visible < 300
    hidden = {ad["effective_status"] for ad in everything} - {
        ad["effective_status"] for ad in sandbox.visible_ads("1001")
    }
    assert hidden == {"ARCHIVED", "DELETED"}


def test_paging_shape_and_next_repeats_params_without_header_token(sandbox, client):
    params = {"fields": "id,name", "limit": "10", "effective_status": '["ACTIVE","PAUSED"]'}
    doc = client.get(ads_url(sandbox), params=params, timeout=10).json()
    paging = doc["paging"]
    assert set(paging["cursors"]) == {"before", "after"}
    nxt = urlsplit(paging["next"])
    assert f"{nxt.scheme}://{nxt.netloc}{nxt.path}" == ads_url(sandbox)
    query = parse_qs(nxt.query)
    assert query["fields"] == ["id,name"]
    assert query["limit"] == ["10"]
    assert query["effective_status"] == ['["ACTIVE","PAUSED"]']
    assert query["after"] == [paging["cursors"]["after"]]
    assert "access_token" not in query


def test_next_carries_the_token_when_it_came_as_a_param(sandbox):
    import requests

    url = ads_url(sandbox)
    doc = requests.get(url, params={"access_token": TOKEN, "limit": 5}, timeout=10).json()
    assert parse_qs(urlsplit(doc["paging"]["next"]).query)["access_token"] == [TOKEN]
    rows, _ = fetch_all(requests.Session(), url, {"access_token": TOKEN, "limit": 50})
    assert len(rows) == len(sandbox.visible_ads("1001"))
    assert sandbox.stats()["token_in_url"] == sandbox.stats()["requests"]


def test_after_cursor_resumes_where_the_page_ended(sandbox, client):
    first = client.get(ads_url(sandbox), params={"limit": 20}, timeout=10).json()
    second = client.get(
        ads_url(sandbox), params={"limit": 20, "after": first["paging"]["cursors"]["after"]}, timeout=10
    ).json()
    truth = [ad["id"] for ad in sandbox.visible_ads("1001")]
    assert [r["id"] for r in first["data"] + second["data"]] == truth[:40]


def test_before_cursor_goes_back_one_page(sandbox, client):
    first = client.get(ads_url(sandbox), params={"limit": 10}, timeout=10).json()
    second = client.get(first["paging"]["next"], timeout=10).json()
    assert "previous" in second["paging"]
    back = client.get(
        ads_url(sandbox), params={"limit": 10, "before": second["paging"]["cursors"]["before"]}, timeout=10
    ).json()
    assert [r["id"] for r in back["data"]] == [r["id"] for r in first["data"]]


def test_empty_pages_still_carry_next_and_nothing_is_lost(make_sandbox, client):
    sb = make_sandbox(empty_page_every=3)
    rows, pages = fetch_all(client, ads_url(sb), {"limit": 20})
    assert [r["id"] for r in rows] == [ad["id"] for ad in sb.visible_ads("1001")]
    empties = [p for p in pages if not p["data"]]
    assert empties
    assert all("next" in p["paging"] for p in empties)
    assert [i for i, p in enumerate(pages, 1) if not p["data"]][:2] == [3, 6]


@pytest.mark.parametrize("cursor", ["garbage", "e30", "eyJlIjoiYWRzIn0", "!!!"])
def test_invalid_cursor_is_code_2642(sandbox, client, cursor):
    resp = client.get(ads_url(sandbox), params={"after": cursor}, timeout=10)
    assert resp.status_code == 400
    err = error_of(resp)
    assert err["code"] == 2642
    assert "error_subcode" not in err


def test_cursor_of_another_account_is_invalid(sandbox, client):
    doc = client.get(ads_url(sandbox, "1002"), params={"limit": 5}, timeout=10).json()
    resp = client.get(ads_url(sandbox, "1001"), params={"after": doc["paging"]["cursors"]["after"]}, timeout=10)
    assert error_of(resp)["code"] == 2642


def test_cursor_expires_after_its_ttl_on_the_virtual_clock(make_sandbox, client):
    sb = make_sandbox(cursor_ttl_seconds=600)
    doc = client.get(ads_url(sb), params={"limit": 5}, timeout=10).json()
    assert client.get(doc["paging"]["next"], timeout=10).status_code == 200
    sb.advance_clock(601)
    resp = client.get(doc["paging"]["next"], timeout=10)
    assert resp.status_code == 400
    err = error_of(resp)
    assert (err["code"], err["error_subcode"]) == (2642, 2642001)


@pytest.mark.parametrize("limit", ["0", "-3", "ten"])
def test_bad_limit_is_code_100(sandbox, client, limit):
    resp = client.get(ads_url(sandbox), params={"limit": limit}, timeout=10)
    assert resp.status_code == 400
    assert error_of(resp)["code"] == 100


def test_limit_is_capped_silently(make_sandbox, client):
    sb = make_sandbox(max_limit=50)
    doc = client.get(ads_url(sb), params={"limit": 1000}, timeout=10).json()
    assert len(doc["data"]) == 50
    assert "next" in doc["paging"]


def test_page_budget_fails_heavy_pages_with_reduce_and_halving_works(make_sandbox, client):
    sb = make_sandbox(page_budget_bytes=100_000)
    heavy = client.get(ads_url(sb), params={"limit": 500, "fields": ",".join(AD_FIELDS)}, timeout=10)
    assert heavy.status_code == 500
    err = error_of(heavy)
    assert err["code"] == 1
    assert err["message"] == "Please reduce the amount of data you're asking for, then retry your request"
    assert err["is_transient"] is False
    light = client.get(ads_url(sb), params={"limit": 25, "fields": ",".join(AD_FIELDS)}, timeout=10)
    assert light.status_code == 200
    only_ids = client.get(ads_url(sb), params={"limit": 500, "fields": "id"}, timeout=10)
    assert only_ids.status_code == 200
