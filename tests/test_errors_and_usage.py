"""The error table and the usage reader, driven by Graph API error bodies and headers as Meta sends them."""

from __future__ import annotations

import email.utils
import json
import logging
import time

import msgspec
import pytest

from tap_meta_ads.client import rfc3339
from tap_meta_ads.errors import (
    Action,
    CursorRejectedError,
    GraphAPIError,
    GraphError,
    PageTooLargeError,
    ThrottledError,
    TransientError,
    classify,
    raise_for_error,
    retry_after_seconds,
)
from tap_meta_ads.pages import CursorPaginator, GraphPage
from tap_meta_ads.redact import MASK, SecretFilter
from tap_meta_ads.tap import TapMetaAds
from tap_meta_ads.usage import LONGEST_WINDOW_SECONDS, Pacer, Usage


def body(code, message="x", subcode=None, transient=False, kind="OAuthException"):
    error = {"message": message, "type": kind, "code": code, "is_transient": transient, "fbtrace_id": "AbC123"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


TABLE = [
    # (HTTP status, body, action)
    (400, body(17, "(#17) User request limit reached", 2446079), Action.WAIT),
    (400, body(4, "(#4) Application request limit reached", 1504022), Action.WAIT),
    (400, body(32, "(#32) Page request limit reached"), Action.WAIT),
    (400, body(613, "(#613) Calls to this api have exceeded the rate limit.", 1487742), Action.WAIT),
    (400, body(80004, "There have been too many calls to this ad-account.", 2446079), Action.WAIT),
    (400, body(80000, "There have been too many calls from this ad-account."), Action.WAIT),
    (400, body(80014, "too many calls"), Action.WAIT),
    (429, "<html>Too Many Requests</html>", Action.WAIT),
    (500, body(1, "Please reduce the amount of data you're asking for, then retry your request"), Action.SHRINK),
    (500, body(1, "An unknown error occurred"), Action.RETRY),
    (503, body(2, "Service temporarily unavailable", transient=True), Action.RETRY),
    (400, body(960, "Request aborted."), Action.RETRY),
    (400, body(12345, "odd", transient=True), Action.RETRY),
    (502, "<html><body>502 Bad Gateway</body></html>", Action.RETRY),
    (504, None, Action.RETRY),
    (400, body(190, "Error validating access token: Session has expired", 463), Action.AUTH),
    (400, body(190, "Invalid OAuth access token - Cannot parse access token"), Action.AUTH),
    (400, body(200, "(#200) Ad account owner has NOT grant ads_management or ads_read permission"), Action.PERMISSION),
    (400, body(10, "(#10) Application does not have permission for this action"), Action.PERMISSION),
    (400, body(100, "(#100) Tried accessing nonexisting field (foo) on node type (Ad)"), Action.FATAL),
    (400, body(2635, "(#2635) You are calling a deprecated version of the Ads API."), Action.FATAL),
    (400, body(368, "The action attempted has been deemed abusive", 1404078), Action.FATAL),
    (400, body(99999, "never seen"), Action.FATAL),
    (400, body(2642, "(#2642) Invalid cursors values"), Action.RESTART),
    (400, "not json at all", Action.FATAL),
]


@pytest.mark.parametrize(("status", "payload", "action"), TABLE)
def test_error_table(status, payload, action):
    assert classify(GraphError.from_body(status, payload)) is action


@pytest.mark.parametrize(
    ("action", "exception"),
    [
        (Action.WAIT, ThrottledError),
        (Action.SHRINK, PageTooLargeError),
        (Action.RETRY, TransientError),
        (Action.RESTART, CursorRejectedError),
        (Action.AUTH, GraphAPIError),
        (Action.PERMISSION, GraphAPIError),
        (Action.FATAL, GraphAPIError),
    ],
)
def test_each_action_raises_its_exception(action, exception):
    status, payload, _ = next(row for row in TABLE if row[2] is action)
    with pytest.raises(exception):
        raise_for_error(GraphError.from_body(status, payload), None)


def test_fatal_text_is_one_line_with_code_type_message_and_trace():
    error = GraphError.from_body(400, body(100, "(#100) Invalid parameter", 33, kind="GraphMethodException"))
    with pytest.raises(GraphAPIError) as info:
        raise_for_error(error, None)
    text = str(info.value)
    assert "\n" not in text
    for part in ("100/33", "GraphMethodException", "(#100) Invalid parameter", "AbC123"):
        assert part in text


def test_token_error_says_how_to_renew():
    with pytest.raises(GraphAPIError, match="invalid or expired.*access_token"):
        raise_for_error(GraphError.from_body(400, body(190, "expired", 463)), None)


def test_retry_after_seconds_and_http_date():
    assert retry_after_seconds("7") == 7
    now = time.time()
    when = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= retry_after_seconds(when, now=now) <= 31
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_usage_headers_and_regain_hints():
    headers = {
        "x-app-usage": '{"call_count":28,"total_time":25,"total_cputime":25}',
        "x-ad-account-usage": '{"acc_id_util_pct":9.67,"reset_time_duration":100,'
        '"ads_api_access_tier":"standard_access"}',
        "x-business-use-case-usage": '{"66782684":[{"type":"ads_management","call_count":95,"total_cputime":20,'
        '"total_time":20,"estimated_time_to_regain_access":0,"ads_api_access_tier":"development_access"}]}',
        "x-fb-ads-insights-throttle": '{"app_id_util_pct":100,"acc_id_util_pct":10}',
    }
    usage = Usage.from_headers(headers)
    assert usage.pct == 100
    assert usage.reset_seconds == 100
    # minutes are whole: 3 minutes means 2-3 minutes; a seconds hint inside that range wins
    regain = {"x-business-use-case-usage": '{"1":[{"call_count":100,"estimated_time_to_regain_access":3}]}'}
    assert Usage.from_headers(regain).reset_seconds == 180
    assert Usage.from_headers({**regain, "x-ad-account-usage": '{"reset_time_duration":150}'}).reset_seconds == 150
    assert Usage.from_headers({"x-app-usage": "garbage"}) == Usage()


def test_pacer_waits_only_above_the_threshold_and_spreads_the_rest():
    pacer = Pacer(threshold_pct=75, fallback_seconds=1, max_wait_seconds=60)
    assert pacer.observe(Usage(pct=50, reset_seconds=100, seen=True)) == 0
    assert pacer.observe(Usage(pct=60, reset_seconds=100, seen=True)) == 0
    near = pacer.observe(Usage(pct=80, reset_seconds=100, seen=True))
    nearer = pacer.observe(Usage(pct=95, reset_seconds=100, seen=True))
    assert 0 < near < nearer < 100
    assert pacer.observe(Usage(pct=100, reset_seconds=30, seen=True)) == 30
    assert pacer.observe(Usage(pct=100, reset_seconds=3600, seen=True)) == 60  # capped
    assert pacer.observe(Usage()) == 0  # no headers, no pacing


def test_pacer_spreads_over_the_time_until_its_own_calls_leave_a_sliding_window():
    # a budget of 20 calls in a 10 s window, 1 call = 5 %: the pacer's own calls made 80 % just now
    pacer = Pacer(threshold_pct=75, fallback_seconds=1, max_wait_seconds=60)
    now = time.monotonic()
    for i in range(15):
        pacer.observe(Usage(pct=5 * (i + 1), reset_seconds=10, seen=True), sent_at=now - 4 + i * 0.2)
    wait = pacer.observe(Usage(pct=80, reset_seconds=10, seen=True), sent_at=now)
    # 3 calls left before the spare one; the oldest own call (4 s ago) leaves the window in about 6 s
    assert 6 / 4 - 0.1 < wait < 6 / 4 + 0.1
    # at the wall minus the spare call: wait until exactly one own call has left (about 6 s), not a full reset
    for pct in (85, 90, 95):
        wait = pacer.observe(Usage(pct=pct, reset_seconds=10, seen=True), sent_at=now)
    assert 5.8 < wait < 6.1


def page(after, has_next, rows=1):
    return GraphPage(rows=[{"id": str(i)} for i in range(rows)], after=after, has_next=has_next, server_time=0)


def test_cursor_paginator():
    paginator = CursorPaginator()
    paginator.advance(page("a", True))
    assert paginator.current_value == "a" and not paginator.finished
    assert paginator.continue_if_empty(page("b", True, rows=0))  # empty page with next: keep going
    paginator.advance(page("b", True, rows=0))
    paginator.advance(page("c", False))  # `after` on the last page, but no `next`: stop
    assert paginator.finished
    looping = CursorPaginator()
    looping.advance(page("a", True))
    looping.advance(page("b", True))
    with pytest.raises(GraphAPIError, match="already seen"):
        looping.advance(page("a", True))


def test_rfc3339():
    assert rfc3339("2023-03-21T22:41:46-0700") == "2023-03-21T22:41:46-07:00"
    assert rfc3339("2023-03-21T22:41:46+00:00") == "2023-03-21T22:41:46+00:00"
    assert rfc3339("2023-03-21") == "2023-03-21"


def test_secret_filter_masks_messages_args_and_tracebacks():
    secret_filter = SecretFilter(["tok-SECRET-1", "x"])  # one-letter "secrets" are ignored
    record = logging.LogRecord(
        "t", logging.ERROR, __file__, 1, "url %s", ("https://h/?access_token=tok-SECRET-1",), None
    )
    assert secret_filter.filter(record)
    assert "tok-SECRET-1" not in record.getMessage() and MASK in record.getMessage()
    try:
        raise RuntimeError("boom tok-SECRET-1")
    except RuntimeError:
        import sys

        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    secret_filter.filter(record)
    assert record.exc_text and "boom" in record.exc_text
    assert "tok-SECRET-1" not in record.exc_text
    plain = logging.LogRecord("t", logging.INFO, __file__, 1, "x marks the spot", (), None)
    secret_filter.filter(plain)
    assert plain.getMessage() == "x marks the spot"


def test_rows_are_built_by_the_writer_and_a_page_of_non_objects_is_one_line():
    rows = msgspec.json.decode(b'{"data":[{"id":"1"},{"id":"2"}]}', type=dict[str, msgspec.Raw])["data"]
    built = GraphPage(rows=rows, after=None, has_next=False, server_time=0)
    assert isinstance(built.rows, msgspec.Raw)  # nothing built until the writer asks
    assert built.records == [{"id": "1"}, {"id": "2"}]
    assert built.records is built.rows  # built once
    bad = GraphPage(rows=msgspec.Raw(b"[1, 2]"), after=None, has_next=False, server_time=0)
    with pytest.raises(GraphAPIError) as caught:
        _ = bad.records
    assert str(caught.value).startswith("Meta sent a page whose data is not a list of objects (")
    assert "\n" not in str(caught.value)


def test_a_get_is_the_request_requests_would_prepare():
    tap = TapMetaAds(
        config={
            "access_token": "tok-123",
            "app_secret": "s3cret",
            "account_ids": ["1001"],
            "api_url": "http://127.0.0.1:9",
        },
        validate_config=True,
    )
    stream = tap.streams["ads"]
    url = f"{stream.url_base}/act_1001/ads"
    params = {
        **stream.get_url_params({"account_id": "1001"}, "QVFIUm=x+y/z"),
        "limit": 100,
        "filtering": json.dumps([{"field": "updated_time", "operator": "GREATER_THAN", "value": 1700000000}]),
        "appsecret_proof": "ab12",
        "name": "Sommer ünd Sonne & more",
    }
    ours = stream.prepare("GET", url, params)
    theirs = stream.build_prepared_request(method="GET", url=url, params=params)
    assert ours.url == theirs.url
    assert dict(ours.headers) == dict(theirs.headers)
    assert ours.headers["Authorization"] == "Bearer tok-123"
    assert "tok-123" not in (ours.url or "")
    again = stream.prepare("GET", url, {"limit": 5})
    assert again.url == f"{url}?limit=5"
    assert ours.url != again.url  # each call its own copy
    post = stream.prepare("POST", f"{stream.url_base}/act_1001/insights", {"level": "ad"})
    assert post.body == "level=ad"
    assert post.url == f"{stream.url_base}/act_1001/insights"


def test_the_pacer_forgets_calls_older_than_the_longest_window():
    pacer = Pacer(threshold_pct=75, fallback_seconds=1, max_wait_seconds=60)
    start = time.monotonic() - 3 * LONGEST_WINDOW_SECONDS
    for i in range(3 * 3600):  # one call a second for three hours, usage low all along
        assert pacer.observe(Usage(pct=10, reset_seconds=None, seen=True), sent_at=start + i) == 0.0
    assert 3600 <= pacer.remembered_calls <= 3601
