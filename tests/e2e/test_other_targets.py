"""The tap into other real targets through Meltano: PostgreSQL (MeltanoLabs), JSONL, and a stream map."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

from tests.e2e.conftest import truth_by_id
from tests.e2e.servers import Meltano, Postgres, Sandbox

PG_STATE_ID = "sandbox:tap-meta-ads-to-target-postgres"


def _pg_env(postgres: Postgres, schema: str) -> dict[str, str]:
    return {
        "TARGET_POSTGRES_HOST": "127.0.0.1",
        "TARGET_POSTGRES_PORT": str(postgres.port),
        "TARGET_POSTGRES_USER": postgres.user,
        "TARGET_POSTGRES_PASSWORD": "",
        "TARGET_POSTGRES_DATABASE": postgres.database,
        "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema,
    }


def test_postgres_rows_match_and_reruns_upsert(sandbox: Sandbox, postgres: Postgres, make_meltano) -> None:
    meltano: Meltano = make_meltano(**_pg_env(postgres, "meta_ads"))
    job = ("run", "tap-meta-ads", "target-postgres")
    meltano(*job)
    truth = truth_by_id(sandbox)

    def ids() -> list[str]:
        return [row[0] for row in postgres.query("select id from meta_ads.ads order by id")]

    assert sorted(ids()) == sorted(truth)

    # The same sync again from scratch: every row arrives a second time and is upserted on `id`.
    meltano("run", "--full-refresh", *job[1:])
    assert sorted(ids()) == sorted(truth)

    # Incremental: k changed ads update their rows in place, one created ad adds one row.
    touched = sandbox.mutate("1001", update=3, create=1)
    sandbox.advance_clock(5)
    meltano(*job)
    truth = truth_by_id(sandbox)
    assert sorted(ids()) == sorted(truth)
    for ad_id in touched["updated"] + touched["created"]:
        (name,) = postgres.query(f"select name from meta_ads.ads where id = '{ad_id}'")[0]
        assert name == truth[ad_id]["name"]

    types = {
        name: (data_type, udt)
        for name, data_type, udt in postgres.query(
            "select column_name, data_type, udt_name from information_schema.columns "
            "where table_schema = 'meta_ads' and table_name = 'ads'"
        )
    }
    assert types["id"][0] == "text"
    assert types["account_id"][0] == "text"
    assert types["updated_time"][0].startswith("timestamp")
    assert types["created_time"][0].startswith("timestamp")
    assert types["bid_amount"][0] == "bigint"
    assert types["engagement_audience"][0] == "boolean"
    assert types["targeting"][0] == "jsonb"
    assert types["tracking_specs"] == ("ARRAY", "_jsonb")
    assert types["special_ad_categories"][0] == "ARRAY"
    # Times are stored as UTC instants: the same moment as the sandbox's `-0700`-style text.
    some_id = touched["updated"][0]
    (stored,) = postgres.query(
        f"select to_char(updated_time, 'YYYY-MM-DD\"T\"HH24:MI:SS') from meta_ads.ads where id = '{some_id}'"
    )[0]
    expected = datetime.datetime.strptime(truth[some_id]["updated_time"], "%Y-%m-%dT%H:%M:%S%z")
    assert stored == expected.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    primary_key = postgres.query(
        "select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid "
        "and a.attnum = any(i.indkey) where i.indrelid = 'meta_ads.ads'::regclass and i.indisprimary"
    )
    assert primary_key == [["id"]]


def _jsonl(workdir: Path) -> list[dict]:
    path = workdir / "jsonl" / "ads.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_jsonl_smoke(sandbox: Sandbox, meltano: Meltano, workdir: Path) -> None:
    meltano("run", "tap-meta-ads", "target-jsonl")
    records = _jsonl(workdir)
    assert sorted(r["id"] for r in records) == sorted(truth_by_id(sandbox))


def test_stream_map_hashes_the_ad_name(sandbox: Sandbox, meltano: Meltano, workdir: Path) -> None:
    """The documented stream-map example (tap-meta-ads-hashed in meltano.yml) works through Meltano."""
    meltano("run", "tap-meta-ads-hashed", "target-jsonl")
    records = _jsonl(workdir)
    truth = truth_by_id(sandbox)
    assert sorted(r["id"] for r in records) == sorted(truth)
    for record in records:
        assert "name" not in record
        assert "preview_shareable_link" not in record
        assert record["name_md5"] == hashlib.md5(truth[record["id"]]["name"].encode()).hexdigest()
        assert record["account_id"] in {"1001", "1002"}
