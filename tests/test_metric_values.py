"""Insights metrics converted while the page is parsed: exactly what the value-by-value conversion gives.

``metric_values.MetricRows`` decodes pages with a msgspec type built from the report's schema; a page that
type does not take (an unknown action-stat key, a value that is not a plain number) is converted value by
value instead. These tests hold the typed way to the value-by-value reference, on the sandbox's own report
rows and on the shapes Meta may send that the sandbox does not.
"""

from __future__ import annotations

import datetime
import json
from decimal import Decimal
from typing import Any

import msgspec
import pytest
import requests
from singer_sdk import singerlib
from tap_meta_ads_sandbox import SandboxServer

from tap_meta_ads.errors import GraphAPIError
from tap_meta_ads.metric_values import MetricRows, MetricValueError
from tap_meta_ads.pages import decode_rows, decode_shell
from tap_meta_ads.records import RecordWriter
from tests.insights_helpers import ALL_FIELDS, SCHEMA, WINDOWS


def reference(content: bytes, rows: MetricRows) -> list[dict[str, Any]]:
    """The value-by-value conversion of a body: what the typed decode must equal."""
    plain = decode_rows(decode_shell(content).data)
    for row in plain:
        rows.convert(row)
    return plain


def decoded(decoder: MetricRows, content: bytes) -> list[dict[str, Any]]:
    """A body's rows as the writer builds them: the fetcher's shell, then the typed decode of its ``data``."""
    return decoder.decode_rows(decode_shell(content).data)


def written(rows: list[dict[str, Any]]) -> list[bytes]:
    """Rows as the tap's writer encodes numbers (``decimal_format="number"``), keys sorted."""
    encoder = msgspec.json.Encoder(decimal_format="number", order="sorted")
    return [encoder.encode(row) for row in rows]


def page(*rows: dict[str, Any]) -> bytes:
    return json.dumps({"data": list(rows), "paging": {"cursors": {"after": "abc"}, "next": "https://x/y"}}).encode()


def test_the_sandbox_report_rows_take_the_typed_way_and_equal_the_reference(sandbox: SandboxServer) -> None:
    until = datetime.datetime.now(datetime.timezone.utc).date() - datetime.timedelta(days=1)
    since = until - datetime.timedelta(days=6)
    params = {
        "level": "ad",
        "fields": ",".join(ALL_FIELDS),
        "time_range": json.dumps({"since": since.isoformat(), "until": until.isoformat()}),
        "time_increment": "1",
        "action_attribution_windows": json.dumps(WINDOWS),
    }
    content = requests.get(f"{sandbox.url}/_sandbox/truth/act_1001/insights", params=params, timeout=60).content
    decoder = MetricRows(SCHEMA)
    rows = decoded(decoder, content)
    assert decoder.typed_pages == 1
    assert decoder.converted_pages == 0
    assert len(rows) > 100
    assert rows == reference(content, MetricRows(SCHEMA))
    with_actions = [r for r in rows if r.get("actions")]
    assert with_actions, "the sandbox serves action stats"
    first = with_actions[0]
    assert isinstance(first["impressions"], int)
    assert isinstance(first["spend"], Decimal)
    assert all(type(a["value"]) in (int, Decimal) for a in first["actions"])  # whole numbers as int
    assert any(a.get("7d_click") is not None for r in with_actions for a in r["actions"])
    assert written(rows) == written(reference(content, MetricRows(SCHEMA)))  # the very same JSON text


def test_counts_money_nulls_and_absent_metrics_are_exact_on_the_typed_way() -> None:
    content = page(
        {
            "date_start": "2026-11-01",
            "impressions": "418",
            "clicks": "12.0",
            "spend": "0.10",
            "cpm": "1234567890.123456789",
            "ctr": None,
            "actions": [{"action_type": "link_click", "value": "8", "7d_click": "6.5", "1d_view": None}],
        },
        {"date_start": "2026-11-02", "reach": 3},
    )
    decoder = MetricRows(SCHEMA)
    rows = decoded(decoder, content)
    paging = decode_shell(content).paging
    assert decoder.typed_pages == 1
    assert rows == reference(content, MetricRows(SCHEMA))
    assert rows[0]["clicks"] == 12
    assert type(rows[0]["clicks"]) is int
    assert str(rows[0]["spend"]) == "0.10"
    assert str(rows[0]["cpm"]) == "1234567890.123456789"  # no float on the way
    assert rows[0]["ctr"] is None
    assert rows[0]["actions"] == [
        {"action_type": "link_click", "value": Decimal(8), "7d_click": Decimal("6.5"), "1d_view": None}
    ]
    assert rows[1] == {"date_start": "2026-11-02", "reach": 3}  # nothing Meta did not send appears
    assert paging is not None
    assert paging.cursors is not None
    assert paging.cursors.after == "abc"


@pytest.mark.parametrize(
    "row",
    [
        {"date_start": "2026-11-01", "actions": [{"action_type": "x", "action_video_sound": "on", "value": "3"}]},
        {"date_start": "2026-11-01", "impressions": "5", "a_field_meta_added": "new"},
        {"date_start": "2026-11-01", "impressions": 5.0, "spend": 2},
    ],
    ids=["unknown-action-key", "unknown-field", "numbers-as-numbers"],
)
def test_a_page_the_typed_way_does_not_take_is_converted_value_by_value_and_keeps_everything(
    row: dict[str, Any],
) -> None:
    content = page(row)
    decoder = MetricRows(SCHEMA)
    rows = decoded(decoder, content)
    assert rows == reference(content, MetricRows(SCHEMA))
    assert set(rows[0]) == set(row)
    if "actions" in row:
        assert decoder.converted_pages == 1
        assert rows[0]["actions"][0] == {"action_type": "x", "action_video_sound": "on", "value": Decimal(3)}
    if "a_field_meta_added" in row:
        assert decoder.converted_pages == 1
        assert rows[0]["impressions"] == 5


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("impressions", "1.5", "'1.5' is not a whole number"),
        ("spend", "n/a", "'n/a' is not a number"),
        ("spend", "NaN", "'NaN' is not a finite number"),
    ],
)
def test_a_bad_metric_is_one_line_naming_the_field_and_the_day(field: str, value: str, why: str) -> None:
    content = page({"date_start": "2026-11-01", "impressions": "4"}, {"date_start": "2026-11-03", field: value})
    decoder = MetricRows(SCHEMA)
    if value == "NaN":
        # Read as Decimal('NaN') by both ways alike; only the value-by-value conversion refuses it.
        rows = decoded(decoder, content)
        assert rows[1][field].is_nan()
        with pytest.raises(MetricValueError) as caught:
            reference(content, decoder)
    else:
        with pytest.raises(MetricValueError) as caught:
            decoded(decoder, content)
    text = str(caught.value)
    assert text == f"Meta sent a bad value for {field} ({why}) on 2026-11-03"
    assert "\n" not in text


def test_a_value_json_cannot_carry_fails_the_record_with_one_line_before_it_is_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    writer = RecordWriter()
    writer.write_message(singerlib.RecordMessage(stream="ads_insights", record={"spend": Decimal("1.5")}))
    bad = singerlib.RecordMessage(stream="ads_insights", record={"spend": Decimal("NaN")})
    with pytest.raises(GraphAPIError) as caught:
        writer.write_message(bad)
    writer.flush()
    text = str(caught.value)
    assert text.startswith("ads_insights: a record has a value JSON cannot carry")
    assert "NaN" in text
    assert "\n" not in text
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["record"] for line in out] == [{"spend": 1.5}]
