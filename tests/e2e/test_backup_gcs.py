"""The main job, `meltano run tap-meta-ads target-gcs`, against the sandbox and a real GCS emulator."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from tests.e2e.conftest import STATE_ID, bookmarks, truth_by_id
from tests.e2e.servers import GcsEmulator, Meltano, Sandbox

GCS_JOB = ("run", "tap-meta-ads", "target-gcs")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def normalise(value: Any) -> Any:
    """Make a sandbox value and a backed-up value comparable: times as UTC instants, recursively."""
    if isinstance(value, str) and _TIME.match(value):
        text = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", value.replace("Z", "+00:00"))
        return datetime.datetime.fromisoformat(text).astimezone(datetime.timezone.utc)
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def backed_up(gcs: GcsEmulator, names: list[str]) -> list[dict[str, Any]]:
    return [record for name in names for record in gcs.records(name)]


def assert_same_ads(records: list[dict[str, Any]], truth: dict[str, dict[str, Any]]) -> None:
    """Each truth ad exactly once, with every field the sandbox holds, equal in value."""
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), "an ad was backed up twice in one run"
    assert set(ids) == set(truth)
    for record in records:
        expected = normalise(truth[record["id"]])
        got = normalise({k: v for k, v in record.items() if k in expected})
        assert got == expected, f"ad {record['id']} differs from the sandbox"


def test_backup_lands_every_ad_then_only_changes(sandbox: Sandbox, gcs: GcsEmulator, meltano: Meltano) -> None:
    meltano(*GCS_JOB)
    first = gcs.object_names("meta-ads/ads/")
    assert len(first) == 1, first
    truth = truth_by_id(sandbox)
    assert len(truth) > 500
    assert_same_ads(backed_up(gcs, first), truth)
    state = meltano.state(STATE_ID)
    assert state is not None
    assert bookmarks(state).keys() == {"1001", "1002"}

    changed = set(sandbox.mutate("1001", update=4)["updated"])
    touched = sandbox.mutate("1002", update=2, create=3)
    changed |= set(touched["updated"]) | set(touched["created"])
    sandbox.advance_clock(5)
    meltano(*GCS_JOB)

    names = gcs.object_names("meta-ads/ads/")
    assert set(first) < set(names), "the first run's object must survive the second run"
    second = sorted(set(names) - set(first))
    assert len(second) == 1, second
    records = backed_up(gcs, second)
    truth = truth_by_id(sandbox)
    assert {r["id"] for r in records} == changed
    assert_same_ads(records, {ad_id: truth[ad_id] for ad_id in changed})


def test_shards_keep_their_own_state(sandbox: Sandbox, gcs: GcsEmulator, make_meltano) -> None:
    """Many accounts split across jobs: each shard names its accounts and its own state id suffix."""
    for shard, account in (("shard-a", "1001"), ("shard-b", "1002")):
        shard_meltano = make_meltano(TAP_META_ADS_ACCOUNT_IDS=json.dumps([f"act_{account}"]))
        shard_meltano("run", f"--state-id-suffix={shard}", *GCS_JOB[1:])
        state = shard_meltano.state(f"{STATE_ID}:{shard}")
        assert state is not None, shard
        assert bookmarks(state).keys() == {account}
    names = gcs.object_names("meta-ads/ads/")
    assert len(names) == 2
    assert {r["id"] for name in names for r in gcs.records(name)} == set(truth_by_id(sandbox))
    assert not make_meltano().state(STATE_ID), "no shard wrote the unsuffixed state"
