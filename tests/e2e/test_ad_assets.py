"""Creative files through Meltano: `ad_assets` into the GCS backup (guarded, bytes verified) and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import json

from tests.e2e.servers import GcsEmulator, Meltano, Postgres, Sandbox
from tests.e2e.test_other_targets import _pg_env

#: ad_assets is not selected by default: a job that keeps the files selects it.
ASSETS_ENV = {"TAP_META_ADS__SELECT": json.dumps(["ad_assets.*"])}


def files_truth(sandbox: Sandbox) -> dict[tuple[str, str], dict]:
    """(account, sha256) -> the sandbox's file facts, for every file of every account."""
    return {
        (account, f["sha256"]): f
        for account in sandbox.accounts
        for f in sandbox.control("GET", f"truth/act_{account}/files")["data"]
    }


def test_ad_assets_land_in_the_bucket_once_with_their_bytes(sandbox: Sandbox, gcs: GcsEmulator, make_meltano) -> None:
    meltano: Meltano = make_meltano(**ASSETS_ENV)
    meltano("run", "tap-meta-ads", "target-gcs")
    names = gcs.object_names("meta-ads/ad_assets/")
    assert len(names) == 1, names
    landed = gcs.records(names[0])
    truth = files_truth(sandbox)
    keys = [(r["account_id"], r["sha256"]) for r in landed]
    assert len(keys) == len(set(keys)) == len(truth) > 100
    for record in landed:
        content = base64.b64decode(record["content_base64"])
        assert hashlib.sha256(content).hexdigest() == record["sha256"]
        expected = truth[record["account_id"], record["sha256"]]
        assert (record["url"], record["size_bytes"], record["mime_type"]) == (
            expected["url"],
            expected["size"],
            expected["mime_type"],
        )

    meltano("run", "tap-meta-ads", "target-gcs")  # the state remembers what is stored: nothing new to write
    again = [n for n in gcs.object_names("meta-ads/ad_assets/") if n not in names]
    assert all(gcs.records(n) == [] for n in again)


def test_ad_assets_load_into_postgres_keyed_by_account_and_sha256(
    sandbox: Sandbox, postgres: Postgres, make_meltano
) -> None:
    meltano: Meltano = make_meltano(**ASSETS_ENV, **_pg_env(postgres, "meta_assets"))
    meltano("run", "tap-meta-ads", "target-postgres")
    truth = files_truth(sandbox)
    rows = postgres.query("select account_id, sha256, content_base64 from meta_assets.ad_assets")
    assert {(a, s) for a, s, _ in rows} == set(truth) and len(rows) == len(truth)
    assert all(hashlib.sha256(base64.b64decode(c)).hexdigest() == s for _, s, c in rows)
