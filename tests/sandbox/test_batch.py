"""Batch requests: many calls in one POST, each answered, limited, faulted and counted as if sent alone."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from tap_meta_ads_sandbox import FaultPlan, SandboxServer

from .conftest import TOKEN, VERSION, error_of

RANGE = json.dumps({"since": "2025-03-01", "until": "2025-03-07"})
REPORT = {"level": "ad", "fields": "ad_id,impressions", "time_range": RANGE}
SUBMIT = urlencode(REPORT)  # the same report as an entry's body


def get(relative_url: str) -> dict[str, str]:
    """One GET entry of a batch."""
    return {"method": "GET", "relative_url": relative_url}


def send(
    session: requests.Session, sb: SandboxServer, entries: list[Any], path: str = f"/{VERSION}/", **params: str
) -> requests.Response:
    """POST a batch as the Business SDK does: a form with the ``batch`` JSON."""
    return session.post(f"{sb.url}{path}", data={"batch": json.dumps(entries), **params}, timeout=10)


def answers(resp: requests.Response) -> list[dict[str, Any] | None]:
    """The batch's answers (fails the test unless the batch itself answered 200)."""
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert isinstance(doc, list)
    return doc


def headers_of(answer: dict[str, Any]) -> dict[str, str]:
    """An answer's name/value header pairs as a dict."""
    return {h["name"]: h["value"] for h in answer["headers"]}


def comparable(body: str) -> object:
    """A JSON body without what differs between two sandboxes by nature: trace ids, wall-clock seconds."""
    doc = json.loads(body)
    if isinstance(doc, dict):
        doc.get("error", {}).pop("fbtrace_id", None)
        for key in ("time_ref", "time_completed"):  # a report run's times: the second it was created, finished
            if key in doc:
                doc[key] = "a second"
    return doc


def _alone_url(sb: SandboxServer, relative_url: str) -> str:
    """The URL of an entry sent alone: the batch's version unless it names its own."""
    path = relative_url.lstrip("/")
    return f"{sb.url}/{path}" if path.startswith(VERSION) else f"{sb.url}/{VERSION}/{path}"


def _form(call: dict[str, str]) -> dict[str, str]:
    """The Content-Type a POST entry's body is sent alone with."""
    return {"Content-Type": "application/x-www-form-urlencoded"} if "body" in call else {}


def test_a_batch_answers_each_entry_as_the_call_alone(make_sandbox, client):
    # Twin sandboxes (same seed, same accounts) get the same calls: batched on one, one by one on the other.
    batched, alone = make_sandbox(seed=5), make_sandbox(seed=5)
    ad_1001 = batched.visible_ads("1001")[0]["id"]
    campaign_1002 = batched.visible("campaigns", "1002")[0]["id"]
    runs = []
    for sb in (batched, alone):
        ids = [
            client.post(f"{sb.url}/{VERSION}/act_{account}/insights", data=REPORT, timeout=10).json()["report_run_id"]
            for account in ("1001", "1002")
        ]
        runs.append(ids)
    assert runs[0] == runs[1]
    run_1001, run_1002 = runs[0]
    calls = [
        get("act_1001?fields=name,currency,timezone_name"),
        get(f"/{VERSION}/act_1002"),
        get(f"{ad_1001}?fields=id,name,effective_status"),
        get(f"{VERSION}/{campaign_1002}?fields=id,name"),
        get(run_1001),
        get(f"/{run_1002}"),
        get(run_1001),  # the second poll of the same run, as a second call alone would see it
        get(f"{run_1002}/insights"),  # not complete yet: refused as when sent alone
        get("act_4242?fields=name"),
        get("act_1001/nonexisting"),
        {"method": "POST", "relative_url": "act_1001/insights", "body": SUBMIT},
    ]
    got = answers(send(client, batched, calls))
    assert len(got) == len(calls)
    for call, answer in zip(calls, got, strict=True):
        assert answer is not None
        resp = client.request(
            call["method"],
            _alone_url(alone, call["relative_url"]),
            data=call.get("body"),
            headers=_form(call),
            timeout=10,
        )
        assert answer["code"] == resp.status_code, call
        assert comparable(answer["body"]) == comparable(resp.text), call
        assert headers_of(answer)["Content-Type"] == resp.headers["Content-Type"]
    assert {a["code"] for a in got if a is not None} == {200, 400}


