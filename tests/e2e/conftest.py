"""Fixtures of the end-to-end tests: real servers on free loopback ports, and the real Meltano CLI.

Needs what `bash .ci/setup` installs (Meltano and its plugins, the GCS emulator, PostgreSQL's server);
a missing piece fails the test with the command to run, it is never skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tap_meta_ads.tap import DEFAULT_EFFECTIVE_STATUSES
from tests.e2e.servers import ROOT, GcsEmulator, Meltano, Postgres, Sandbox

#: Small accounts keep each Meltano run to a few seconds; several pages each at page_size 100.
ACCOUNTS = {"1001": 420, "1002": 260}
BUCKET = "meta-ads-backup"
STATE_ID = "sandbox:tap-meta-ads-to-target-gcs"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def sandbox(workdir: Path) -> Iterator[Sandbox]:
    server = Sandbox(ACCOUNTS, log_dir=workdir)
    yield server
    server.stop()


@pytest.fixture
def gcs(workdir: Path) -> Iterator[GcsEmulator]:
    server = GcsEmulator(BUCKET, log_dir=workdir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    yield server
    server.stop()


@pytest.fixture
def make_meltano(workdir: Path, sandbox: Sandbox, gcs: GcsEmulator) -> Callable[..., Meltano]:
    """A Meltano CLI wired to this test's sandbox and emulator, with its own system database."""

    def make(
        sandbox_url_port: int | None = None, gcs_port: int | None = None, project: Path = ROOT, **env: str
    ) -> Meltano:
        return Meltano(
            workdir,
            {
                "SANDBOX_PORT": str(sandbox_url_port or sandbox.port),
                "GCS_EMULATOR_PORT": str(gcs_port or gcs.port),
                "GCS_BUCKET": BUCKET,
                "TARGET_JSONL_DESTINATION_PATH": str(workdir / "jsonl"),
                **env,
            },
            project=project,
        )

    return make


@pytest.fixture
def meltano(make_meltano: Callable[..., Meltano]) -> Meltano:
    return make_meltano()


def truth_by_id(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    """Every ad the tap should extract with its default effective_statuses, by id."""
    ads: dict[str, dict[str, Any]] = {}
    for account in sandbox.accounts:
        for ad in sandbox.truth(account, DEFAULT_EFFECTIVE_STATUSES):
            ads[ad["id"]] = ad
    return ads


def bookmarks(state: dict[str, Any] | None) -> dict[str, str]:
    """The `updated_time` bookmark of each ad account in a state Meltano stored."""
    assert state, "no state stored"
    return {
        p["context"]["account_id"]: p["replication_key_value"]
        for p in state["singer_state"]["bookmarks"]["ads"]["partitions"]
    }
