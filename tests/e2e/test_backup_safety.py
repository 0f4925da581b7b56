"""A backup never reports success without its data.

target-gcs 1.2.3 prints STATE before its upload has finished and exits 0 when the upload fails; Meltano
stores every STATE line a target prints. The loader in meltano.yml runs it under target-gcs-guard
(target-gcs-guard), which forwards STATE only after the objects are verified in the
bucket. These tests break the storage in the middle of real runs and check Meltano's stored state.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import BUCKET, STATE_ID, bookmarks, truth_by_id
from tests.e2e.servers import ROOT, GcsEmulator, Meltano, Relay, Sandbox, wait_until

GCS_JOB = ("run", "tap-meta-ads", "target-gcs")
LOADER_BIN = ROOT / ".meltano" / "loaders" / "target-gcs" / "venv" / "bin"
RUN_TIMEOUT = 240


class Gate:
    """Holds the first Graph API request for one ad account until released (a relay hook)."""

    def __init__(self, account_id: str) -> None:
        self.needle = f"act_{account_id}/"
        self.armed = False
        self.reached = threading.Event()
        self.released = threading.Event()

    def hook(self, _method: str, path: str) -> None:
        if self.armed and self.needle in path and not self.reached.is_set():
            self.reached.set()
            self.released.wait(RUN_TIMEOUT)


def _unguarded_project(workdir: Path) -> Path:
    """This Meltano project with the loader's executable swapped for plain target-gcs 1.2.3."""
    project = workdir / "unguarded"
    project.mkdir()
    doc = yaml.safe_load((ROOT / "meltano.yml").read_text())
    loader = next(p for p in doc["plugins"]["loaders"] if p["name"] == "target-gcs")
    loader["executable"] = "target-gcs"
    # plain target-gcs 1.2.3 crashes on non-integer numbers (a video's length, an account's age): the hazard
    # is shown on the ads stream alone, which has none
    tap = next(p for p in doc["plugins"]["extractors"] if p["name"] == "tap-meta-ads")
    tap["select"] = ["ads.*"]
    for environment in doc["environments"]:
        for extractor in environment.get("config", {}).get("plugins", {}).get("extractors", []):
            if extractor["name"] == "tap-meta-ads" and "select" in extractor:
                extractor["select"] = ["ads.*"]
    (project / "meltano.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    (project / ".meltano").symlink_to(ROOT / ".meltano")  # the installed plugins, guard venv included
    return project


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "plain-target-gcs"])
def test_emulator_dies_mid_run(
    guarded: bool, sandbox: Sandbox, gcs: GcsEmulator, make_meltano: Callable[..., Meltano], workdir: Path
) -> None:
    """The storage server dies in the middle of `meltano run`. Guarded: the run fails, the state stays, the
    rerun backs the changes up. Plain target-gcs 1.2.3 (the hazard, shown with Meltano itself): the run
    succeeds, Meltano stores the advanced state, and the changes are never backed up."""
    gate = Gate("1002")
    relay = Relay(sandbox.port, hook=gate.hook)
    try:
        project = ROOT if guarded else _unguarded_project(workdir)
        meltano = make_meltano(sandbox_url_port=relay.port, project=project)
        meltano(*GCS_JOB)
        before = meltano.state(STATE_ID)

        changed = set(sandbox.mutate("1001", update=3)["updated"]) | set(sandbox.mutate("1002", update=2)["updated"])
        sandbox.advance_clock(5)
        gate.armed = True
        opened = gcs.writers_opened()
        run = meltano.popen(*GCS_JOB)
        try:
            # Mid-run: account 1001's changes went to the target, which opened its object for writing; the
            # tap waits on account 1002's first page. Now the storage server dies.
            wait_until(
                lambda: gate.reached.is_set() and gcs.writers_opened() > opened, "mid-run", run, timeout=RUN_TIMEOUT
            )
            gcs.kill()
        finally:
            gate.released.set()
        _, stderr = run.communicate(timeout=RUN_TIMEOUT)
        advanced = bookmarks(meltano.state(STATE_ID))
        if guarded:
            assert run.returncode != 0, stderr[-3000:]
            assert "withholding" in stderr
            assert meltano.state(STATE_ID) == before, "the bookmark moved past data that never landed"
        else:
            assert run.returncode == 0, stderr[-3000:]
            assert all(advanced[acct] > value for acct, value in bookmarks(before).items())

        gcs.start()  # in memory: it comes back empty
        gate.armed = False
        meltano(*GCS_JOB)
        backed_up = {r["id"] for name in gcs.object_names("meta-ads/ads/") for r in gcs.records(name)}
        if guarded:
            assert backed_up == changed
            after = bookmarks(meltano.state(STATE_ID))
            assert all(after[acct] > value for acct, value in bookmarks(before).items())
        else:
            assert not backed_up & changed, "plain target-gcs lost these changes for good"
    finally:
        relay.stop()


