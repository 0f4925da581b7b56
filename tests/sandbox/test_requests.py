"""Auth, versions, fields, filters and the shapes of the generated ads."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import datetime

import pytest
import requests
from tap_meta_ads_sandbox.data import AD_FIELDS, EFFECTIVE_STATUSES

from .conftest import TOKEN, ads_url, error_of, fetch_all

SECRET = "s3cr3t"


def _proof(token: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()


def _epoch(meta_time: str) -> int:
    return int(datetime.strptime(meta_time, "%Y-%m-%dT%H:%M:%S%z").timestamp())


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"Authorization": f"Bearer {TOKEN}"}, {}),
        ({"Authorization": f"OAuth {TOKEN}"}, {}),
        ({}, {"access_token": TOKEN}),
    ],
)
def test_token_by_header_or_param(sandbox, headers, params):
    resp = requests.get(ads_url(sandbox), headers=headers, params=params, timeout=10)
    assert resp.status_code == 200
    assert resp.json()["data"]


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({}, {}),
        ({"Authorization": "Bearer wrong"}, {}),
        ({"Authorization": f"Basic {TOKEN}"}, {}),
        ({}, {"access_token": "wrong"}),
    ],
)
def test_unknown_or_missing_token_is_190(sandbox, headers, params):
    resp = requests.get(ads_url(sandbox), headers=headers, params=params, timeout=10)
    assert resp.status_code == 400
    err = error_of(resp)
    assert err["code"] == 190
    assert err["type"] == "OAuthException"
    assert err["message"] == "Invalid OAuth access token - Cannot parse access token"
    assert err["fbtrace_id"]


def test_appsecret_proof_right_wrong_missing(make_sandbox, client):
    sb = make_sandbox(app_secret=SECRET)
    ok = client.get(ads_url(sb), params={"appsecret_proof": _proof(TOKEN)}, timeout=10)
    assert ok.status_code == 200
    nxt = ok.json()["paging"]["next"]
    assert client.get(nxt, timeout=10).status_code == 200  # next repeats the proof
    wrong = client.get(ads_url(sb), params={"appsecret_proof": _proof(TOKEN, "other")}, timeout=10)
    err = error_of(wrong)
    assert (wrong.status_code, err["code"], err["type"]) == (400, 100, "GraphMethodException")
    assert err["message"] == "Invalid appsecret_proof provided in the API argument"
    missing = client.get(ads_url(sb), timeout=10)
    err = error_of(missing)
    assert (missing.status_code, err["code"], err["type"]) == (400, 100, "GraphMethodException")
    assert "appsecret_proof" in err["message"]


@pytest.mark.parametrize("version", ["v25", "latest", "v25.0.1"])
def test_malformed_version_is_2635(sandbox, client, version):
    resp = client.get(f"{sandbox.url}/{version}/act_1001/ads", timeout=10)
    assert resp.status_code == 400
    assert error_of(resp)["code"] == 2635


def test_any_version_is_served(sandbox, client):
    resp = client.get(f"{sandbox.url}/v24.0/act_1001/ads", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["facebook-api-version"] == "v24.0"


def test_unknown_edge_is_100(sandbox, client):
    resp = client.get(f"{sandbox.url}/v25.0/act_1001/nonsense", timeout=10)
    err = error_of(resp)
    assert err["code"] == 100
    assert "nonsense" in err["message"]


def test_only_id_without_fields(sandbox, client):
    rows = client.get(ads_url(sandbox), timeout=10).json()["data"]
    assert all(set(r) == {"id"} for r in rows)


def test_fields_gives_only_those(sandbox, client):
    rows = client.get(ads_url(sandbox), params={"fields": "name,effective_status"}, timeout=10).json()["data"]
    assert all(set(r) == {"name", "effective_status"} for r in rows)


def test_all_fields_match_the_truth(sandbox, client):
    rows, _ = fetch_all(client, ads_url(sandbox, "1002"), {"fields": ",".join(AD_FIELDS), "limit": 100})
    assert rows == sandbox.visible_ads("1002")


@pytest.mark.parametrize("fields", ["id,foo", "creative{id,name}", "targeting.age_min"])
def test_unknown_or_nested_field_is_100(sandbox, client, fields):
    resp = client.get(ads_url(sandbox), params={"fields": fields}, timeout=10)
    assert resp.status_code == 400
    err = error_of(resp)
    assert err["code"] == 100
    if fields == "id,foo":
        assert err["message"] == "(#100) Tried accessing nonexisting field (foo) on node type (Ad)"


def test_ad_shapes_are_metas():
    from tap_meta_ads_sandbox import SandboxConfig, SandboxServer

    with SandboxServer(SandboxConfig(accounts={"1001": 400, "77": 50})) as sb:
        ads = sb.visible_ads("1001", list(EFFECTIVE_STATUSES))
        other = sb.visible_ads("77", list(EFFECTIVE_STATUSES))
    time_re = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}$")
    ids = [a["id"] for a in ads] + [a["id"] for a in other]
    assert len(set(ids)) == len(ids)
    for ad in ads:
        assert ad["id"].isdigit()
        assert ad["account_id"] == "1001"
        assert ad["adset"] == {"id": ad["adset_id"]}
        assert ad["campaign"] == {"id": ad["campaign_id"]}
        assert set(ad["creative"]) == {"id"}
        assert isinstance(ad["bid_amount"], int)
        assert isinstance(ad["bid_info"], dict)
        assert time_re.match(ad["created_time"])
        assert time_re.match(ad["updated_time"])
        assert _epoch(ad["created_time"]) <= _epoch(ad["updated_time"]) < datetime(2026, 1, 1).timestamp()
        assert ad["effective_status"] in EFFECTIVE_STATUSES
        assert ad["status"] == ad["configured_status"]
        assert isinstance(ad["targeting"]["geo_locations"]["countries"], list)
        assert isinstance(ad["targeting"]["age_min"], int)
        assert ad["tracking_specs"][0]["action.type"] == ["offsite_conversion"]
        assert all(isinstance(v, list) for spec in ad["tracking_specs"] for v in spec.values())
        assert set(ad) <= set(AD_FIELDS)
    statuses = {a["effective_status"] for a in ads}
    assert {"ACTIVE", "PAUSED", "ARCHIVED", "DELETED"} <= statuses
    updated = [_epoch(a["updated_time"]) for a in ads]
    assert updated != sorted(updated)
    assert min(updated) < datetime(2024, 1, 1).timestamp() < max(updated)
    # ad sets and campaigns group several ads each
    assert len({a["adset_id"] for a in ads}) < len(ads)
    assert len({a["campaign_id"] for a in ads}) < len({a["adset_id"] for a in ads})


def test_same_seed_same_data_other_seed_other_data(make_sandbox):
    a, b, c = make_sandbox(seed=1), make_sandbox(seed=1), make_sandbox(seed=2)
    assert a.visible_ads("1002") == b.visible_ads("1002")
    assert a.visible_ads("1002") != c.visible_ads("1002")


def test_updated_time_greater_than_returns_exactly_the_newer_ads(sandbox, client):
    truth = sandbox.visible_ads("1001")
    cut = sorted(_epoch(a["updated_time"]) for a in truth)[len(truth) // 2]
    for field in ("updated_time", "ad.updated_time"):
        filtering = json.dumps([{"field": field, "operator": "GREATER_THAN", "value": cut}])
        rows, _ = fetch_all(client, ads_url(sandbox), {"filtering": filtering, "limit": 40})
        assert [r["id"] for r in rows] == [a["id"] for a in truth if _epoch(a["updated_time"]) > cut]


def test_updated_time_less_than(sandbox, client):
    truth = sandbox.visible_ads("1001")
    cut = sorted(_epoch(a["updated_time"]) for a in truth)[10]
    filtering = json.dumps([{"field": "ad.updated_time", "operator": "LESS_THAN", "value": str(cut)}])
    rows, _ = fetch_all(client, ads_url(sandbox), {"filtering": filtering})
    assert [r["id"] for r in rows] == [a["id"] for a in truth if _epoch(a["updated_time"]) < cut]
    assert len(rows) == 10


def test_effective_status_param_shows_archived_and_deleted(sandbox, client):
    statuses = ["ACTIVE", "ARCHIVED", "DELETED"]
    rows, _ = fetch_all(
        client,
        ads_url(sandbox),
        {"effective_status": json.dumps(statuses), "fields": "id,effective_status", "limit": 100},
    )
    assert [r["id"] for r in rows] == [a["id"] for a in sandbox.visible_ads("1001", statuses)]
    assert {r["effective_status"] for r in rows} == set(statuses)


@pytest.mark.parametrize("field", ["effective_status", "ad.effective_status"])
def test_filtering_effective_status_in_and_not_in(sandbox, client, field):
    f_in = json.dumps([{"field": field, "operator": "IN", "value": ["ARCHIVED", "DELETED"]}])
    rows, _ = fetch_all(client, ads_url(sandbox), {"filtering": f_in, "fields": "id,effective_status", "limit": 100})
    assert rows
    assert [r["id"] for r in rows] == [a["id"] for a in sandbox.visible_ads("1001", ["ARCHIVED", "DELETED"])]
    f_not = json.dumps([{"field": field, "operator": "NOT_IN", "value": ["ACTIVE"]}])
    rows, _ = fetch_all(client, ads_url(sandbox), {"filtering": f_not, "fields": "id,effective_status", "limit": 100})
    expected = [s for s in EFFECTIVE_STATUSES if s not in ("ACTIVE", "ARCHIVED", "DELETED")]
    assert [r["id"] for r in rows] == [a["id"] for a in sandbox.visible_ads("1001", expected)]


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("filtering", "not json"),
        ("filtering", '{"field": "updated_time"}'),
        ("filtering", '[{"field": "updated_time", "operator": "GREATER_THAN"}]'),
        ("filtering", '[{"field": "updated_time", "operator": "GREATER_THAN", "value": "yesterday"}]'),
        ("filtering", '[{"field": "name", "operator": "CONTAIN", "value": "x"}]'),
        ("filtering", '[{"field": "effective_status", "operator": "IN", "value": ["SLEEPING"]}]'),
        ("effective_status", "ACTIVE"),
        ("effective_status", '["ACTIVE", 3]'),
    ],
)
def test_malformed_filters_are_100(sandbox, client, param, value):
    resp = client.get(ads_url(sandbox), params={param: value}, timeout=10)
    assert resp.status_code == 400
    assert error_of(resp)["code"] == 100
