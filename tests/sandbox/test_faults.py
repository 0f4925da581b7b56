"""Faults on demand: each kind fires exactly as scheduled, probabilities are reproducible, bad specs fail."""

from __future__ import annotations

import json

import pytest
import requests
from tap_meta_ads_sandbox import FaultPlan, parse_fault_spec

from .conftest import ads_url, error_of

# kind -> (HTTP status, code, subcode, is_transient)
JSON_FAULTS = {
    "code1": (500, 1, None, False),
    "code2": (503, 2, None, True),
    "transient": (400, 2, None, True),
    "reduce": (500, 1, None, False),
    "token_expired": (400, 190, 463, False),
    "permission": (400, 200, None, False),
    "param": (400, 100, None, False),
    "unknown_object": (400, 100, 33, False),
    "unknown_code": (400, 99999, None, False),
    "deprecated_version": (400, 2635, None, False),
    "blocked": (400, 368, 1404078, False),
    "aborted": (400, 960, None, True),
    "expired_cursor": (400, 2642, 2642001, False),
    "throttle:4": (400, 4, None, True),
    "throttle:17": (400, 17, None, True),
    "throttle:17/2446079": (400, 17, 2446079, True),
    "throttle:32": (400, 32, None, True),
    "throttle:613": (400, 613, None, True),
    "throttle:80000": (400, 80000, 2446079, True),
    "throttle:80004": (400, 80004, 2446079, True),
    "throttle:80001": (400, 80001, None, True),
    "throttle:80014": (400, 80014, None, True),
}


def _outcomes(sb, client, n):
    statuses = []
    for _ in range(n):
        statuses.append(client.get(ads_url(sb), timeout=10).status_code)
    return statuses


@pytest.mark.parametrize("kind", sorted(JSON_FAULTS))
def test_json_fault_fires_on_exactly_the_scheduled_request(make_sandbox, client, kind):
    sb = make_sandbox(faults=FaultPlan([f"{kind}@2"]))
    status, code, subcode, transient = JSON_FAULTS[kind]
    assert client.get(ads_url(sb), timeout=10).status_code == 200
    resp = client.get(ads_url(sb), timeout=10)
    assert resp.status_code == status
    err = error_of(resp)
    assert err["code"] == code
    assert err.get("error_subcode") == subcode
    assert err["is_transient"] is transient
    assert err["message"]
    assert client.get(ads_url(sb), timeout=10).status_code == 200
    assert sb.stats()["by_outcome"] == {"ok": 2, f"fault:{kind}": 1}
    assert sb.stats()["faulted"] == 1


@pytest.mark.parametrize(("kind", "status"), [("http500", 500), ("http502", 502), ("http503", 503), ("http504", 504)])
def test_html_faults(make_sandbox, client, kind, status):
    sb = make_sandbox(faults=FaultPlan([f"{kind}@1"]))
    resp = client.get(ads_url(sb), timeout=10)
    assert resp.status_code == status
    assert resp.headers["Content-Type"].startswith("text/html")
    assert resp.text.startswith("<html>")
    assert str(status) in resp.text
    assert client.get(ads_url(sb), timeout=10).status_code == 200


def test_http429_has_retry_after(make_sandbox, client):
    sb = make_sandbox(faults=FaultPlan(["http429@1"], retry_after_seconds=7))
    resp = client.get(ads_url(sb), timeout=10)
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "7"


@pytest.mark.parametrize("kind", ["reset", "truncated"])
def test_broken_connections_fail_the_client_and_the_next_request_works(make_sandbox, client, kind):
    sb = make_sandbox(faults=FaultPlan([f"{kind}@2"]))
    assert client.get(ads_url(sb), params={"limit": 100, "fields": "id,name"}, timeout=10).status_code == 200
    with pytest.raises(requests.exceptions.RequestException) as info:
        client.get(ads_url(sb), params={"limit": 100, "fields": "id,name"}, timeout=10).json()
    assert isinstance(info.value, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError))
    assert client.get(ads_url(sb), params={"limit": 100}, timeout=10).status_code == 200
    assert sb.stats()["by_outcome"][f"fault:{kind}"] == 1


