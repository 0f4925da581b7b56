"""Issue 21 in the sandbox: the change log and the library edges, signed file URLs, what Meta cannot serve, tokens."""

from __future__ import annotations

import hashlib
import urllib.parse
from datetime import datetime

import pytest
import requests

from .conftest import TOKEN, VERSION, error_of, fetch_all

LIBRARY = ("activities", "customaudiences", "saved_audiences", "adspixels", "adrules_library", "adlabels")


def _epoch(meta_time: str) -> int:
    return int(datetime.strptime(meta_time, "%Y-%m-%dT%H:%M:%S%z").timestamp())


@pytest.mark.parametrize("edge", LIBRARY)
def test_each_library_edge_pages_its_truth_and_takes_no_filtering(sandbox, client, edge):
    url = f"{sandbox.url}/{VERSION}/act_1001/{edge}"
    truth = sandbox.visible(edge, "1001")
    fields = ",".join(sorted({k for row in truth for k in row}))
    rows, _ = fetch_all(client, url, {"fields": fields, "limit": 3})
    assert rows == truth and len(truth) >= 2
    refused = client.get(url, params={"filtering": "[]"}, timeout=10)
    assert refused.status_code == 400 and error_of(refused)["code"] == 100


def test_the_change_log_takes_since_and_until_both_inclusive(sandbox, client):
    url = f"{sandbox.url}/{VERSION}/act_1001/activities"
    times = sorted(_epoch(r["event_time"]) for r in sandbox.visible("activities", "1001"))
    since, until = times[10], times[20]
    rows, _ = fetch_all(client, url, {"fields": "event_time", "since": str(since), "until": str(until), "limit": 4})
    assert sorted(_epoch(r["event_time"]) for r in rows) == times[10:21]
    day, _ = fetch_all(client, url, {"fields": "event_time", "since": "2025-06-01", "until": "2025-06-30"})
    assert all("2025-06-01" <= r["event_time"][:10] <= "2025-06-30" for r in day) and day
    for edge in ("ads", "adlabels"):
        refused = client.get(f"{sandbox.url}/{VERSION}/act_1001/{edge}", params={"since": "1"}, timeout=10)
        assert refused.status_code == 400 and error_of(refused)["code"] == 100


def test_mutations_append_one_change_log_entry_per_touched_object(sandbox):
    before = len(sandbox.visible("activities", "1001"))
    touched = sandbox.mutate("1001", update=2, create=1, delete=1)
    log = sandbox.visible("activities", "1001")[before:]
    assert [(e["event_type"], e["object_id"]) for e in log] == [
        *[("create_ad", i) for i in touched["created"]],
        *[("update_ad_run_status", i) for i in touched["updated"]],
        *[("delete_ad", i) for i in touched["deleted"]],
    ]
    assert len({_epoch(e["event_time"]) for e in log}) == 1 and _epoch(log[0]["event_time"]) <= sandbox.now()
    with pytest.raises(ValueError, match="activities are appended"):
        sandbox.mutate("1001", edge="activities", create=1)


