"""The sharded backup on Dagster, offline: 12 sandbox ad accounts in 4 shards, the GCS emulator as both the
bucket and Meltano's state backend, Dagster's multiprocess executor (a process per shard step).

The job runs through `python -m meta_ads_backup` in Dagster's own venv with a temporary DAGSTER_HOME (see
harness.py); its report comes from Dagster's event log (each step's status, attempts, start/end times and
metadata). What landed is read from the bucket, the state from the state backend's objects.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.servers import ROOT, Meltano
from tests.orchestrate.harness import (
    DAGSTER_PYTHON,
    ORCHESTRATE,
    STATE_ID,
    Backup,
    backup_servers,
    most_at_once,
    step_key,
)

#: Twelve small accounts (one page each at page_size 100) whose hash fills all 4 shards (2, 3, 4 and 3).
ACCOUNTS = {str(4001 + i): 20 + 5 * i for i in range(12)}
SHARDS = 4
MAX_CONCURRENT = 2
#: The account that fails fatally in the fault test: one of four in its shard, neither first nor last.
FAILING = "4007"


@pytest.fixture
def backup(tmp_path: Path) -> Iterator[Backup]:
    with backup_servers(tmp_path, ACCOUNTS, shards=SHARDS, max_concurrent=MAX_CONCURRENT, retries=1) as servers:
        yield servers


def test_the_daily_schedule_is_meltanos_schedule_run_by_dagster() -> None:
    code = (
        "from meta_ads_backup.definitions import daily_backup; "
        "print(daily_backup.cron_schedule, daily_backup.execution_timezone, daily_backup.job_name, "
        "daily_backup.default_status.value)"
    )
    out = subprocess.run(
        [str(DAGSTER_PYTHON), "-c", code], cwd=ORCHESTRATE, capture_output=True, text=True, check=True
    ).stdout.split()
    meltano_yml = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (daily,) = [s for s in meltano_yml["schedules"] if s["name"] == "daily-backup"]
    assert out == [*daily["interval"].split(), "UTC", "meta_ads_backup", "RUNNING"]


def test_every_account_lands_once_each_shard_keeps_its_state_and_runs_again_incrementally(backup: Backup) -> None:
    shards = backup.shards
    assert [len(s.account_ids) for s in shards] == [2, 3, 4, 3]

    first = backup.dagster("run")
    assert first["status"] == "SUCCESS"
    for shard in shards:
        data = first["steps"][step_key(shard)]
        assert (data["status"], data["attempts"]) == ("succeeded", 1)
        meta = data["metadata"]
        assert meta["state_id"] == STATE_ID.format(shard=shard.name)
        assert meta["account_ids"] == list(shard.account_ids)
        # The tap's RUN_SUMMARY, per shard: every ad of its accounts, one request per account's page.
        assert meta["records"] == len(backup.truth(shard.account_ids))
        assert meta["requests"] == len(shard.account_ids)
        assert (meta["retries"], meta["tap_status"]) == (0, "succeeded")
        # ... and the same summary materialized as the shard's asset, whose history Dagster keeps.
        assert data["materializations"] == {f"meta_ads_backup/{shard.name}": meta}
    assert first["steps"]["summarize"]["metadata"]["records"] == len(backup.truth(list(ACCOUNTS)))
    assert 1 < most_at_once(first) <= MAX_CONCURRENT

    # Exactly once: each ad of the 12 accounts is in the bucket one time (the guard verified each object).
    landed = Counter(r["id"] for records in backup.landed().values() for r in records)
    assert set(landed) == backup.truth(list(ACCOUNTS))
    assert set(landed.values()) == {1}
    # One state id per shard in the GCS state backend, holding the bookmarks of that shard's accounts.
    assert set(backup.states()) == {STATE_ID.format(shard=s.name) for s in shards}
    before = {s.name: backup.bookmarks(s) for s in shards}
    for shard in shards:
        assert set(before[shard.name]) == set(shard.account_ids)
    listed = Meltano(backup.workdir, backup.env)("state", "list").stdout.split()
    assert sorted(listed) == sorted(STATE_ID.format(shard=s.name) for s in shards)

    # The second run reads only what changed, shard by shard: three shards have changes, one has none.
    changed: dict[str, set[str]] = {}
    for shard in shards[:3]:
        changed[shard.name] = set(backup.sandbox.mutate(shard.account_ids[0], update=3)["updated"])
    backup.sandbox.advance_clock(5)
    objects_before = set(backup.landed())
    second = backup.dagster("run")
    assert second["status"] == "SUCCESS"
    new_records = [r["id"] for name, recs in backup.landed().items() if name not in objects_before for r in recs]
    assert Counter(new_records) == Counter(ad for ids in changed.values() for ad in ids)
    for shard in shards:
        meta = second["steps"][step_key(shard)]["metadata"]
        assert meta["records"] == len(changed.get(shard.name, ())), shard.name
        after = backup.bookmarks(shard)
        moved = {acct for acct in shard.account_ids if after[acct] != before[shard.name][acct]}
        assert moved == ({shard.account_ids[0]} if shard.name in changed else set()), shard.name


def test_a_failing_account_fails_only_its_shard_which_is_retried_and_then_rerun_alone(backup: Backup) -> None:
    shards = backup.shards
    (bad,) = [s for s in shards if FAILING in s.account_ids]
    good = [s for s in shards if s is not bad]
    backup.sandbox.control("POST", "faults", {"faults": [f"act_{FAILING}:permission@after:0"]})

    failed = backup.dagster("run")
    assert failed["status"] == "FAILURE"
    bad_step = failed["steps"][step_key(bad)]
    assert (bad_step["status"], bad_step["attempts"]) == ("failed", 2)  # retried once, alone
    assert bad_step["metadata"]["tap_status"] == "failed"
    assert bad_step["materializations"] == {}  # not backed up: no materialization
    assert "meltano run exited 1" in bad_step["errors"][-1]
    # the run's last lines name the account that failed alone, and why (the token check found it)
    assert f"act_{FAILING}: a permission is missing on this ad account" in bad_step["metadata"]["log_tail"]
    for shard in good:
        data = failed["steps"][step_key(shard)]
        assert (data["status"], data["attempts"]) == ("succeeded", 1)
    assert failed["steps"].get("summarize", {}).get("status") in (None, "skipped")
    states = backup.states()
    for shard in good:
        assert set(backup.bookmarks(shard)) == set(shard.account_ids)
    assert FAILING not in backup.bookmarks(bad)

    backup.sandbox.control("POST", "faults", {"faults": []})
    rerun = backup.dagster("rerun-failed", failed["run_id"])
    assert rerun["status"] == "SUCCESS"
    assert rerun["parent_run_id"] == failed["run_id"]
    assert set(rerun["steps"]) == {step_key(bad), "summarize"}  # that shard alone, then the summary
    assert set(backup.bookmarks(bad)) == set(bad.account_ids)
    after = backup.states()
    for shard in good:
        key = STATE_ID.format(shard=shard.name)
        assert after[key] == states[key], f"{shard.name}'s state changed"
    # Nothing lost, nothing twice, across the failed run, its retry and the rerun.
    landed = Counter(r["id"] for records in backup.landed().values() for r in records)
    assert set(landed) == backup.truth(list(ACCOUNTS))
    assert set(landed.values()) == {1}