def test_reset_is_a_tcp_reset_not_an_eof(make_sandbox):
    import socket

    sb = make_sandbox(faults=FaultPlan(["reset@1"]))
    with socket.create_connection((sb.host, sb.port), timeout=10) as sock:
        sock.sendall(
            b"GET /v25.0/act_1001/ads?access_token=sandbox-token&limit=200&fields=id,name HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        received = b""
        with pytest.raises(ConnectionResetError):  # noqa: PT012 - reading until the reset is the point
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
    assert received.startswith(b"HTTP/1.1 200")


def test_truncated_sends_full_length_but_half_the_body(make_sandbox):
    import http.client

    sb = make_sandbox(faults=FaultPlan(["truncated@1"]))
    conn = http.client.HTTPConnection(sb.host, sb.port, timeout=10)
    conn.request("GET", "/v25.0/act_1001/ads?access_token=sandbox-token&limit=100")
    resp = conn.getresponse()
    assert resp.status == 200
    length = int(resp.getheader("Content-Length"))
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    assert 0 < len(info.value.partial) < length
    conn.close()


def test_slow_answer_times_the_client_out(make_sandbox, client):
    sb = make_sandbox(faults=FaultPlan(["slow@1"], slow_seconds=20))
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.get(ads_url(sb), timeout=0.5)
    assert client.get(ads_url(sb), timeout=10).status_code == 200
    assert sb.stats()["by_outcome"]["fault:slow"] == 1


def test_schedule_lists_ranges_and_after(make_sandbox, client):
    sb = make_sandbox(faults=FaultPlan(["http503@2,4-5", "token_expired@after:7"]))
    assert _outcomes(sb, client, 9) == [200, 503, 200, 503, 503, 200, 200, 400, 400]


def test_first_rule_wins_and_control_requests_do_not_count(make_sandbox, client):
    sb = make_sandbox(faults=FaultPlan(["http502@2", "http503@1,2"]))
    assert client.get(ads_url(sb), timeout=10).status_code == 503
    requests.get(f"{sb.url}/_sandbox/stats", timeout=10)
    assert client.get(ads_url(sb), timeout=10).status_code == 502


def test_account_rule_hits_only_that_account_and_counts_its_requests(make_sandbox, client):
    sb = make_sandbox(faults=FaultPlan(["act_1002:permission@2,after:3", "act_1001:http503~1*1"]))
    order = ["1002", "1001", "1001", "1002", "1002", "1002", "1001"]
    statuses = [client.get(ads_url(sb, acct), timeout=10).status_code for acct in order]
    # 1002 fails on its own 2nd and 4th+ requests, whatever 1001 did in between; 1001's rule fires once.
    assert statuses == [200, 503, 200, 400, 200, 400, 200]
    assert sb.stats()["by_outcome"] == {"ok": 4, "fault:permission": 2, "fault:http503": 1}
    requests.post(f"{sb.url}/_sandbox/faults", json={"faults": ["act_1001:token_expired@after:0"]}, timeout=10)
    assert error_of(client.get(ads_url(sb, "1001"), timeout=10))["code"] == 190
    assert client.get(ads_url(sb, "1002"), timeout=10).status_code == 200


def test_set_faults_restarts_numbering_and_empty_plan_clears(sandbox, client):
    _outcomes(sandbox, client, 3)
    sandbox.set_faults(FaultPlan(["http500@1"]))
    assert _outcomes(sandbox, client, 2) == [500, 200]
    resp = requests.post(f"{sandbox.url}/_sandbox/faults", json={"faults": ["http504@2"]}, timeout=10)
    assert resp.json() == {"faults": ["http504@2"], "seed": 0}
    assert _outcomes(sandbox, client, 3) == [200, 504, 200]
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"faults": ["http504@1"]}, timeout=10)
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"faults": []}, timeout=10)
    assert _outcomes(sandbox, client, 2) == [200, 200]


def test_probability_faults_are_reproducible_with_a_seed(make_sandbox, client):
    def run(seed):
        sb = make_sandbox(faults=FaultPlan(["http503~0.3"], seed=seed))
        return _outcomes(sb, client, 60)

    first, again, other = run(5), run(5), run(6)
    assert first == again
    assert first != other
    assert 5 <= first.count(503) <= 35


def test_probability_with_cap_fires_at_most_k_times(make_sandbox, client):
    sb = make_sandbox(faults=FaultPlan(["http500~1*3"]))
    assert _outcomes(sb, client, 6) == [500, 500, 500, 200, 200, 200]


def test_probability_faults_via_control_endpoint_with_seed(sandbox, client):
    doc = {"faults": ["transient~0.5"], "seed": 11}
    requests.post(f"{sandbox.url}/_sandbox/faults", json=doc, timeout=10)
    first = _outcomes(sandbox, client, 30)
    requests.post(f"{sandbox.url}/_sandbox/faults", json=doc, timeout=10)
    assert _outcomes(sandbox, client, 30) == first
    assert 400 in first
    assert 200 in first


@pytest.mark.parametrize(
    "spec",
    [
        "explode@1",
        "http503",
        "http503@",
        "http503@0",
        "http503@x",
        "http503@3-1",
        "http503@after:",
        "http503~0",
        "http503~1.5",
        "http503~abc",
        "http503~0.5*0",
        "throttle:99@1",
        "throttle:@1",
        "throttle:17/x@1",
        "act_:http503@1",
        "act_12:explode@1",
        "act_12:",
    ],
)
def test_bad_specs_raise_value_error_with_one_line(spec):
    with pytest.raises(ValueError, match=r"fault") as info:
        parse_fault_spec(spec)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"fault"):
        FaultPlan([spec])


def test_good_specs_parse():
    rule = parse_fault_spec("throttle:17/2446079@3,5-6,after:10")
    assert rule.kind == "throttle:17/2446079"
    assert [n for n in range(1, 13) if rule.scheduled(n)] == [3, 5, 6, 11, 12]
    prob = parse_fault_spec("reset~0.25*4")
    assert (prob.kind, prob.probability, prob.max_times) == ("reset", 0.25, 4)
    targeted = parse_fault_spec("act_1005:throttle:17/2446079@1")
    assert (targeted.kind, targeted.account_id, targeted.exact) == ("throttle:17/2446079", "1005", frozenset({1}))
    assert parse_fault_spec("http503@1").account_id is None


def test_throttle_fault_keeps_usage_headers_truthful(make_sandbox, client):
    sb = make_sandbox(faults=FaultPlan(["throttle:80004@2"]), account_budget=10)
    client.get(ads_url(sb), timeout=10)
    resp = client.get(ads_url(sb), timeout=10)
    assert error_of(resp)["code"] == 80004
    assert json.loads(resp.headers["x-business-use-case-usage"])["1001"][0]["call_count"] == 10
