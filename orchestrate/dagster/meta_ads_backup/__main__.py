"""Command line: run the sharded backup without the UI, e.g. from cron, CI or a test.

    python -m meta_ads_backup plan                  # which account goes to which shard (no run)
    python -m meta_ads_backup run                   # the job, with the multiprocess executor
    python -m meta_ads_backup rerun-failed RUN_ID   # only the steps that failed in RUN_ID

Run from `orchestrate/dagster/` with DAGSTER_HOME set (the multiprocess executor needs a persistent
Dagster instance: runs, events and step outputs live there). `run` and `rerun-failed` print a JSON
report read back from Dagster's event log (each step's status, attempts and output/failure metadata)
and exit 0 only when the run succeeded. In the UI (`dagster dev -w workspace.yaml`) the same run,
steps, metadata and "Re-execute from failure" are at hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, ReexecutionOptions, execute_job, reconstructable

from .definitions import meta_ads_backup
from .meltano_run import MeltanoProject
from .settings import Settings
from .shards import plan_shards

#: Step events and the status they leave the step in.
_STEP_STATUS = {
    "STEP_START": "started",
    "STEP_RESTARTED": "started",
    "STEP_UP_FOR_RETRY": "up_for_retry",
    "STEP_SUCCESS": "succeeded",
    "STEP_FAILURE": "failed",
    "STEP_SKIPPED": "skipped",
}


def _plain(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


def run_report(instance: DagsterInstance, run_id: str) -> dict[str, Any]:
    """What Dagster recorded of a run: its status and each step's status, attempts, metadata and errors.

    Each step also lists the (start, end) times of its attempts, in epoch seconds, and the metadata of the
    assets it materialized, by asset key.
    """
    run = instance.get_run_by_id(run_id)
    assert run is not None, f"no run {run_id} in this Dagster instance"
    steps: dict[str, dict[str, Any]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        step = steps.setdefault(
            event.step_key,
            {"status": None, "attempts": 0, "metadata": {}, "errors": [], "intervals": [], "materializations": {}},
        )
        if event.event_type_value == "STEP_OUTPUT":
            step["metadata"] = _plain(event.step_output_data.metadata)
        if event.event_type_value == "ASSET_MATERIALIZATION":
            materialization = event.step_materialization_data.materialization
            step["materializations"][materialization.asset_key.to_user_string()] = _plain(materialization.metadata)
        if event.event_type_value not in _STEP_STATUS:
            continue
        step["status"] = _STEP_STATUS[event.event_type_value]
        if event.event_type_value in ("STEP_START", "STEP_RESTARTED"):
            step["attempts"] += 1
            step["intervals"].append([entry.timestamp, None])
        elif step["intervals"] and step["intervals"][-1][1] is None:
            step["intervals"][-1][1] = entry.timestamp
        if event.event_type_value in ("STEP_UP_FOR_RETRY", "STEP_FAILURE"):
            failure = getattr(event.event_specific_data, "user_failure_data", None)
            error = getattr(event.event_specific_data, "error", None)
            error = getattr(error, "cause", None) or error  # a retry's error wraps the op's exception
            step["errors"].append(
                getattr(failure, "description", None) or getattr(error, "message", None) or event.message
            )
            if failure is not None and failure.metadata:
                step["metadata"] = _plain(failure.metadata)
    return {
        "run_id": run_id,
        "parent_run_id": run.parent_run_id,
        "status": run.status.value,
        "steps": steps,
    }


def _execute(parent_run_id: str | None) -> dict[str, Any]:
    with DagsterInstance.get() as instance:
        options = None if parent_run_id is None else ReexecutionOptions.from_failure(parent_run_id, instance)
        with execute_job(
            reconstructable(meta_ads_backup), instance=instance, reexecution_options=options, raise_on_error=False
        ) as result:
            return run_report(instance, result.run_id)


def main(argv: list[str] | None = None) -> int:
    """Parse the command and do it; the exit code is 0 when the run (or plan) succeeded."""
    parser = argparse.ArgumentParser(prog="python -m meta_ads_backup", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("plan", help="print the shards and their accounts")
    run = commands.add_parser("run", help="run the backup job")
    rerun = commands.add_parser("rerun-failed", help="re-execute only the failed steps of a run")
    rerun.add_argument("run_id")
    for sub in (run, rerun):
        sub.add_argument("--report", type=Path, help="also write the JSON report to this file")
    args = parser.parse_args(argv)

    if args.command == "plan":
        settings = Settings.from_env()
        accounts = MeltanoProject(settings.project_root, settings.meltano_bin).account_ids()
        shards = plan_shards(accounts, settings.shard_count)
        print(json.dumps({s.name: list(s.account_ids) for s in shards}, indent=2))
        return 0
    report = _execute(args.run_id if args.command == "rerun-failed" else None)
    text = json.dumps(report, indent=2, default=str)
    if args.report:
        args.report.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0 if report["status"] == "SUCCESS" else 1


if __name__ == "__main__":
    sys.exit(main())
