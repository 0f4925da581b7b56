"""The orchestration's settings, all from the environment (none is code): what to run, how wide, how often.

| variable | default | what |
|---|---|---|
| `MELTANO_PROJECT_ROOT` | the folder holding `orchestrate/` | the Meltano project (Meltano sets it for its utilities) |
| `MELTANO_ENVIRONMENT` | meltano.yml's default | read by Meltano itself, e.g. `prod` |
| `META_ADS_MELTANO_BIN` | `meltano` | the Meltano executable |
| `META_ADS_SHARDS` | 4 | N: shards the ad accounts are hashed into (each one `meltano run`) |
| `META_ADS_MAX_CONCURRENT_SHARDS` | 4 | K: shards running at once (the multiprocess executor's `max_concurrent`) |
| `META_ADS_SHARD_RETRIES` | 2 | retries of a failed shard (the shard alone) |
| `META_ADS_SHARD_RETRY_DELAY_SECONDS` | 300 | first wait before a retry; doubles for each further one |
| `META_ADS_SCHEDULE` | `daily-backup` | the Meltano schedule (meltano.yml) whose cron the Dagster schedule uses |
| `META_ADS_SCHEDULE_TIMEZONE` | `UTC` | the timezone of that cron |

The ad accounts are not here: they are the tap's own `account_ids` setting, read through Meltano (so
`TAP_META_ADS_ACCOUNT_IDS`, `.env` or meltano.yml, whichever Meltano resolves), or without it the accounts
the tap discovers (`business_ids`, the token's `/me/adaccounts`), in one place for sharded and unsharded
runs alike.

Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: orchestrate/dagster/meta_ads_backup/settings.py -> the repository, where meltano.yml is.
DEFAULT_PROJECT_ROOT = Path(__file__).resolve().parents[3]


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r} must be at least {minimum:g}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    value = _number(env, name, default, minimum)
    if value != int(value):
        raise ValueError(f"{name}={env[name]!r} is not a whole number")
    return int(value)


@dataclass(frozen=True)
class Settings:
    """Everything the Dagster definitions need to know, read once per process."""

    project_root: Path
    meltano_bin: str
    shard_count: int
    max_concurrent: int
    retries: int
    retry_delay_seconds: float
    schedule_name: str
    schedule_timezone: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings; ValueError naming the variable when one is malformed."""
        env = os.environ if env is None else env
        return cls(
            project_root=Path(env.get("MELTANO_PROJECT_ROOT") or DEFAULT_PROJECT_ROOT),
            meltano_bin=env.get("META_ADS_MELTANO_BIN") or "meltano",
            shard_count=_integer(env, "META_ADS_SHARDS", 4, 1),
            max_concurrent=_integer(env, "META_ADS_MAX_CONCURRENT_SHARDS", 4, 1),
            retries=_integer(env, "META_ADS_SHARD_RETRIES", 2, 0),
            retry_delay_seconds=_number(env, "META_ADS_SHARD_RETRY_DELAY_SECONDS", 300.0, 0),
            schedule_name=env.get("META_ADS_SCHEDULE") or "daily-backup",
            schedule_timezone=env.get("META_ADS_SCHEDULE_TIMEZONE") or "UTC",
        )