def _forbid_writes(method: str, path: str) -> tuple[int, object] | None:
    """A bucket whose IAM policy lets this account read but not create objects."""
    if method in {"POST", "PUT", "PATCH", "DELETE"}:
        return 403, {
            "error": {
                "code": 403,
                "message": "sa@example.iam.gserviceaccount.com does not have "
                "storage.objects.create access to the Google Cloud Storage object.",
                "errors": [{"reason": "forbidden", "domain": "global"}],
            }
        }
    return None


@pytest.mark.parametrize("how", ["bucket-does-not-exist", "writes-forbidden"])
def test_bucket_rejecting_writes_fails_without_state(
    how: str, sandbox: Sandbox, gcs: GcsEmulator, make_meltano: Callable[..., Meltano]
) -> None:
    if how == "bucket-does-not-exist":
        broken = make_meltano(TARGET_GCS_BUCKET_NAME="no-such-bucket")
        relay = None
    else:
        relay = Relay(gcs.port, hook=_forbid_writes)
        broken = make_meltano(gcs_port=relay.port)
    try:
        failed = broken(*GCS_JOB, check=False)
    finally:
        if relay is not None:
            relay.stop()
    assert failed.returncode != 0
    assert not broken.state(STATE_ID), "a failed first backup must leave no state"
    assert gcs.object_names() == []

    fixed = make_meltano()
    fixed(*GCS_JOB)
    names = gcs.object_names("meta-ads/ads/")
    assert len(names) == 1
    assert {r["id"] for r in gcs.records(names[0])} == set(truth_by_id(sandbox))
    assert bookmarks(fixed.state(STATE_ID)).keys() == {"1001", "1002"}


def _singer_input(n: int) -> list[bytes]:
    schema = {
        "type": "SCHEMA",
        "stream": "ads",
        "key_properties": ["id"],
        "schema": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "score": {"type": ["number", "null"]}},
        },
    }
    records = [
        {"type": "RECORD", "stream": "ads", "record": {"id": str(i), "name": "ad " * 40, "score": 0.5}}
        for i in range(n)
    ]
    return [(json.dumps(m) + "\n").encode() for m in [schema, *records]]


