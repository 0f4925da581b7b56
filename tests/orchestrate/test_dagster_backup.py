"""The sharded backup on Dagster, offline: 12 sandbox ad accounts in 4 shards, the GCS emulator as both the
bucket and Meltano's state backend, Dagster's multiprocess executor (a process per shard step).

The job runs through `python -m meta_ads_backup` in Dagster's own venv (.ci/.tools/dagster) with a
temporary DAGSTER_HOME; its JSON report is read back from Dagster's event log (each step's status,
attempts, start/end times and metadata). What landed is read from the bucket, the state from the state
backend's objects: neither comes from the orchestrator's own word.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from meta_ads_backup.shards import Shard, plan_shards

from tap_meta_ads.tap import DEFAULT_EFFECTIVE_STATUSES
from tests.e2e.servers import MELTANO, TOOLS, GcsEmulator, Meltano, Sandbox, require
from tests.orchestrate.conftest import ORCHESTRATE

DAGSTER_PYTHON = TOOLS / "dagster" / "bin" / "python"
BUCKET = "meta-ads-backup"
STATE_PREFIX = "meltano-state"
STATE_ID = "sandbox:tap-meta-ads-to-target-gcs:{shard}"
#: Twelve small accounts (one page each at page_size 100) whose hash fills all 4 shards (2, 3, 4 and 3).
ACCOUNTS = {str(4001 + i): 20 + 5 * i for i in range(12)}
SHARDS = 4
MAX_CONCURRENT = 2
#: The account that fails fatally in the fault test: one of four in its shard, neither first nor last.
FAILING = "4007"


@dataclass
class Backup:
    """The servers, the environment every process shares, and ways to run and inspect the backup."""

    workdir: Path
    sandbox: Sandbox
    gcs: GcsEmulator
    env: dict[str, str]

    @property
    def shards(self) -> list[Shard]:
        return plan_shards(list(ACCOUNTS), SHARDS)

    def dagster(self, *args: str) -> dict[str, Any]:
        """Run `python -m meta_ads_backup ARGS` and return its report (from Dagster's event log)."""
        report = self.workdir / "report.json"
        report.unlink(missing_ok=True)
        proc = subprocess.run(
            [str(require(DAGSTER_PYTHON)), "-m", "meta_ads_backup", *args, "--report", str(report)],
            cwd=ORCHESTRATE,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert report.exists(), f"no report; exit {proc.returncode}:\n{proc.stderr[-6000:]}"
        doc: dict[str, Any] = json.loads(report.read_text())
        assert proc.returncode == (0 if doc["status"] == "SUCCESS" else 1)
        return doc

    def landed(self) -> dict[str, list[dict[str, Any]]]:
        """Every object under meta-ads/ads/ with its records."""
        return {name: self.gcs.records(name) for name in self.gcs.object_names("meta-ads/ads/")}

    def states(self) -> dict[str, bytes]:
        """The state backend's objects by state id, as stored."""
        found = {}
        for name in self.gcs.object_names(f"{STATE_PREFIX}/"):
            state_id, _, file = name.removeprefix(f"{STATE_PREFIX}/").rpartition("/")
            if file == "state.json":
                found[state_id] = self.gcs.read(name)
        return found

    def bookmarks(self, shard: Shard) -> dict[str, str]:
        """The `updated_time` bookmark of each account in the shard's stored state."""
        raw = self.states().get(STATE_ID.format(shard=shard.name))
        if raw is None:
            return {}
        doc = json.loads(raw)  # Meltano's state file: {"completed": {"singer_state": ...}, "partial": {}}
        assert doc["partial"] == {}, doc
        partitions = doc["completed"]["singer_state"]["bookmarks"]["ads"]["partitions"]
        # An account that failed before its first bookmark has a partition with a resume point only.
        return {
            p["context"]["account_id"]: p["replication_key_value"] for p in partitions if "replication_key_value" in p
        }

    def truth(self, accounts: list[str] | tuple[str, ...]) -> set[str]:
        return {ad["id"] for acct in accounts for ad in self.sandbox.truth(acct, DEFAULT_EFFECTIVE_STATUSES)}


@pytest.fixture
def backup(tmp_path: Path) -> Iterator[Backup]:
    sandbox = Sandbox(ACCOUNTS, log_dir=tmp_path)
    gcs = GcsEmulator(BUCKET, log_dir=tmp_path)
    home = tmp_path / "dagster-home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MELTANO_ENVIRONMENT": "sandbox",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "MELTANO_STATE_BACKEND_URI": f"gs://{BUCKET}/{STATE_PREFIX}",
        "STORAGE_EMULATOR_HOST": gcs.url,
        "SANDBOX_PORT": str(sandbox.port),
        "GCS_EMULATOR_PORT": str(gcs.port),
        "GCS_BUCKET": BUCKET,
        "META_ADS_MELTANO_BIN": str(require(MELTANO)),
        "TAP_META_ADS_ACCOUNT_IDS": json.dumps(list(ACCOUNTS)),
        "META_ADS_SHARDS": str(SHARDS),
        "META_ADS_MAX_CONCURRENT_SHARDS": str(MAX_CONCURRENT),
        "META_ADS_SHARD_RETRIES": "1",
        "META_ADS_SHARD_RETRY_DELAY_SECONDS": "0",
    }
    yield Backup(tmp_path, sandbox, gcs, env)
    sandbox.stop()
    gcs.stop()


def step(shard: Shard) -> str:
    return f"backup_shard[{shard.name.replace('-', '_')}]"


def most_at_once(report: dict[str, Any]) -> int:
    """The largest number of shard steps that were running at the same moment."""
    edges = []
    for key, data in report["steps"].items():
        if key.startswith("backup_shard["):
            for start, end in data["intervals"]:
                edges += [(start, 1), (end, -1)]
    running = peak = 0
    for _, delta in sorted(edges, key=lambda e: (e[0], e[1])):
        running += delta
        peak = max(peak, running)
    return peak


def test_every_account_lands_once_each_shard_keeps_its_state_and_runs_again_incrementally(backup: Backup) -> None:
    shards = backup.shards
    assert [len(s.account_ids) for s in shards] == [2, 3, 4, 3]

    first = backup.dagster("run")
    assert first["status"] == "SUCCESS"
    for shard in shards:
        data = first["steps"][step(shard)]
        assert (data["status"], data["attempts"]) == ("succeeded", 1)
        meta = data["metadata"]
        assert meta["state_id"] == STATE_ID.format(shard=shard.name)
        assert meta["account_ids"] == list(shard.account_ids)
        # The tap's RUN_SUMMARY, per shard: every ad of its accounts, one request per account's page.
        assert meta["records"] == len(backup.truth(shard.account_ids))
        assert meta["requests"] == len(shard.account_ids)
        assert (meta["retries"], meta["tap_status"]) == (0, "succeeded")
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
        meta = second["steps"][step(shard)]["metadata"]
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
    bad_step = failed["steps"][step(bad)]
    assert (bad_step["status"], bad_step["attempts"]) == ("failed", 2)  # retried once, alone
    assert bad_step["metadata"]["tap_status"] == "failed"
    assert "meltano run exited 1" in bad_step["errors"][-1]
    assert "Permission missing" in bad_step["metadata"]["log_tail"]
    for shard in good:
        assert (failed["steps"][step(shard)]["status"], failed["steps"][step(shard)]["attempts"]) == ("succeeded", 1)
    assert failed["steps"].get("summarize", {}).get("status") in (None, "skipped")
    states = backup.states()
    for shard in good:
        assert set(backup.bookmarks(shard)) == set(shard.account_ids)
    assert FAILING not in backup.bookmarks(bad)

    backup.sandbox.control("POST", "faults", {"faults": []})
    rerun = backup.dagster("rerun-failed", failed["run_id"])
    assert rerun["status"] == "SUCCESS"
    assert rerun["parent_run_id"] == failed["run_id"]
    assert set(rerun["steps"]) == {step(bad), "summarize"}  # that shard alone, then the summary
    assert set(backup.bookmarks(bad)) == set(bad.account_ids)
    after = backup.states()
    for shard in good:
        key = STATE_ID.format(shard=shard.name)
        assert after[key] == states[key], f"{shard.name}'s state changed"
    # Nothing lost, nothing twice, across the failed run, its retry and the rerun.
    landed = Counter(r["id"] for records in backup.landed().values() for r in records)
    assert set(landed) == backup.truth(list(ACCOUNTS))
    assert set(landed.values()) == {1}
