"""Control endpoints and stats: mutations, the virtual clock, ground truth, counting, bad input."""

from __future__ import annotations

import email.utils
import json
import time
from datetime import datetime

import pytest
import requests

from .conftest import TOKEN, ads_url, error_of, fetch_all


def _epoch(meta_time: str) -> int:
    return int(datetime.strptime(meta_time, "%Y-%m-%dT%H:%M:%S%z").timestamp())


def test_stats_count_requests_outcomes_accounts_and_token_in_url(sandbox, client):
    client.get(ads_url(sandbox), params={"limit": 10}, timeout=10)
    client.get(ads_url(sandbox, "1002"), params={"fields": "nope"}, timeout=10)
    requests.get(ads_url(sandbox), params={"access_token": TOKEN, "limit": 3}, timeout=10)
    requests.get(ads_url(sandbox), params={"access_token": "wrong"}, timeout=10)
    requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10)  # control requests do not count
    # The three one-shot calls' connections, closed by their clients; the session's stays open.
    assert sandbox.wait_connections_closed(3)
    stats = sandbox.stats()
    assert stats["connections"] == 4
    assert stats["connections_closed"] == 3
    assert stats["requests"] == 4
    assert stats["by_route"] == {"ads": 4}
    assert stats["by_outcome"] == {"ok": 2, "error:100": 1, "error:190": 1}
    assert stats["by_account"] == {"1001": 3, "1002": 1}
    assert stats["token_in_url"] == 2
    assert stats["records_served"] == 13
    assert stats["throttled"] == 0
    assert stats["faulted"] == 0
    assert [e["n"] for e in stats["log"]] == [1, 2, 3, 4]
    assert stats["log"][0]["params"] == {"limit": "10"}
    assert stats["log"][1]["params"] == {"fields": "nope"}
    assert all("access_token" not in e["params"] for e in stats["log"])
    assert stats["log"][2]["rows"] == 3
    assert stats["log"][3]["status"] == 400
    over_http = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()
    assert over_http.pop("connections") == stats.pop("connections") + 1  # the control call's own connection
    assert over_http == stats


def test_stats_reset_over_http_and_python(sandbox, client):
    client.get(ads_url(sandbox), timeout=10)
    assert requests.post(f"{sandbox.url}/_sandbox/stats/reset", timeout=10).json() == {"ok": True}
    assert sandbox.stats()["requests"] == 0
    client.get(ads_url(sandbox), timeout=10)
    sandbox.reset_stats()
    assert sandbox.stats()["log"] == []


def test_log_shows_a_resumed_run_starting_from_a_cursor(sandbox, client):
    doc = client.get(ads_url(sandbox), params={"limit": 50}, timeout=10).json()
    sandbox.reset_stats()
    client.get(doc["paging"]["next"], timeout=10)
    assert "after" in sandbox.stats()["log"][0]["params"]


def test_mutate_bumps_updated_time_strictly_and_incremental_filter_sees_exactly_them(sandbox, client):
    before = {ad["id"]: ad for ad in sandbox.visible_ads("1001")}
    newest = max(_epoch(ad["updated_time"]) for ad in before.values())
    first = sandbox.mutate("1001", update=5, create=2, delete=1)
    assert len(first["updated"]) == 5
    assert len(first["created"]) == 2
    assert len(first["deleted"]) == 1
    assert set(first["updated"]) <= set(before)
    assert first["deleted"][0] in before
    assert not set(first["created"]) & set(before)
    after = {ad["id"]: ad for ad in sandbox.visible_ads("1001")}
    stamp1 = {_epoch(after[i]["updated_time"]) for i in first["updated"] + first["created"]}
    assert len(stamp1) == 1
    assert min(stamp1) > newest
    assert first["deleted"][0] not in after
    deleted = [ad for ad in sandbox.visible_ads("1001", ["DELETED"]) if ad["id"] == first["deleted"][0]]
    assert deleted[0]["status"] == "DELETED"
    assert _epoch(deleted[0]["updated_time"]) == min(stamp1)
    for i in first["updated"]:
        assert after[i]["name"] != before[i]["name"]
        assert after[i]["created_time"] == before[i]["created_time"]

    second = sandbox.mutate("1001", update=1)  # same second of the clock: still strictly later
    ad2 = next(ad for ad in sandbox.visible_ads("1001") if ad["id"] == second["updated"][0])
    stamp2 = _epoch(ad2["updated_time"])
    assert stamp2 > min(stamp1)

    rows, _ = fetch_all(
        client,
        ads_url(sandbox),
        {
            "limit": 100,
            "fields": "id,updated_time",
            "filtering": json.dumps([{"field": "ad.updated_time", "operator": "GREATER_THAN", "value": newest}]),
        },
    )
    assert sorted(r["id"] for r in rows) == sorted(set(first["updated"] + first["created"] + second["updated"]))


def test_mutate_over_http_and_explicit_ids(sandbox):
    target = sandbox.visible_ads("1002")[3]["id"]
    resp = requests.post(
        f"{sandbox.url}/_sandbox/mutate", json={"account_id": "1002", "update_ids": [target]}, timeout=10
    )
    assert resp.status_code == 200
    assert resp.json() == {"updated": [target], "created": [], "deleted": []}


