"""Issue 11: what target-gcs-guard prints - no warnings of its own, and an honest line when the bucket goes away.

The guard runs as Meltano runs it: its installed console script, with PYTHONWARNINGS=once (Meltano sets
that for every plugin), against the GCS emulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

from tests.e2e.conftest import BUCKET
from tests.e2e.servers import ROOT, GcsEmulator, Relay

GUARD = ROOT / ".meltano" / "loaders" / "target-gcs" / "venv" / "bin" / "target-gcs-guard"
EXIT_NOT_VERIFIED = 3


def _singer_lines(records: int) -> bytes:
    schema = {
        "type": "SCHEMA",
        "stream": "ads",
        "key_properties": ["id"],
        "schema": {"type": "object", "properties": {"id": {"type": "string"}, "score": {"type": ["number", "null"]}}},
    }
    rows = [{"type": "RECORD", "stream": "ads", "record": {"id": str(i), "score": 0.25}} for i in range(records)]
    state = {"type": "STATE", "value": {"bookmarks": {"ads": {"replication_key_value": "2026-01-01T00:00:00+00:00"}}}}
    return "".join(json.dumps(m) + "\n" for m in [schema, *rows, state]).encode()


def _run_guard(config: dict[str, object], storage_url: str, workdir: Path) -> subprocess.CompletedProcess[bytes]:
    path = workdir / "guard-config.json"
    path.write_text(json.dumps(config))
    return subprocess.run(
        [str(GUARD), "--config", str(path)],
        input=_singer_lines(300),
        capture_output=True,
        env={**os.environ, "STORAGE_EMULATOR_HOST": storage_url, "PYTHONWARNINGS": "once"},
        timeout=180,
        check=False,
    )


def test_a_guarded_load_prints_no_warning(gcs: GcsEmulator, workdir: Path) -> None:
    run = _run_guard({"bucket_name": BUCKET}, gcs.url, workdir)
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    assert json.loads(run.stdout)["bookmarks"]["ads"]["replication_key_value"] == "2026-01-01T00:00:00+00:00"
    stderr = run.stderr.decode()
    assert "Warning" not in stderr, stderr[-3000:]
    assert "| WARNING" not in stderr


def test_storage_gone_during_verification_is_said_as_it_is(gcs: GcsEmulator, workdir: Path) -> None:
    """The upload succeeded; the storage server goes away when the guard starts listing the bucket."""

    def die_on_first_listing(method: str, path: str) -> tuple[int, object] | None:
        if method == "GET" and path.startswith(f"/storage/v1/b/{BUCKET}/o?"):
            if not gone.is_set():
                gone.set()
                threading.Thread(target=relay.stop).start()
            return 503, {"error": {"code": 503, "message": "shutting down"}}
        return None

    gone = threading.Event()
    relay = Relay(gcs.port, hook=die_on_first_listing)
    try:
        started = time.monotonic()
        run = _run_guard({"bucket_name": BUCKET, "verify_timeout_seconds": 4}, relay.url, workdir)
        elapsed = time.monotonic() - started
    finally:
        if not gone.is_set():
            relay.stop()
    stderr = run.stderr.decode()
    assert run.returncode == EXIT_NOT_VERIFIED, stderr[-3000:]
    assert gone.is_set()
    assert run.stdout == b""  # no STATE: the bookmark does not move
    errors = [line for line in stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, stderr[-3000:]
    (error,) = errors
    assert f"the storage server at 127.0.0.1:{relay.port} could not be reached for" in error
    assert "Connection refused" in error
    assert "Timeout of" not in error
    seconds = int(error.split("could not be reached for ")[1].split(" s")[0])
    assert seconds <= elapsed
    assert "withholding 1 STATE message(s)" in error
