"""The Dagster code location: the sharded backup job and its daily schedule.

    plan_shards ──► backup_shard[shard_0] ─┐
                ├─► backup_shard[shard_1] ─┼─► summarize
                └─► backup_shard[shard_…] ─┘

`plan_shards` reads the tap's `account_ids` through Meltano (or, without them, the accounts the tap
discovers from its business_ids or token: `tap-meta-ads --list-accounts`) and deals them into `META_ADS_SHARDS` shards
by a stable hash (shards.py); each shard becomes one dynamic step that runs
`meltano run --state-id-suffix=shard-<i> tap-meta-ads target-gcs` for its accounts alone. The
multiprocess executor runs each step in its own process, at most `META_ADS_MAX_CONCURRENT_SHARDS` at
once; a failed step is retried alone under the step's retry policy, and "re-execute from failure"
(the UI, or `python -m meta_ads_backup rerun-failed RUN_ID`) runs only the shards that failed. Each
shard's step output carries the tap's run summary as metadata (records, requests, retries, waits, state
id), visible per step in Dagster's UI, and as a materialization of the asset `meta_ads_backup/shard-<i>`,
whose numbers Dagster keeps and plots night after night; a failed step carries the same in its failure.

Why the steps call `meltano` instead of using dagster-meltano: see docs/scale-out.md.
Dagster never imports the tap. No `from __future__ import annotations` here: Dagster reads the ops'
annotations at run time (the context's type, the inputs' and outputs' types).
"""

from collections.abc import Iterator
from typing import Any

import yaml
from dagster import (
    AssetMaterialization,
    Backoff,
    DefaultScheduleStatus,
    Definitions,
    DynamicOut,
    DynamicOutput,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Output,
    RetryPolicy,
    ScheduleDefinition,
    job,
    multiprocess_executor,
    op,
)

from .meltano_run import MeltanoProject, ShardRun
from .settings import Settings
from .shards import Shard, plan_shards

SETTINGS = Settings.from_env()
RETRY_POLICY = RetryPolicy(
    max_retries=SETTINGS.retries, delay=SETTINGS.retry_delay_seconds, backoff=Backoff.EXPONENTIAL
)


def _project() -> MeltanoProject:
    return MeltanoProject(SETTINGS.project_root, SETTINGS.meltano_bin)


def _mapping_key(shard: Shard) -> str:
    """Dagster's mapping keys allow letters, digits and `_` only: `shard-2` becomes `shard_2`."""
    return shard.name.replace("-", "_")


@op(out=DynamicOut(dict), retry_policy=RETRY_POLICY, tags={"kind": "meltano"})
def plan_shards_op(context: OpExecutionContext) -> Iterator[DynamicOutput[dict[str, Any]]]:
    """Deal the tap's ad accounts into shards by a stable hash; one output per non-empty shard."""
    accounts = _project().account_ids()
    shards = plan_shards(accounts, SETTINGS.shard_count)
    context.log.info(
        f"{len(accounts)} ad accounts in {len(shards)} of {SETTINGS.shard_count} shards, "
        f"at most {SETTINGS.max_concurrent} at once: " + "; ".join(f"{s.name}: {len(s.account_ids)}" for s in shards)
    )
    for shard in shards:
        yield DynamicOutput(
            {"index": shard.index, "account_ids": list(shard.account_ids)}, mapping_key=_mapping_key(shard)
        )


def _metadata(run: ShardRun) -> dict[str, Any]:
    """The shard's run summary as Dagster metadata (shown per step in the UI)."""
    counters = run.counters()
    metadata: dict[str, Any] = {
        "shard": MetadataValue.text(run.shard),
        "state_id": MetadataValue.text(run.state_id or "unknown"),
        "accounts": MetadataValue.int(len(run.account_ids)),
        "account_ids": MetadataValue.json(list(run.account_ids)),
        "records": MetadataValue.int(counters["records"]),
        "pages": MetadataValue.int(counters["pages"]),
        "requests": MetadataValue.int(counters["requests"]),
        "retries": MetadataValue.int(counters["retries"]),
        "retries_by_reason": MetadataValue.json(counters["retries_by_reason"]),
        "throttle_wait_seconds": MetadataValue.float(counters["throttle_wait_seconds"]),
        "pacing_wait_seconds": MetadataValue.float(counters["pacing_wait_seconds"]),
        "page_size_reductions": MetadataValue.int(counters["page_size_reductions"]),
        "tap_status": MetadataValue.text(str((run.summary or {}).get("status", "no summary"))),
        "exit_code": MetadataValue.int(run.exit_code),
        "duration_seconds": MetadataValue.float(round(run.duration_seconds, 3)),
    }
    if not run.ok:
        metadata["log_tail"] = MetadataValue.md("```\n" + "\n".join(run.log_tail) + "\n```")
    return metadata


