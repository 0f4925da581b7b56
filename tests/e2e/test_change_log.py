"""The change log through Meltano into the GCS backup: every entry once, then only the new ones."""

from __future__ import annotations

import json

from tests.e2e.servers import GcsEmulator, Sandbox

GCS_JOB = ("run", "tap-meta-ads", "target-gcs")


def test_the_change_log_lands_once_then_only_new_entries(sandbox: Sandbox, gcs: GcsEmulator, make_meltano) -> None:
    meltano = make_meltano(TAP_META_ADS__SELECT=json.dumps(["activities.*"]))
    meltano(*GCS_JOB)
    first = gcs.object_names("meta-ads/activities/")
    assert len(first) == 1, first
    landed = gcs.records(first[0])
    truth = [e for acct in sandbox.accounts for e in sandbox.control("GET", f"truth/act_{acct}/activities")["data"]]
    keys = [(r["account_id"], r["activity_key"]) for r in landed]
    assert len(keys) == len(set(keys)) == len(truth) > 50
    assert sorted((r["event_time"][:19], r["object_id"]) for r in landed) == sorted(
        (e["event_time"][:19], e["object_id"]) for e in truth
    )

    touched = sandbox.mutate("1001", update=3)["updated"]
    sandbox.control("POST", "clock", {"advance_seconds": 5})
    meltano(*GCS_JOB)
    second = sorted(set(gcs.object_names("meta-ads/activities/")) - set(first))
    assert len(second) == 1, second
    new = gcs.records(second[0])
    assert sorted(r["object_id"] for r in new) == sorted(touched)
    assert not {(r["account_id"], r["activity_key"]) for r in new} & set(keys)