@pytest.mark.parametrize(("executable", "safe"), [("target-gcs", False), ("target-gcs-guard", True)])
def test_upload_failure_at_exit(executable: str, safe: bool, gcs: GcsEmulator, workdir: Path) -> None:
    """The hazard itself, on hand-written Singer messages: plain target-gcs 1.2.3 reports STATE for an
    upload that failed; the guard does not. (Plain target-gcs cannot take the non-integer score at all.)"""
    config = workdir / "config.json"
    config.write_text(json.dumps({"bucket_name": BUCKET, "key_naming_convention": "{stream}/{run_id}.jsonl"}))
    lines = _singer_input(2000)
    if not safe:
        lines = [line.replace(b'"score": 0.5', b'"score": 1') for line in lines]
    opened = gcs.writers_opened()
    target = subprocess.Popen(
        [str(LOADER_BIN / executable), "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "STORAGE_EMULATOR_HOST": gcs.url},
    )
    assert target.stdin is not None
    for line in lines:
        target.stdin.write(line)
    target.stdin.flush()
    wait_until(lambda: gcs.writers_opened() > opened, "the target opened its object", target, timeout=60)
    gcs.kill()
    state = {"type": "STATE", "value": {"bookmarks": {"ads": {"replication_key_value": "2026-01-01"}}}}
    stdout, stderr = target.communicate((json.dumps(state) + "\n").encode(), timeout=RUN_TIMEOUT)
    printed_state = b'"bookmarks"' in stdout
    if safe:
        assert target.returncode != 0
        assert not printed_state, stdout
    else:  # the known hazard of target-gcs 1.2.3: if this starts failing, upstream fixed it
        assert target.returncode == 0, stderr[-2000:]
        assert printed_state


def _run_guard(config: Path, gcs: GcsEmulator, lines: list[bytes]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(LOADER_BIN / "target-gcs-guard"), "--config", str(config)],
        input=b"".join(lines),
        capture_output=True,
        env={**os.environ, "STORAGE_EMULATOR_HOST": gcs.url},
        timeout=RUN_TIMEOUT,
        check=False,
    )


def test_runs_in_the_same_second_never_overwrite(gcs: GcsEmulator, workdir: Path) -> None:
    """`{timestamp}` is in seconds; the guard's `{run_id}` keeps two quick runs apart, and non-integer
    numbers arrive as they were sent."""
    config = workdir / "config.json"
    convention = "{stream}/{timestamp}-{run_id}.jsonl"
    config.write_text(json.dumps({"bucket_name": BUCKET, "key_naming_convention": convention}))
    state = (json.dumps({"type": "STATE", "value": {"bookmarks": {}}}) + "\n").encode()
    lines = [*_singer_input(50), state]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:  # three runs at once: the same second, likely
        runs = list(pool.map(lambda _: _run_guard(config, gcs, lines), range(3)))
    assert [r.returncode for r in runs] == [0, 0, 0], runs[-1].stderr[-2000:]
    assert all(json.loads(r.stdout) == {"bookmarks": {}} for r in runs), [r.stdout for r in runs]
    names = gcs.object_names("ads/")
    assert len(names) == 3
    for name in names:
        records = gcs.records(name)
        assert [r["id"] for r in records] == [str(i) for i in range(50)]
        assert all(r["score"] == 0.5 for r in records)


def test_a_naming_convention_without_run_id_is_refused(gcs: GcsEmulator, workdir: Path) -> None:
    config = workdir / "config.json"
    config.write_text(json.dumps({"bucket_name": BUCKET, "key_naming_convention": "{stream}/{timestamp}.jsonl"}))
    run = _run_guard(config, gcs, _singer_input(3))
    assert run.returncode == 2
    assert b"{run_id}" in run.stderr
    assert run.stdout == b""
    assert gcs.object_names() == []


def test_state_is_held_back_when_the_bucket_disagrees(gcs: GcsEmulator, workdir: Path) -> None:
    """target-gcs exits 0 and prints its state, but the bucket holds fewer records than were sent (here a
    target-side stream map drops half): the guard prints no state and exits non-zero."""
    config = workdir / "config.json"
    config.write_text(json.dumps({"bucket_name": BUCKET, "stream_maps": {"ads": {"__filter__": "int(id) % 2 == 0"}}}))
    state = (json.dumps({"type": "STATE", "value": {"bookmarks": {"ads": {"x": 1}}}}) + "\n").encode()
    run = _run_guard(config, gcs, [*_singer_input(50), state])
    assert run.returncode == 3, run.stderr[-2000:]
    assert run.stdout == b""
    assert b"25 lines" in run.stderr
    assert b"withholding 1 STATE" in run.stderr