def test_a_page_in_a_batch_links_its_next_page_for_a_call_alone(sandbox, client):
    answer = answers(send(client, sandbox, [get("act_1001/ads?fields=id,name&limit=4")]))[0]
    assert answer is not None
    page = json.loads(answer["body"])
    assert len(page["data"]) == 4
    nxt = client.get(page["paging"]["next"], timeout=10)
    assert nxt.status_code == 200
    truth = [{"id": ad["id"], "name": ad["name"]} for ad in sandbox.visible_ads("1001")[:8]]
    assert page["data"] + nxt.json()["data"] == truth


def test_relative_urls_with_or_without_version_and_slash(sandbox, client):
    urls = ["act_1001", "/act_1001", f"{VERSION}/act_1001", "/v24.0/act_1001"]
    got = answers(send(client, sandbox, [get(u) for u in urls], path="/v23.0/"))
    assert [a["code"] for a in got if a is not None] == [200] * 4
    assert [headers_of(a)["facebook-api-version"] for a in got if a is not None] == [
        "v23.0",
        "v23.0",
        VERSION,
        "v24.0",
    ]
    for path in ("/", "/v24.0"):  # the root without a version, a version without the slash
        answer = answers(send(client, sandbox, [get("act_1001")], path=path))[0]
        assert answer is not None
        assert answer["code"] == 200
    bad = answers(send(client, sandbox, [get("v25/act_1001")]))[0]
    assert bad is not None
    assert json.loads(bad["body"])["error"]["code"] == 2635  # a malformed version, as alone
    resp = send(client, sandbox, [get("act_1001")], path="/v25/")
    assert (resp.status_code, error_of(resp)["code"]) == (400, 2635)


def test_more_than_50_entries_is_code_100(sandbox, client):
    assert len(answers(send(client, sandbox, [get("act_1001")] * 50))) == 50
    resp = send(client, sandbox, [get("act_1001")] * 51)
    assert resp.status_code == 400
    err = error_of(resp)
    assert (err["code"], err["type"]) == (100, "OAuthException")
    assert err["message"] == "(#100) Too many requests in batch message. Maximum batch size is 50"
    assert [e["route"] for e in sandbox.stats()["log"]].count("node") == 50  # the refused batch ran nothing


@pytest.mark.parametrize(
    ("batch", "says"),
    [
        (None, "is required"),
        ("[{", "not valid JSON"),
        ('{"method": "GET", "relative_url": "act_1001"}', "JSON array"),
        ("[]", "at least one"),
        ('["act_1001"]', "batch[0] must be an object"),
        ('[{"method": "GET", "relative_url": "act_1001"}, {"relative_url": "act_1001"}]', "batch[1].method"),
        ('[{"method": "PATCH", "relative_url": "act_1001"}]', "batch[0].method"),
        ('[{"method": "GET"}]', "batch[0].relative_url"),
        ('[{"method": "GET", "relative_url": 1001}]', "batch[0].relative_url"),
        ('[{"method": "POST", "relative_url": "act_1001/insights", "body": {"level": "ad"}}]', "batch[0].body"),
    ],
)
def test_a_malformed_batch_is_400_code_100_in_one_line(sandbox, client, batch, says):
    form = {} if batch is None else {"batch": batch}
    resp = client.post(f"{sandbox.url}/{VERSION}/", data=form, timeout=10)
    assert resp.status_code == 400
    err = error_of(resp)
    assert err["code"] == 100
    assert err["message"].startswith("(#100) ")
    assert says in err["message"]
    assert "\n" not in err["message"]
    assert sandbox.stats()["by_outcome"] == {"error:100": 1}


def test_the_batch_query_string_works_too(sandbox, client):
    resp = client.post(f"{sandbox.url}/{VERSION}/", params={"batch": json.dumps([get("act_1001")])}, timeout=10)
    assert [a["code"] for a in answers(resp) if a is not None] == [200]


@pytest.mark.parametrize(
    ("headers", "params", "code", "subcode"),
    [
        ({}, {}, 190, None),
        ({"Authorization": "Bearer wrong"}, {}, 190, None),
        ({}, {"access_token": "wrong"}, 190, None),
        ({"Authorization": "Bearer expired-token"}, {}, 190, 463),
    ],
)
def test_token_errors_answer_the_batch_itself(sandbox, headers, params, code, subcode):
    sandbox.set_token("expired-token", expires_in_seconds=-60)
    form = {"batch": json.dumps([get("act_1001"), get("act_1002")]), **params}
    resp = requests.post(f"{sandbox.url}/{VERSION}/", data=form, headers=headers, timeout=10)
    assert resp.status_code == 400
    err = error_of(resp)
    assert (err["code"], err.get("error_subcode")) == (code, subcode)
    assert [e["route"] for e in sandbox.stats()["log"]] == ["batch"]  # no entry ran


