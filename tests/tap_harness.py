"""Runs the real ``tap-meta-ads`` CLI as a subprocess and reads its Singer output.

Tests drive the tap exactly as Meltano does (a process, a config file, stdout), against the
sandbox over real HTTP; nothing of ours is mocked.
"""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TAP = [sys.executable, "-m", "tap_meta_ads"]
TOKEN = "sandbox-token"

#: Settings that make retries fast in tests; production defaults are in the settings schema.
FAST_RETRIES = {"backoff_base_seconds": 0.01, "backoff_max_seconds": 2, "max_retries": 8}


@dataclass
class TapRun:
    """What one tap process printed."""

    returncode: int
    stdout: str
    stderr: str
    records: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    schemas: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last_state(self) -> dict[str, Any] | None:
        return self.states[-1] if self.states else None

    def ids(self, stream: str = "ads") -> list[str]:
        return [r["record"]["id"] for r in self.records if r["stream"] == stream]

    def summary(self) -> dict[str, Any]:
        """The run-level RUN_SUMMARY line the tap logs at exit."""
        for line in self.stderr.splitlines():
            if "RUN_SUMMARY " in line:
                payload = json.loads(line.split("RUN_SUMMARY ", 1)[1])
                if payload.get("scope") == "run":
                    return payload
        raise AssertionError("no run summary in stderr:\n" + self.stderr[-3000:])


def parse_messages(stdout: str, run: TapRun) -> None:
    for line in stdout.splitlines():
        if not line.strip():
            continue
        message = json.loads(line)
        kind = message.get("type")
        if kind == "RECORD":
            run.records.append(message)
        elif kind == "STATE":
            run.states.append(message["value"])
        elif kind == "SCHEMA":
            run.schemas.append(message)


def base_config(url: str, accounts: list[str], **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "access_token": TOKEN,
        "account_ids": accounts,
        "api_url": url,
        "api_version": "v25.0",
        "page_size": 100,
        "request_timeout_seconds": 10,
        # The start-of-run token check makes 1 + one call per account before any stream: off here, so that the
        # tests that number the sandbox's requests (faults at request N, request counts) count streams' calls
        # only; tests/test_account_backup.py turns it on.
        "check_token": False,
        **FAST_RETRIES,
    }
    config.update(overrides)
    return config


def _write_json(directory: Path, name: str, data: Any) -> str:
    path = directory / name
    path.write_text(json.dumps(data))
    return str(path)


_DISCOVERED: list[dict[str, Any]] = []


def discovered_catalog() -> dict[str, Any]:
    """The tap's catalog (``--discover`` once per test process; it does not depend on the config's values)."""
    if not _DISCOVERED:
        config = base_config("http://127.0.0.1:9", ["1"])
        run = run_tap(config, extra_args=["--discover"])
        assert run.returncode == 0, run.stderr[-3000:]
        _DISCOVERED.append(json.loads(run.stdout))
    return copy.deepcopy(_DISCOVERED[0])


def about_json() -> dict[str, Any]:
    """``tap-meta-ads --about --format=json`` of the installed console script (what Meltano and the Hub read)."""
    script = Path(sys.executable).with_name("tap-meta-ads")
    done = subprocess.run([str(script), "--about", "--format=json"], capture_output=True, text=True, check=True)
    about: dict[str, Any] = json.loads(done.stdout)
    return about


def catalog_selecting(streams: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A catalog with exactly ``streams`` selected (every property of each), as ``meltano select`` writes one."""
    catalog = discovered_catalog()
    known = {s["tap_stream_id"] for s in catalog["streams"]}
    assert set(streams) <= known, set(streams) - known
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if not entry["breadcrumb"]:
                entry["metadata"]["selected"] = stream["tap_stream_id"] in streams
    return catalog


def run_tap(
    config: dict[str, Any],
    *,
    state: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
    streams: list[str] | tuple[str, ...] | None = None,
    extra_args: list[str] | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> TapRun:
    """Run the tap to completion and parse what it printed; ``streams`` selects only those streams."""
    if streams is not None:
        catalog = catalog_selecting(streams)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        args = [*TAP, "--config", _write_json(directory, "config.json", config)]
        if state is not None:
            args += ["--state", _write_json(directory, "state.json", state)]
        if catalog is not None:
            args += ["--catalog", _write_json(directory, "catalog.json", catalog)]
        args += extra_args or []
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, check=False
        )
    run = TapRun(proc.returncode, proc.stdout, proc.stderr)
    if not {"--discover", "--about"} & set(extra_args or []):
        parse_messages(proc.stdout, run)
    return run


def run_streaming(
    config: dict[str, Any],
    *,
    state: dict[str, Any] | None,
    on_message: Any,
    streams: list[str] | tuple[str, ...] | None = None,
) -> TapRun:
    """Run the tap, calling ``on_message(message, run_so_far)`` for each Singer message as it arrives.

    When ``on_message`` returns True the tap is killed with SIGKILL at once; everything it had
    already written to the pipe is still read and kept: that is what a target would have received.
    """
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        args = [*TAP, "--config", _write_json(directory, "config.json", config)]
        if state is not None:
            args += ["--state", _write_json(directory, "state.json", state)]
        if streams is not None:
            args += ["--catalog", _write_json(directory, "catalog.json", catalog_selecting(streams))]
        stderr_path = directory / "stderr.txt"
        run = TapRun(0, "", "")
        lines: list[str] = []
        with stderr_path.open("w") as stderr:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True)
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                parse_messages(line, run)
                if on_message(json.loads(line), run):
                    proc.send_signal(signal.SIGKILL)
                    break
            for line in proc.stdout.read().splitlines(keepends=True):
                lines.append(line)
                parse_messages(line, run)
            proc.wait(timeout=60)
        run.returncode = proc.returncode
        run.stdout = "".join(lines)
        run.stderr = stderr_path.read_text()
    return run


def run_and_kill(
    config: dict[str, Any],
    *,
    state: dict[str, Any] | None,
    kill_after_lines: int,
    streams: list[str] | tuple[str, ...] | None = None,
) -> TapRun:
    """Run the tap and SIGKILL it once it has printed ``kill_after_lines`` lines."""
    seen = 0

    def kill_now(_message: dict[str, Any], _run: TapRun) -> bool:
        nonlocal seen
        seen += 1
        return seen >= kill_after_lines

    return run_streaming(config, state=state, on_message=kill_now, streams=streams)


def duplicates(ids: list[str]) -> dict[str, int]:
    return {k: v for k, v in Counter(ids).items() if v > 1}


def seeded(seed: int) -> random.Random:
    return random.Random(seed)


#: The ``ads`` stream alone: the tests written for it select only it, so the other streams cost them nothing.
ADS = ("ads",)
