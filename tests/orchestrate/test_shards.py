"""Sharding by a stable hash: adding or removing accounts never moves another; settings; Meltano's output."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from meta_ads_backup.meltano_run import MeltanoError, MeltanoProject, parse_line, run_summary
from meta_ads_backup.settings import Settings
from meta_ads_backup.shards import Shard, plan_shards, shard_of

from tests.e2e.servers import MELTANO, ROOT, require
from tests.orchestrate.conftest import ORCHESTRATE

TWELVE = [str(3001 + i) for i in range(12)]


def assignment(accounts: list[str], shard_count: int) -> dict[str, int]:
    return {account: shard.index for shard in plan_shards(accounts, shard_count) for account in shard.account_ids}


@pytest.mark.parametrize("new", ["3000", "3013", "act_3006000"])
def test_adding_a_13th_account_moves_no_existing_account(new: str) -> None:
    """Wherever the new id sorts (first, last, between), the twelve stay where they were."""
    before = assignment(TWELVE, 4)
    after = assignment([*TWELVE, new], 4)
    assert {a: after[a] for a in TWELVE} == before
    assert set(after) == {*TWELVE, new}


@pytest.mark.parametrize("shard_count", [2, 4, 7])
def test_adding_or_removing_any_account_never_moves_another(shard_count: int) -> None:
    accounts = [str(10_000 + 37 * i) for i in range(300)]
    full = assignment(accounts, shard_count)
    for k in range(0, 300, 29):
        without = [a for j, a in enumerate(accounts) if j != k]
        assert assignment(without, shard_count) == {a: full[a] for a in without}


def test_the_hash_does_not_depend_on_the_process() -> None:
    """Python's hash() is salted per process; the shard must be the same in every worker and every day."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(ORCHESTRATE)!r}); "
        "from meta_ads_backup.shards import shard_of; "
        f"print(json.dumps({{a: shard_of(a, 4) for a in {TWELVE!r}}}))"
    )
    seen = set()
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, check=True
        )
        seen.add(out.stdout)
    assert len(seen) == 1
    assert json.loads(seen.pop()) == {a: shard_of(a, 4) for a in TWELVE}


def test_act_prefix_is_the_same_account() -> None:
    assert all(shard_of(f"act_{a}", 4) == shard_of(a, 4) for a in TWELVE)
    with pytest.raises(ValueError, match="listed twice"):
        plan_shards(["act_3001", "3001"], 4)


def test_one_more_shard_moves_only_the_accounts_it_wins() -> None:
    """Rendezvous hashing: N -> N+1 shards moves about 1/(N+1) of the accounts, all into the new shard."""
    accounts = [str(50_000 + i) for i in range(2000)]
    four = assignment(accounts, 4)
    five = assignment(accounts, 5)
    moved = [a for a in accounts if four[a] != five[a]]
    assert {five[a] for a in moved} == {4}
    assert 300 < len(moved) < 500  # about 2000 / 5


def test_accounts_spread_evenly_and_empty_shards_are_left_out() -> None:
    counts = Counter(assignment([str(70_000 + i) for i in range(1000)], 4).values())
    assert sorted(counts) == [0, 1, 2, 3]
    assert all(200 <= n <= 300 for n in counts.values()), counts
    shards = plan_shards(["3001"], 4)
    assert len(shards) == 1
    assert shards[0].account_ids == ("3001",)
    assert shards[0].name == f"shard-{shard_of('3001', 4)}"


