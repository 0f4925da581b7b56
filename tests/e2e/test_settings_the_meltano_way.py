"""Every kind of tap setting, given the Meltano way, reaches the tap in a real `meltano run` (issue 20).

Meltano documents three places besides `meltano.yml`: environment variables (`TAP_META_ADS_<SETTING>`),
the project's `.env`, and `meltano config set`. Meltano 4.4.1 casts what comes from the first two by
the setting's `kind`, and with `kind: decimal` it crashed before the tap started ("Object of type Decimal
is not JSON serializable"; `meltano.yml` says why and what we declare instead). Each test sets one
setting of every kind (string, integer, decimal, boolean, array, object), runs `meltano run tap-meta-ads
target-jsonl` against the sandbox, and shows each value arriving through what the tap then does:

| kind | setting | seen as |
|---|---|---|
| string | `api_url` | the run reaches this test's sandbox (the environment's own `api_url` points at port 1) |
| array | `account_ids` | records of exactly that account |
| integer | `page_size` | the sandbox's request log: every `limit` is that number |
| decimal | `backoff_base_seconds`, `backoff_max_seconds` | one 503, and the tap's retry line "waiting 0.25s" |
| boolean, integer | `flattening_enabled`, `flattening_max_depth` | records carry `creative__id`, not `creative` |
| object | `stream_maps` | ads arrive without `name` |
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from tap_meta_ads.tap import DEFAULT_EFFECTIVE_STATUSES
from tests.e2e.servers import ROOT, Meltano, Sandbox

ACCOUNT = "1002"
PAGE_SIZE = 37
#: base 0.75 s with jitter x0.5-1.0 is at least 0.375 s, so the cap of 0.25 s is the wait, to the digit
BACKOFF = {"backoff_base_seconds": "0.75", "backoff_max_seconds": "0.25"}
#: the account's first call is the token check's look at the account (before any extraction); its second is the
#: first page of ads, which gets the 503
FAULT = f"act_{ACCOUNT}:http503@2"
WAIT_LINE = f"Retrying ads account {ACCOUNT}: reason=transient:http503 attempt 1 of 11, waiting 0.25s"
STREAM_MAPS = {"ads": {"name": "__NULL__"}}


def every_kind(sandbox: Sandbox) -> dict[str, str]:
    """One setting of every kind, as the text an environment variable or `.env` line holds."""
    return {
        "api_url": sandbox.url,  # string
        "account_ids": json.dumps([f"act_{ACCOUNT}"]),  # array
        "page_size": str(PAGE_SIZE),  # integer
        **BACKOFF,  # decimal
        "flattening_enabled": "true",  # boolean
        "flattening_max_depth": "1",  # integer
        "stream_maps": json.dumps(STREAM_MAPS),  # object
    }


def env_vars(settings: dict[str, str]) -> dict[str, str]:
    return {f"TAP_META_ADS_{name.upper()}": value for name, value in settings.items()}


def run_and_check(meltano: Meltano, sandbox: Sandbox, jsonl: Path) -> None:
    """`meltano run` with one 503 first; then every setting's effect, as the module docstring lists."""
    sandbox.control("POST", "faults", {"faults": [FAULT]})
    sandbox.control("POST", "stats/reset")
    run = meltano("run", "tap-meta-ads", "target-jsonl", check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, run.stderr[:6000]
    assert "Traceback" not in output
    assert "not JSON serializable" not in output

    records = [json.loads(line) for line in (jsonl / "ads.jsonl").read_text().splitlines()]  # string: it ran
    truth = sandbox.truth(ACCOUNT, DEFAULT_EFFECTIVE_STATUSES)
    assert {r["account_id"] for r in records} == {ACCOUNT}  # array
    assert sorted(r["id"] for r in records) == sorted(ad["id"] for ad in truth)
    limits = {e["params"].get("limit") for e in sandbox.control("GET", "stats")["log"] if e["route"] == "ads"}
    assert limits == {str(PAGE_SIZE)}  # integer
    assert WAIT_LINE in output  # decimal: the cap, 0.25 s, is the wait
    assert all("creative__id" in r and "creative" not in r for r in records)  # boolean + integer
    assert all("name" not in r for r in records)  # object


def test_every_kind_through_environment_variables(sandbox: Sandbox, make_meltano: Callable[..., Meltano]) -> None:
    # SANDBOX_PORT=1: the sandbox environment's api_url is unreachable, so only the variable can win
    meltano = make_meltano(sandbox_url_port=1, TAP_META_ADS__SELECT='["ads.*"]', **env_vars(every_kind(sandbox)))
    run_and_check(meltano, sandbox, Path(meltano.env["TARGET_JSONL_DESTINATION_PATH"]))


def copied_project(workdir: Path) -> Path:
    """This project's meltano.yml in a folder of its own, using the plugins `.ci/setup` installed.

    `meltano config set` writes into meltano.yml and `.env`, which the repository's own must not get.
    """
    project = workdir / "project"
    (project / ".meltano").mkdir(parents=True)
    shutil.copy2(ROOT / "meltano.yml", project / "meltano.yml")
    for plugin_type in ("extractors", "loaders"):
        os.symlink(ROOT / ".meltano" / plugin_type, project / ".meltano" / plugin_type)
    return project


def test_every_kind_through_dotenv_and_config_set(
    sandbox: Sandbox, make_meltano: Callable[..., Meltano], workdir: Path
) -> None:
    project = copied_project(workdir)
    meltano = make_meltano(sandbox_url_port=1, project=project, TAP_META_ADS__SELECT='["ads.*"]')
    settings = every_kind(sandbox)
    # through `.env`: a decimal, the boolean and the array (an .env line is text, as a variable)
    in_dotenv = ["backoff_base_seconds", "flattening_enabled", "account_ids"]
    (project / ".env").write_text("".join(f"TAP_META_ADS_{n.upper()}='{settings[n]}'\n" for n in in_dotenv))
    # through `meltano config set`: the string, the integers, the object and a decimal
    for name in ("api_url", "page_size", "flattening_max_depth", "stream_maps", "backoff_max_seconds"):
        meltano("config", "set", "tap-meta-ads", name, settings[name])

    shown = json.loads(meltano("config", "print", "tap-meta-ads", "--format=json").stdout)
    assert shown["backoff_max_seconds"] == "0.25"  # Meltano hands the text on; the tap reads a number
    assert shown["stream_maps"] == STREAM_MAPS
    assert shown["page_size"] == PAGE_SIZE
    run_and_check(meltano, sandbox, Path(meltano.env["TARGET_JSONL_DESTINATION_PATH"]))
