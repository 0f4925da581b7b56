"""Insights through Meltano: into PostgreSQL (upserted, no duplicates after a second run) and the GCS backup."""

from __future__ import annotations

import json
import urllib.parse
from decimal import Decimal
from typing import Any

from tests.e2e.servers import GcsEmulator, Meltano, Postgres, Sandbox
from tests.insights_helpers import ALL_FIELDS, WINDOWS, status_filter, typed

SINCE, UNTIL = "2025-05-01", "2025-05-10"
#: Select the insights stream over a short history (the sandbox environment polls report runs quickly).
INSIGHTS_ENV = {
    "TAP_META_ADS__SELECT": json.dumps(["ads_insights.*"]),
    "TAP_META_ADS_START_DATE": f"{SINCE}T00:00:00Z",
    "TAP_META_ADS_END_DATE": UNTIL,
    "TAP_META_ADS_INSIGHTS_LOOKBACK_DAYS": "3",
}


def insights_truth(sandbox: Sandbox) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The sandbox's rows for the tap's default report, typed as the schema says, by key."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for account in sandbox.accounts:
        query = urllib.parse.urlencode(
            {
                "level": "ad",
                "fields": ",".join(ALL_FIELDS),
                "time_range": json.dumps({"since": SINCE, "until": UNTIL}),
                "time_increment": "1",
                "action_attribution_windows": json.dumps(WINDOWS),
                "filtering": json.dumps(status_filter("ad")),  # the tap's statuses: archived ads' rows too
            }
        )
        for row in sandbox.control("GET", f"truth/act_{account}/insights?{query}")["data"]:
            rows[row["date_start"], row["account_id"], row["ad_id"]] = typed(row)
    return rows


def test_insights_into_postgres_twice_leave_one_row_per_key(sandbox: Sandbox, postgres: Postgres, make_meltano) -> None:
    env = {
        "TARGET_POSTGRES_HOST": "127.0.0.1",
        "TARGET_POSTGRES_PORT": str(postgres.port),
        "TARGET_POSTGRES_USER": postgres.user,
        "TARGET_POSTGRES_PASSWORD": "",
        "TARGET_POSTGRES_DATABASE": postgres.database,
        "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": "meta_insights",
    }
    meltano: Meltano = make_meltano(**INSIGHTS_ENV, **env)
    truth = insights_truth(sandbox)
    key = "date_start, account_id, ad_id"

    def counts() -> tuple[int, int]:
        (total, distinct) = postgres.query(f"select count(*), count(distinct ({key})) from meta_insights.ads_insights")[
            0
        ]
        return int(total), int(distinct)

    meltano("run", "tap-meta-ads", "target-postgres")
    assert counts() == (len(truth), len(truth))
    runs_before = len(sandbox.control("GET", "insights")["runs"])

    meltano("run", "tap-meta-ads", "target-postgres")
    # the second run asked only for the lookback window, and its rows were upserted, not appended
    later = sandbox.control("GET", "insights")["runs"][runs_before:]
    assert later and min(r["since"] for r in later) == "2025-05-08"
    assert counts() == (len(truth), len(truth))

    rows = postgres.query(
        "select date_start::text, account_id, ad_id, spend::text, impressions::text from meta_insights.ads_insights"
    )
    for date_start, account_id, ad_id, spend, impressions in rows:
        expected = truth[date_start, account_id, ad_id]
        assert Decimal(spend) == expected["spend"]
        assert int(impressions) == expected["impressions"]
    types = dict(
        postgres.query(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'meta_insights' and table_name = 'ads_insights'"
        )
    )
    assert types["impressions"] == "bigint"
    assert types["spend"] == "numeric"
    primary_key = postgres.query(
        "select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid "
        "and a.attnum = any(i.indkey) where i.indrelid = 'meta_insights.ads_insights'::regclass and i.indisprimary"
    )
    assert sorted(r[0] for r in primary_key) == ["account_id", "ad_id", "date_start"]


def test_insights_backed_up_to_gcs_field_by_field(sandbox: Sandbox, gcs: GcsEmulator, make_meltano) -> None:
    meltano: Meltano = make_meltano(**INSIGHTS_ENV)
    meltano("run", "tap-meta-ads", "target-gcs")
    names = gcs.object_names("meta-ads/ads_insights/")
    assert len(names) == 1
    records = [json.loads(line, parse_float=Decimal) for line in gcs.read(names[0]).splitlines() if line.strip()]
    truth = insights_truth(sandbox)
    keys = [(r["date_start"], r["account_id"], r["ad_id"]) for r in records]
    assert len(keys) == len(set(keys)) == len(truth)
    for record in records:
        assert record == truth[record["date_start"], record["account_id"], record["ad_id"]]
    # non-integer metrics landed as JSON numbers with Meta's exact digits
    assert any(isinstance(r.get("spend"), Decimal) and r["spend"] != int(r["spend"]) for r in records)