@op(retry_policy=RETRY_POLICY, tags={"kind": "meltano"})
def backup_shard(context: OpExecutionContext, shard: dict[str, Any]) -> Output[dict[str, Any]]:
    """One shard: `meltano run --state-id-suffix=shard-<i> tap-meta-ads target-gcs` for its accounts."""
    plan = Shard(int(shard["index"]), tuple(shard["account_ids"]))
    context.log.info(
        f"{plan.name} attempt {context.retry_number + 1}: {len(plan.account_ids)} accounts "
        f"({', '.join(plan.account_ids)})"
    )
    # Meltano's own lines go to the step's captured output (the UI's stdout/stderr tab), not one event
    # per line into Dagster's event log.
    run = _project().run_shard(plan, echo=lambda text: print(text, flush=True))
    metadata = _metadata(run)
    counters = run.counters()
    if not run.ok:
        raise Failure(
            description=(
                f"{plan.name}: meltano run exited {run.exit_code} ({run.meltano_error or 'no reason given'}); "
                f"the tap {(run.summary or {}).get('status', 'logged no summary')} after "
                f"{counters['records']} records. Its state keeps what was verified in the bucket; "
                "the shard is retried alone."
            ),
            metadata=metadata,
        )
    context.log.info(
        f"{plan.name} done in {run.duration_seconds:.1f}s: {counters['records']} records, "
        f"{counters['requests']} requests, {counters['retries']} retries, state {run.state_id}"
    )
    # The same summary as a materialization of the shard's backup: Dagster keeps its history per asset
    # and plots the numbers night after night (records, requests, retries, waits per shard).
    context.log_event(
        AssetMaterialization(
            asset_key=["meta_ads_backup", plan.name],
            description=f"{plan.name} backed up to GCS",
            metadata=metadata,
        )
    )
    return Output(run.as_dict(), metadata=metadata)


@op(tags={"kind": "meltano"})
def summarize(context: OpExecutionContext, runs: list[dict[str, Any]]) -> Output[dict[str, Any]]:
    """The whole backup: totals over every shard."""
    keys = ("records", "pages", "requests", "retries")
    totals = {key: sum(int(r[key]) for r in runs) for key in keys}
    totals["shards"] = len(runs)
    totals["accounts"] = sum(len(r["account_ids"]) for r in runs)
    context.log.info(f"backup done: {totals}")
    return Output(
        {**totals, "runs": runs},
        metadata={
            **{key: MetadataValue.int(value) for key, value in totals.items()},
            "per_shard": MetadataValue.md(
                "| shard | accounts | records | requests | retries | seconds |\n|---|---|---|---|---|---|\n"
                + "\n".join(
                    f"| {r['shard']} | {len(r['account_ids'])} | {r['records']} | {r['requests']} | "
                    f"{r['retries']} | {r['duration_seconds']} |"
                    for r in sorted(runs, key=lambda r: r["shard"])
                )
            ),
        },
    )


@job(
    # A process per shard step, at most K at once. Forked from a server that has Dagster and this module
    # loaded already, instead of a fresh interpreter importing Dagster for every step (spawn).
    executor_def=multiprocess_executor.configured(
        {"max_concurrent": SETTINGS.max_concurrent, "start_method": {"forkserver": {}}}
    ),
    description="Back every Meta ad account up to GCS, one `meltano run` per shard of accounts.",
    tags={"meta_ads/backup": "daily"},
)
def meta_ads_backup() -> None:
    """plan_shards -> backup_shard per shard (at most K at once) -> summarize."""
    runs = plan_shards_op().map(backup_shard)
    summarize(runs.collect())


def meltano_schedule_cron(name: str) -> str:
    """The cron of a schedule in meltano.yml, so that the time of the backup has one home."""
    with (SETTINGS.project_root / "meltano.yml").open(encoding="utf-8") as fh:
        project = yaml.safe_load(fh)
    for schedule in project.get("schedules") or []:
        if schedule.get("name") == name:
            return str(schedule["interval"])
    raise ValueError(f"meltano.yml has no schedule named {name!r} (META_ADS_SCHEDULE)")


daily_backup = ScheduleDefinition(
    name="meta_ads_daily_backup",
    job=meta_ads_backup,
    cron_schedule=meltano_schedule_cron(SETTINGS.schedule_name),
    execution_timezone=SETTINGS.schedule_timezone,
    default_status=DefaultScheduleStatus.RUNNING,
    description=f"The Meltano schedule {SETTINGS.schedule_name!r}, run by Dagster's daemon.",
)

defs = Definitions(jobs=[meta_ads_backup], schedules=[daily_backup])