def test_entries_inherit_the_batch_token_param_and_may_send_their_own(sandbox):
    sandbox.set_token("one-account-token", accounts=["1001"])
    entries = [get("act_1001"), get("act_1002"), get("act_1002?access_token=wrong")]
    form = {"batch": json.dumps(entries), "access_token": "one-account-token"}
    got = answers(requests.post(f"{sandbox.url}/{VERSION}/", data=form, timeout=10))
    assert [a["code"] for a in got if a is not None] == [200, 400, 400]
    assert [json.loads(a["body"])["error"]["code"] for a in got[1:] if a is not None] == [100, 190]
    log = sandbox.stats()["log"]
    assert all("access_token" not in e["params"] for e in log)
    assert [e["route"] for e in log] == ["batch", "node", "node", "node"]


def test_entries_inherit_the_appsecret_proof(make_sandbox, client):
    sb = make_sandbox(app_secret="s3cr3t")
    proof = hmac.new(b"s3cr3t", TOKEN.encode(), hashlib.sha256).hexdigest()
    got = answers(send(client, sb, [get("act_1001"), get("act_1002")], appsecret_proof=proof))
    assert [a["code"] for a in got if a is not None] == [200, 200]
    resp = send(client, sb, [get("act_1001")])
    assert (resp.status_code, error_of(resp)["code"]) == (400, 100)


def test_a_fault_plan_on_one_account_hits_only_its_entries(make_sandbox, client):
    # Per-account numbering as for calls alone: 1001's 2nd call and 1002's 1st fail.
    sb = make_sandbox(faults=FaultPlan(["act_1001:throttle:80004@2", "act_1002:http503@1"]))
    entries = [get("act_1001"), get("act_1002"), get("act_1001"), get("act_1002")]
    got = answers(send(client, sb, entries))
    assert got[0] is not None
    assert got[0]["code"] == 200
    assert got[1] is not None
    assert got[1]["code"] == 503
    assert "503 Service Unavailable" in got[1]["body"]
    assert headers_of(got[1])["Content-Type"].startswith("text/html")
    assert got[2] is not None
    assert got[2]["code"] == 400
    err = json.loads(got[2]["body"])["error"]
    assert (err["code"], err["error_subcode"]) == (80004, 2446079)
    assert got[3] is not None
    assert got[3]["code"] == 200
    assert sb.stats()["by_outcome"] == {"ok": 3, "fault:http503": 1, "fault:throttle:80004": 1}


@pytest.mark.parametrize("kind", ["reset", "truncated", "slow"])
def test_a_transport_fault_on_an_entry_makes_it_null(make_sandbox, client, kind):
    sb = make_sandbox(faults=FaultPlan([f"act_1002:{kind}@1"], slow_seconds=60))
    got = answers(send(client, sb, [get("act_1001"), get("act_1002"), get("act_1002")]))  # slow: no wait
    assert got[1] is None
    assert [a["code"] for a in (got[0], got[2]) if a is not None] == [200, 200]
    assert sb.stats()["by_outcome"][f"fault:{kind}"] == 1


def test_a_fault_on_the_batch_itself_fails_the_whole_batch(make_sandbox, client):
    sb = make_sandbox(faults=FaultPlan(["http502@1", "reset@2"]))  # the batch is call 1, the next batch call 2
    resp = send(client, sb, [get("act_1001")])
    assert resp.status_code == 502
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        send(client, sb, [get("act_1001")])
    log = sb.stats()["log"]
    assert [(e["route"], e["outcome"]) for e in log] == [
        ("batch", "fault:http502"),
        ("batch", "fault:reset"),
        ("node", "ok"),  # a transport fault cuts the full answer: its entries ran
    ]


def test_a_batch_rule_counts_and_hits_batch_calls_only(make_sandbox, client):
    # batch:param@2 is the second batch call, whatever calls alone came between; its entries never count
    sb = make_sandbox(faults=FaultPlan(["batch:param@2"]))
    assert answers(send(client, sb, [get("act_1001"), get("act_1002")]))[0] is not None
    assert client.get(f"{sb.url}/{VERSION}/act_1001", timeout=10).status_code == 200
    refused = send(client, sb, [get("act_1001")])
    assert refused.status_code == 400
    assert error_of(refused)["code"] == 100
    assert answers(send(client, sb, [get("act_1001")]))[0] is not None
    assert [(e["route"], e["outcome"]) for e in sb.stats()["log"]] == [
        ("batch", "ok"),
        ("node", "ok"),
        ("node", "ok"),
        ("node", "ok"),
        ("batch", "fault:param"),
        ("batch", "ok"),
        ("node", "ok"),
    ]


