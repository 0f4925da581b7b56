"""Shared by the insights tests: fast settings, catalogs that select insights streams, exact comparisons."""

from __future__ import annotations

import datetime
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from tap_meta_ads_sandbox import SandboxServer

from tests.tap_harness import base_config, run_tap

SCHEMA = json.loads((Path(__file__).parent.parent / "tap_meta_ads/schemas/ads_insights.json").read_text())
ALL_FIELDS = [f for f in SCHEMA["properties"] if f not in ("date_start", "date_stop")]
WINDOWS = ["1d_click", "7d_click", "1d_view"]
#: The statuses the tap's default ``effective_statuses`` gives each level's insights status filter.
LEVEL_STATUSES = {
    "ad": [
        "ACTIVE",
        "PAUSED",
        "ARCHIVED",
        "IN_PROCESS",
        "WITH_ISSUES",
        "CAMPAIGN_PAUSED",
        "ADSET_PAUSED",
        "PENDING_REVIEW",
        "DISAPPROVED",
        "PREAPPROVED",
        "PENDING_BILLING_INFO",
    ],
    "adset": ["ACTIVE", "PAUSED", "ARCHIVED", "IN_PROCESS", "WITH_ISSUES", "CAMPAIGN_PAUSED"],
    "campaign": ["ACTIVE", "PAUSED", "ARCHIVED", "IN_PROCESS", "WITH_ISSUES"],
}


def status_filter(level: str) -> list[dict[str, Any]]:
    """The ``filtering`` rule that lets archived ads' rows in (Meta leaves them out without one)."""
    return [{"field": f"{level}.effective_status", "operator": "IN", "value": LEVEL_STATUSES[level]}]


#: Report runs that poll every few milliseconds and count as stuck after a fraction of a second.
FAST_INSIGHTS = {
    "insights_poll_interval_seconds": 0.005,
    "insights_job_timeout_seconds": 0.3,
    "insights_window_days": 7,
    "insights_jobs_in_flight": 4,
}


def insights_config(url: str, accounts: list[str], since: str, until: str, **overrides: Any) -> dict[str, Any]:
    """A tap config reading insights between two days (inclusive)."""
    return base_config(url, accounts, start_date=f"{since}T00:00:00Z", end_date=until, **{**FAST_INSIGHTS, **overrides})


def select(config: dict[str, Any], streams: set[str]) -> dict[str, Any]:
    """The tap's catalog for ``config`` with only ``streams`` selected."""
    run = run_tap(config, extra_args=["--discover"])
    assert run.returncode == 0, run.stderr[-2000:]
    catalog = json.loads(run.stdout)
    for entry in catalog["streams"]:
        for meta in entry["metadata"]:
            if meta["breadcrumb"] == []:
                meta["metadata"]["selected"] = entry["tap_stream_id"] in streams
    return catalog


def exact_records(stdout: str, stream: str) -> list[dict[str, Any]]:
    """The stream's records, read with non-integer numbers as Decimal (exactly as written)."""
    out = []
    for line in stdout.splitlines():
        message = json.loads(line, parse_float=Decimal)
        if message.get("type") == "RECORD" and message["stream"] == stream:
            out.append(message["record"])
    return out


def key_properties(stdout: str, stream: str) -> list[str]:
    for line in stdout.splitlines():
        message = json.loads(line)
        if message.get("type") == "SCHEMA" and message["stream"] == stream:
            return list(message["key_properties"])
    raise AssertionError(f"no SCHEMA for {stream}")


def typed(row: dict[str, Any]) -> dict[str, Any]:
    """A truth row as the schema types it, converted here independently of the tap: ints, Decimals."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        prop = SCHEMA["properties"].get(name, {"type": "string"})
        kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        if "integer" in kinds:
            out[name] = int(value)
        elif "number" in kinds:
            out[name] = Decimal(value)
        elif "array" in kinds:
            out[name] = [{k: v if k.startswith("action_") else Decimal(v) for k, v in item.items()} for item in value]
        else:
            out[name] = value
    return out


def truth(
    sb: SandboxServer, account: str, since: str, until: str, *, fields: list[str] | None = None, **params: Any
) -> list[dict[str, Any]]:
    """The sandbox's rows for a daily ad-level report (the tap's default windows and statuses), typed."""
    level = str(params.get("level", "ad"))
    if level != "account":
        params.setdefault("filtering", status_filter(level))
    query = {
        "level": "ad",
        "fields": ",".join(fields or ALL_FIELDS),
        "time_range": {"since": since, "until": until},
        "time_increment": "1",
        "action_attribution_windows": WINDOWS,
        **params,
    }
    return [typed(r) for r in sb.insights_truth(account, **query)]


def duplicates(keys: list[tuple]) -> dict[tuple, int]:
    return {k: n for k, n in Counter(keys).items() if n > 1}


def day(text: str) -> datetime.date:
    return datetime.date.fromisoformat(text)
