"""Every stream `meltano.yml` selects, through Meltano into GCS (guarded) and PostgreSQL."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
import yaml

from tests.e2e.servers import ROOT, GcsEmulator, Meltano, Postgres, Sandbox
from tests.e2e.test_other_targets import _pg_env
from tests.tap_harness import discovered_catalog
from tests.test_streams import DEFAULT_VIEW, EDGE_OF

#: Every stream but ad_assets, which is chosen on purpose (its end-to-end test: tests/e2e/test_ad_assets.py).
CATALOG = sorted(s["tap_stream_id"] for s in discovered_catalog()["streams"] if s["tap_stream_id"] != "ad_assets")
#: The ad account's objects (insights have their own end-to-end tests, tests/e2e/test_insights_meltano.py).
STREAMS = [s for s in CATALOG if not s.startswith("ads_insights")]


def selected_in_meltano_yml(environment: str | None = None) -> set[str]:
    """The streams `select` names for tap-meta-ads, in the plugin or in one environment's override."""
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    plugins = project["plugins"]
    if environment is not None:
        plugins = next(e for e in project["environments"] if e["name"] == environment)["config"]["plugins"]
    tap = next(p for p in plugins["extractors"] if p["name"] == "tap-meta-ads")
    return {pattern.split(".")[0] for pattern in tap["select"]}


def expected_counts(sandbox: Sandbox) -> dict[str, int]:
    """How many records each stream must deliver for the sandbox's accounts, from its truth endpoints."""
    counts = {"adaccounts": len(sandbox.accounts)}
    views: dict[str, Any] = {**DEFAULT_VIEW, "ads": DEFAULT_VIEW["campaigns"]}
    for stream, view in views.items():
        query = "" if view is None else "?" + urllib.parse.urlencode({"effective_status": json.dumps(view)})
        counts[stream] = sum(
            len(sandbox.control("GET", f"truth/act_{account}/{EDGE_OF.get(stream, stream)}{query}")["data"])
            for account in sandbox.accounts
        )
    return counts


#: Insights presets a project opts into (ads_insights_account, which the run reconciles against, is selected).
OPT_IN = {s for s in CATALOG if s.startswith("ads_insights_") and s != "ads_insights_account"}


def test_meltano_selects_every_stream_of_the_tap() -> None:
    assert selected_in_meltano_yml() == set(CATALOG) - OPT_IN
    assert selected_in_meltano_yml("sandbox") == set(STREAMS)  # the offline job: every object, no insights


def test_backup_writes_one_verified_object_per_stream(sandbox: Sandbox, gcs: GcsEmulator, meltano: Meltano) -> None:
    meltano("run", "tap-meta-ads", "target-gcs")  # the guard lists and counts every stream's object, or fails
    expected = expected_counts(sandbox)
    for stream in STREAMS:
        names = gcs.object_names(f"meta-ads/{stream}/")
        assert len(names) == 1, (stream, names)
        records = gcs.records(names[0])
        assert len(records) == expected[stream] > 0, stream
        assert all(r["account_id"] in sandbox.accounts for r in records), stream


@pytest.mark.parametrize("schema", ["meta_all"])
def test_postgres_loads_every_stream_with_its_key(
    sandbox: Sandbox, postgres: Postgres, make_meltano, schema: str
) -> None:
    meltano: Meltano = make_meltano(**_pg_env(postgres, schema))
    meltano("run", "tap-meta-ads", "target-postgres")
    expected = expected_counts(sandbox)
    keys = {s["tap_stream_id"]: s["key_properties"] for s in discovered_catalog()["streams"]}
    for stream in STREAMS:
        ((rows,),) = postgres.query(f"select count(*) from {schema}.{stream}")
        assert int(rows) == expected[stream], stream
        primary_key = postgres.query(
            "select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid "
            f"and a.attnum = any(i.indkey) where i.indrelid = '{schema}.{stream}'::regclass and i.indisprimary"
        )
        assert sorted(c for (c,) in primary_key) == sorted(keys[stream]), stream