@pytest.mark.parametrize(
    ("accounts", "shard_count", "message"),
    [
        ([], 4, "no ad accounts"),
        (["3001", "abc"], 4, "'abc' is not act_<digits>"),
        (["3001"], 0, "at least 1"),
    ],
)
def test_bad_plans_fail_with_one_line(accounts: list[str], shard_count: int, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        plan_shards(accounts, shard_count)
    assert "\n" not in str(info.value)


def test_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {"META_ADS_SHARDS": "8", "META_ADS_MAX_CONCURRENT_SHARDS": "3", "META_ADS_SHARD_RETRIES": "0"}
    )
    assert (settings.shard_count, settings.max_concurrent, settings.retries) == (8, 3, 0)
    assert (settings.project_root / "meltano.yml").is_file()
    defaults = Settings.from_env({})
    assert (defaults.shard_count, defaults.max_concurrent, defaults.retries) == (4, 4, 2)
    assert defaults.schedule_name == "daily-backup"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"META_ADS_SHARDS": "four"}, "META_ADS_SHARDS='four' is not a number"),
        ({"META_ADS_SHARDS": "0"}, "META_ADS_SHARDS='0' must be at least 1"),
        ({"META_ADS_MAX_CONCURRENT_SHARDS": "2.5"}, "not a whole number"),
        ({"META_ADS_SHARD_RETRY_DELAY_SECONDS": "-1"}, "must be at least 0"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_the_tap_summary_is_read_from_meltano_json_logs() -> None:
    summary = {"scope": "run", "status": "succeeded", "records": 75, "requests": 2, "retries": {"http503": 1}}
    line = json.dumps(
        {
            "stdio": "stderr",
            "string_id": "tap-meta-ads",
            "name": "tap-meta-ads",
            "job_name": "prod:tap-meta-ads-to-target-gcs:shard-1",
            "event": "RUN_SUMMARY " + json.dumps(summary),
            "level": "info",
            "timestamp": "2026-12-01T00:04:03.022679Z",
        }
    )
    text, doc = parse_line(line + "\n")
    assert text.startswith("2026-12-01T00:04:03.022679Z info    tap-meta-ads: RUN_SUMMARY {")
    assert doc["job_name"] == "prod:tap-meta-ads-to-target-gcs:shard-1"
    assert run_summary(doc["event"]) == summary
    partition = "RUN_SUMMARY " + json.dumps({"scope": "partition", "records": 3})
    assert run_summary(partition) is None
    assert run_summary("RUN_SUMMARY {broken") is None
    assert parse_line("plain text\n") == ("plain text", {})


def test_each_shard_gets_its_own_meltano_run_directory_and_shares_the_rest(tmp_path: Path) -> None:
    """Meltano 4.4.1 writes every run's catalog to .meltano/run/<tap>/: concurrent shards each need their own."""
    sys_dir = tmp_path / ".meltano"
    (sys_dir / "extractors" / "tap-meta-ads" / "venv").mkdir(parents=True)
    (sys_dir / "run" / "tap-meta-ads").mkdir(parents=True)
    (sys_dir / "meltano.db").write_bytes(b"db")
    project = MeltanoProject(tmp_path, env={"PATH": "/usr/bin"})
    env = project.shard_env(Shard(2, ("act_3001", "3002")))
    own = Path(env["MELTANO_SYS_DIR_ROOT"])
    assert own == sys_dir / "shards" / "shard-2"
    assert json.loads(env["TAP_META_ADS_ACCOUNT_IDS"]) == ["act_3001", "3002"]
    assert env["MELTANO_DATABASE_URI"] == f"sqlite:///{sys_dir / 'meltano.db'}"  # the project's, not the shard's
    assert (own / "extractors").resolve() == (sys_dir / "extractors").resolve()
    assert (own / "meltano.db").read_bytes() == b"db"
    assert (own / "run").is_dir()
    assert not (own / "run").is_symlink()
    assert list((own / "run").iterdir()) == []
    # Again (a retry), and after `meltano install` added a plugin type: links are added, nothing breaks.
    (sys_dir / "loaders").mkdir()
    assert project.shard_env(Shard(2, ("3001",)))["MELTANO_SYS_DIR_ROOT"] == str(own)
    assert (own / "loaders").is_symlink()
    assert not (own / "shards").exists()
    # A database the user chose is kept.
    chosen = MeltanoProject(tmp_path, env={"MELTANO_DATABASE_URI": "postgresql://db/meltano"})
    assert chosen.shard_env(Shard(0, ("3001",)))["MELTANO_DATABASE_URI"] == "postgresql://db/meltano"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_orchestration_never_imports_the_tap_and_its_plain_modules_need_no_dagster() -> None:
    package = ORCHESTRATE / "meta_ads_backup"
    files = sorted(package.glob("*.py"))
    assert len(files) >= 5
    for path in files:
        assert not _imports(path) & {"tap_meta_ads", "tests"}, path.name
    for name in ("shards.py", "meltano_run.py", "settings.py"):
        assert _imports(package / name) <= set(sys.stdlib_module_names) | {"__future__"}, name


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('["act_1", "2"]', ["act_1", "2"]),
        ("act_1 act_2", "exited 1: Failed to parse JSON array from string: 'act_1 act_2'$"),
    ],
)
def test_the_account_list_is_the_taps_setting_read_through_meltano(
    value: str, expected: list[str] | str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "MELTANO_ENVIRONMENT": "sandbox",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "TAP_META_ADS_ACCOUNT_IDS": value,
        # meltano.yml's sandbox environment refers to these; `config print` resolves them but calls nothing.
        "SANDBOX_PORT": "1",
        "GCS_EMULATOR_PORT": "2",
        "GCS_BUCKET": "b",
    }
    project = MeltanoProject(ROOT, str(require(MELTANO)), env=env)
    if isinstance(expected, list):
        assert project.account_ids() == expected
    else:
        with pytest.raises(MeltanoError, match=expected) as info:
            project.account_ids()
        assert "\n" not in str(info.value)


def test_without_account_ids_the_shards_are_dealt_from_the_accounts_the_tap_discovers(
    make_sandbox, tmp_path: Path
) -> None:
    """The plan shards exactly what an unsharded run would read: the token's accounts, filtered as the tap filters."""
    listed = {str(4001 + i): 0 for i in range(7)}
    sandbox = make_sandbox(accounts=listed, account_statuses={"4003": 101, "4006": 2})
    env = {
        **os.environ,
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "MELTANO_ENVIRONMENT": "sandbox",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "TAP_META_ADS_ACCOUNT_IDS": "[]",
        "TAP_META_ADS_EXCLUDE_ACCOUNT_IDS": '["act_4007"]',
        "SANDBOX_PORT": str(sandbox.port),
        "GCS_EMULATOR_PORT": "2",
        "GCS_BUCKET": "b",
    }
    project = MeltanoProject(ROOT, str(require(MELTANO)), env=env)
    discovered = project.account_ids()
    assert discovered == ["4001", "4002", "4004", "4005", "4006"]  # 4003 CLOSED, 4007 excluded
    shards = plan_shards(discovered, 2)
    assert sorted(a for s in shards for a in s.account_ids) == discovered
    assert sandbox.stats()["token_in_url"] == 0