def test_the_rate_limiter_counts_each_entry(make_sandbox, client):
    sb = make_sandbox(account_budget=3, throttle_code="80004/2446079")
    got = answers(send(client, sb, [get("act_1001")] * 4 + [get("act_1002")]))
    assert [a["code"] for a in got if a is not None] == [200, 200, 200, 400, 200]
    last = got[3]
    assert last is not None
    err = json.loads(last["body"])["error"]
    assert (err["code"], err["error_subcode"], err["is_transient"]) == (80004, 2446079, True)
    usage = json.loads(headers_of(last)["x-business-use-case-usage"])["1001"][0]
    assert usage["call_count"] == 100
    assert usage["estimated_time_to_regain_access"] == 60
    assert {"x-app-usage", "x-ad-account-usage"} <= set(headers_of(last))
    counts = [json.loads(headers_of(a)["x-business-use-case-usage"])["1001"][0]["call_count"] for a in got[:3] if a]
    assert counts == [33.33, 66.67, 100]  # each entry counted in the account's window, as alone
    assert client.get(f"{sb.url}/{VERSION}/act_1001", timeout=10).status_code == 400  # and the budget stays spent
    assert sb.stats()["throttled"] == 2


def test_report_run_polls_carry_the_insights_throttle_header(sandbox, client):
    run = client.post(f"{sandbox.url}/{VERSION}/act_1001/insights", data=REPORT, timeout=10).json()["report_run_id"]
    answer = answers(send(client, sandbox, [get(run)]))[0]
    assert answer is not None
    throttle = json.loads(headers_of(answer)["x-fb-ads-insights-throttle"])
    assert throttle["acc_id_util_pct"] >= 0
    assert json.loads(answer["body"])["id"] == run


def test_include_headers_false_leaves_the_headers_out(sandbox, client):
    got = answers(send(client, sandbox, [get("act_1001"), get("act_4242")], include_headers="false"))
    assert [sorted(a) for a in got if a is not None] == [["body", "code"], ["body", "code"]]
    with_headers = answers(send(client, sandbox, [get("act_1001")]))[0]
    assert with_headers is not None
    assert list(with_headers) == ["code", "headers", "body"]


def test_stats_show_one_batch_call_and_each_entry_batched(sandbox, client):
    run = client.post(f"{sandbox.url}/{VERSION}/act_1002/insights", data=REPORT, timeout=10).json()["report_run_id"]
    ad = sandbox.visible_ads("1001")[0]["id"]
    sandbox.reset_stats()
    answers(send(client, sandbox, [get("act_1001?fields=name"), get(ad), get(run)]))
    stats = sandbox.stats()
    log = [(e["route"], e["account_id"], e["batched"], e["status"]) for e in stats["log"]]
    assert log == [
        ("batch", None, False, 200),
        ("node", "1001", True, 200),
        ("object", "1001", True, 200),
        ("report_run", "1002", True, 200),
    ]
    assert stats["log"][0]["params"] == {}  # the batch itself is not logged (its entries are, one by one)
    assert stats["log"][1]["params"] == {"fields": "name"}
    assert (stats["requests"], stats["batched"], stats["by_route"]["batch"]) == (4, 3, 1)
    assert stats["by_account"] == {"1001": 2, "1002": 1}


def test_entries_cannot_reach_control_routes_or_the_cdn(sandbox, client):
    image_url = sandbox.visible("adimages", "1001")[0]["url"]
    cdn_path = image_url.split("://", 1)[1].split("/", 1)[1]
    entries = [
        get("/_sandbox/stats"),
        get("_sandbox/health"),
        {"method": "POST", "relative_url": "/_sandbox/faults", "body": "faults=http500@1"},
        get(cdn_path),
        get(f"/{cdn_path}"),
    ]
    got = answers(send(client, sandbox, entries))
    assert [a["code"] for a in got if a is not None] == [400] * len(entries)
    for answer in got:
        assert answer is not None
        assert "error" in json.loads(answer["body"])
    assert client.get(f"{sandbox.url}/{VERSION}/act_1001", timeout=10).status_code == 200  # no fault plan was set
    assert sandbox.cdn_requests() == []


def test_latency_is_paid_once_per_batch(make_sandbox, client):
    sb = make_sandbox(latency_seconds=0.4)
    start = time.perf_counter()
    got = answers(send(client, sb, [get("act_1001")] * 5))
    elapsed = time.perf_counter() - start
    assert len(got) == 5
    assert 0.4 <= elapsed < 1.6  # once, not five times