def test_mutations_are_deterministic_for_a_seed(make_sandbox):
    a, b = make_sandbox(seed=7), make_sandbox(seed=7)
    assert a.mutate("1001", update=4, delete=2) == b.mutate("1001", update=4, delete=2)


def test_clock_moves_date_header_and_stamps(sandbox, client):
    resp = client.get(ads_url(sandbox), timeout=10)
    date0 = email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp()
    assert abs(date0 - time.time()) < 5
    new_now = requests.post(f"{sandbox.url}/_sandbox/clock", json={"advance_seconds": 86400}, timeout=10).json()["now"]
    assert new_now >= date0 + 86400
    date1 = email.utils.parsedate_to_datetime(client.get(ads_url(sandbox), timeout=10).headers["Date"]).timestamp()
    assert date1 >= date0 + 86400
    ids = sandbox.mutate("1001", update=1)["updated"]
    ad = next(a for a in sandbox.visible_ads("1001") if a["id"] == ids[0])
    assert _epoch(ad["updated_time"]) >= int(date0) + 86400


def test_truth_endpoint_matches_python_truth(sandbox):
    base = f"{sandbox.url}/_sandbox/truth/act_1002/ads"
    assert requests.get(base, timeout=10).json() == {"data": sandbox.visible_ads("1002")}
    statuses = ["ARCHIVED", "DELETED"]
    hidden = requests.get(base, params={"effective_status": json.dumps(statuses)}, timeout=10).json()["data"]
    assert hidden == sandbox.visible_ads("1002", statuses)
    assert {ad["effective_status"] for ad in hidden} == {"ARCHIVED", "DELETED"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_sandbox/mutate", {"account_id": "9999", "update": 1}),
        ("/_sandbox/mutate", {"account_id": "1001", "update": "many"}),
        ("/_sandbox/mutate", {"account_id": "1001", "update": -1}),
        ("/_sandbox/mutate", {"account_id": "1001", "updat": 1}),
        ("/_sandbox/mutate", {"update": 1}),
        ("/_sandbox/mutate", {"account_id": "1001", "update_ids": ["123"]}),
        ("/_sandbox/mutate", {"account_id": "1002", "delete": 10_000}),
        ("/_sandbox/clock", {"advance_seconds": -5}),
        ("/_sandbox/clock", {"advance_seconds": "soon"}),
        ("/_sandbox/faults", {"faults": ["explode@1"]}),
        ("/_sandbox/faults", {"faults": ["http503@0"]}),
        ("/_sandbox/faults", {"faults": ["http503@x"]}),
        ("/_sandbox/faults", {"faults": ["http503~1.5"]}),
        ("/_sandbox/faults", {"faults": "http503@1"}),
        ("/_sandbox/config", {"throttle_code": "42"}),
        ("/_sandbox/config", {"account_budget": 0}),
        ("/_sandbox/config", {"usage_headers": "no"}),
        ("/_sandbox/config", {"window": 5}),
    ],
)
def test_bad_control_input_is_a_one_line_400(sandbox, path, body):
    resp = requests.post(f"{sandbox.url}{path}", json=body, timeout=10)
    assert resp.status_code == 400, resp.text
    doc = resp.json()
    assert set(doc) == {"error"}
    assert isinstance(doc["error"], str)
    assert doc["error"]
    assert "\n" not in doc["error"]
    assert "Traceback" not in doc["error"]


def test_non_json_control_body_and_unknown_endpoint(sandbox):
    resp = requests.post(f"{sandbox.url}/_sandbox/mutate", data=b"{not json", timeout=10)
    assert resp.status_code == 400
    assert "JSON" in resp.json()["error"]
    assert requests.get(f"{sandbox.url}/_sandbox/nothing", timeout=10).status_code == 404


def test_control_requests_keep_the_server_healthy(sandbox, client):
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"faults": ["nope"]}, timeout=10)
    assert client.get(ads_url(sandbox), timeout=10).status_code == 200


def test_unknown_account_is_100_33(sandbox, client):
    resp = client.get(ads_url(sandbox, "4242"), timeout=10)
    assert resp.status_code == 400
    err = error_of(resp)
    assert (err["code"], err["error_subcode"]) == (100, 33)
    assert "act_4242" in err["message"]


def test_latency_delays_every_graph_answer_but_not_control(make_sandbox, client):
    sb = make_sandbox(latency_seconds=0.3)
    start = time.perf_counter()
    assert client.get(ads_url(sb), timeout=10).status_code == 200
    assert time.perf_counter() - start >= 0.3
    start = time.perf_counter()
    requests.get(f"{sb.url}/_sandbox/stats", timeout=10)
    assert time.perf_counter() - start < 0.3


def test_bad_content_length_gets_a_400_not_a_crash(sandbox):
    import socket

    with socket.create_connection((sandbox.host, sandbox.port), timeout=10) as sock:
        sock.sendall(b"POST /_sandbox/mutate HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"Content-Length" in answer