def test_signed_file_urls_serve_the_file_until_they_expire(make_sandbox):
    sandbox = make_sandbox(accounts={"1001": 100})
    image = sandbox.visible("adimages", "1001")[0]
    files = sandbox.asset_files("1001")
    answer = requests.get(image["url"], timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/jpeg"
    assert answer.content == files[image["url"].split("?")[0]][0] and answer.content[:2] == b"\xff\xd8"
    thumb = sandbox.visible("adcreatives", "1001")[0]["thumbnail_url"]
    assert requests.get(thumb, timeout=10).headers["Content-Type"] == "image/png"
    forged = image["url"].replace("oh=00_", "oh=00_0")
    assert (requests.get(forged, timeout=10).status_code, requests.get(forged, timeout=10).text) == (
        403,
        "Bad URL hash",
    )
    expiry = int(urllib.parse.parse_qs(urllib.parse.urlsplit(image["url"]).query)["oe"][0], 16)
    sandbox.advance_clock(expiry - sandbox.now() + 1)
    expired = requests.get(image["url"], timeout=10)
    assert (expired.status_code, expired.text) == (403, "URL signature expired")
    assert all(not r["authorization"] for r in sandbox.cdn_requests())


def test_an_incomplete_creative_fails_its_page_and_its_node_but_not_an_ids_only_read(make_sandbox, client):
    sandbox = make_sandbox(accounts={"1001": 100}, incomplete_creative_every=10)
    url = f"{sandbox.url}/{VERSION}/act_1001/adcreatives"
    page = client.get(url, params={"fields": "id,name", "limit": 20}, timeout=10)
    error = error_of(page)
    assert (page.status_code, error["code"], error["error_subcode"]) == (400, 100, 2446289)
    assert error["error_user_title"] == "Ad Creative Is Incomplete"
    ids, _ = fetch_all(client, url, {"fields": "id", "limit": 20})
    assert len(ids) == len(sandbox.visible("adcreatives", "1001"))
    bad, good = ids[9]["id"], ids[8]["id"]
    assert (
        error_of(client.get(f"{sandbox.url}/{VERSION}/{bad}", params={"fields": "id,name"}, timeout=10))[
            "error_subcode"
        ]
        == 2446289
    )
    node = client.get(f"{sandbox.url}/{VERSION}/{good}", params={"fields": "id,name"}, timeout=10)
    assert node.json() == {k: v for k, v in sandbox.visible("adcreatives", "1001")[8].items() if k in ("id", "name")}


def test_a_heavy_audience_rule_fails_any_page_that_asks_for_it(make_sandbox, client):
    sandbox = make_sandbox(accounts={"1001": 300}, heavy_rule_every=2)
    url = f"{sandbox.url}/{VERSION}/act_1001/customaudiences"
    one = client.get(url, params={"fields": "id,rule", "limit": 1, "after": ""}, timeout=10)
    assert one.status_code == 200  # audience 0 is fine
    rows, _ = fetch_all(client, url, {"fields": "id,name", "limit": 1})
    assert len(rows) == len(sandbox.visible("customaudiences", "1001"))
    heavy = client.get(url, params={"fields": "id,rule", "limit": 2}, timeout=10)
    assert heavy.status_code == 500 and "reduce the amount of data" in error_of(heavy)["message"]


def test_debug_token_describes_tokens_and_tokens_answer_as_meta_does(sandbox, client):
    sandbox.set_token("expired-token", expires_in_seconds=-60)
    sandbox.set_token("no-ads-token", scopes=["pages_show_list"])
    sandbox.set_token("one-account-token", accounts=["1001"])
    sandbox.set_token("outsider-token", can_inspect=False)

    def debug(input_token, caller=TOKEN):
        answer = requests.get(
            f"{sandbox.url}/{VERSION}/debug_token",
            params={"input_token": input_token},
            headers={"Authorization": f"Bearer {caller}"},
            timeout=10,
        )
        return answer.status_code, answer.json()

    status, doc = debug(TOKEN)
    assert status == 200 and doc["data"]["is_valid"] is True and "ads_read" in doc["data"]["scopes"]
    assert 59 * 86400 < doc["data"]["expires_at"] - sandbox.now() <= 60 * 86400
    status, doc = debug("expired-token")
    assert doc["data"]["is_valid"] is False and doc["data"]["error"]["subcode"] == 463
    assert debug("unknown")[1]["data"] == {
        "error": {"code": 190, "message": "Invalid OAuth access token."},
        "is_valid": False,
        "scopes": [],
    }
    status, doc = debug(TOKEN, caller="outsider-token")
    assert status == 400 and doc["error"]["code"] == 100

    def use(token, account):
        answer = requests.get(
            f"{sandbox.url}/{VERSION}/act_{account}", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        return answer.status_code, (answer.json().get("error") or {})

    assert use("expired-token", "1001")[1]["code"] == 190
    assert use("no-ads-token", "1001")[1]["code"] == 200
    assert use("one-account-token", "1001")[0] == 200
    assert (use("one-account-token", "1002")[1]["code"], use("one-account-token", "1002")[1]["error_subcode"]) == (
        100,
        33,
    )


def test_the_files_truth_endpoint_lists_each_file_with_its_hash(sandbox):
    doc = requests.get(f"{sandbox.url}/_sandbox/truth/act_1002/files", timeout=10).json()
    files = sandbox.asset_files("1002")
    assert {f["url"] for f in doc["data"]} == set(files)
    for entry in doc["data"]:
        content, mime = files[entry["url"]]
        assert (entry["sha256"], entry["size"], entry["mime_type"]) == (
            hashlib.sha256(content).hexdigest(),
            len(content),
            mime,
        )
