"""The sharded Dagster backup against local servers: used by tests/orchestrate and benchmarks/bench_shards.py.

`backup_servers` starts the Graph API sandbox and the GCS emulator (the bucket and Meltano's state backend),
and builds the environment every process shares: Meltano's (sandbox environment, GCS state backend, its own
system database), the orchestration's (META_ADS_*), and a temporary DAGSTER_HOME. `Backup.dagster` runs
`python -m meta_ads_backup ...` in Dagster's own venv (.ci/.tools/dagster), as the multiprocess executor
needs, and returns the JSON report read back from Dagster's event log. What landed is read from the bucket
and the state from the state backend's objects, never from the orchestrator's own word.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tap_meta_ads.tap import DEFAULT_EFFECTIVE_STATUSES
from tests.e2e.servers import MELTANO, ROOT, TOOLS, GcsEmulator, Sandbox, require, running

#: Dagster's working directory; its package `meta_ads_backup` is plain Python but for definitions.py and
#: __main__.py, so the shard plan can be computed here, in the tap's venv.
ORCHESTRATE = ROOT / "orchestrate" / "dagster"
if str(ORCHESTRATE) not in sys.path:
    sys.path.insert(0, str(ORCHESTRATE))

from meta_ads_backup.shards import Shard, plan_shards  # noqa: E402

DAGSTER_PYTHON = TOOLS / "dagster" / "bin" / "python"
BUCKET = "meta-ads-backup"
STATE_PREFIX = "meltano-state"
STATE_ID = "sandbox:tap-meta-ads-to-target-gcs:{shard}"


@dataclass
class Backup:
    """The servers, the environment every process shares, and ways to run and inspect the backup."""

    workdir: Path
    sandbox: Sandbox
    gcs: GcsEmulator
    env: dict[str, str]
    shard_count: int

    @property
    def shards(self) -> list[Shard]:
        return plan_shards(list(self.sandbox.accounts), self.shard_count)

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
            timeout=900,
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
        """The ids of every ad of these accounts that the tap should extract."""
        return {ad["id"] for acct in accounts for ad in self.sandbox.truth(acct, DEFAULT_EFFECTIVE_STATUSES)}


@contextmanager
def backup_servers(
    workdir: Path,
    accounts: dict[str, int],
    *,
    shards: int,
    max_concurrent: int,
    retries: int = 1,
    sandbox_args: tuple[str, ...] = (),
) -> Iterator[Backup]:
    """A sandbox with these accounts, a GCS emulator, and the environment of a sharded backup over them."""
    home = workdir / "dagster-home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with (
        running(Sandbox(accounts, log_dir=workdir, extra_args=sandbox_args)) as sandbox,
        running(GcsEmulator(BUCKET, log_dir=workdir)) as gcs,
    ):
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "MELTANO_ENVIRONMENT": "sandbox",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_DATABASE_URI": f"sqlite:///{workdir / 'meltano.db'}",
            "MELTANO_STATE_BACKEND_URI": f"gs://{BUCKET}/{STATE_PREFIX}",
            "STORAGE_EMULATOR_HOST": gcs.url,
            "SANDBOX_PORT": str(sandbox.port),
            "GCS_EMULATOR_PORT": str(gcs.port),
            "GCS_BUCKET": BUCKET,
            "META_ADS_MELTANO_BIN": str(require(MELTANO)),
            "TAP_META_ADS_ACCOUNT_IDS": json.dumps(list(accounts)),
            # The shards' checks count ads (records, one request per account); the sandbox environment
            # selects every object stream, so these runs select `ads` alone.
            "TAP_META_ADS__SELECT": json.dumps(["ads.*"]),
            "META_ADS_SHARDS": str(shards),
            "META_ADS_MAX_CONCURRENT_SHARDS": str(max_concurrent),
            "META_ADS_SHARD_RETRIES": str(retries),
            "META_ADS_SHARD_RETRY_DELAY_SECONDS": "0",
        }
        yield Backup(workdir, sandbox, gcs, env, shards)


def step_key(shard: Shard) -> str:
    """The Dagster step of a shard, e.g. `backup_shard[shard_2]`."""
    return f"backup_shard[{shard.name.replace('-', '_')}]"


def most_at_once(report: dict[str, Any]) -> int:
    """The largest number of shard steps that were running at the same moment."""
    edges = []
    for key, data in report["steps"].items():
        if key.startswith("backup_shard["):
            for start, end in data["intervals"]:
                edges += [(start, 1), (end, -1)]
    running_now = peak = 0
    for _, delta in sorted(edges):
        running_now += delta
        peak = max(peak, running_now)
    return peak
