"""Run one shard as `meltano run --state-id-suffix=<shard> tap-meta-ads target-gcs`, and read what happened.

The orchestrator never imports the tap: it starts Meltano, which runs the tap and the guarded GCS loader
in their own virtualenvs and keeps the shard's state under `<env>:tap-meta-ads-to-target-gcs:<shard>`
in whatever state backend the project uses (GCS in production). The shard's accounts reach the tap as
the tap's own setting, `TAP_META_ADS_ACCOUNT_IDS`, which wins over meltano.yml and `.env`.

Meltano runs with `--log-format=json`, one JSON object per line, so the tap's lines arrive intact in
`event` with the plugin's name beside them. From them this module takes the tap's
`RUN_SUMMARY {"scope": "run", ...}` line (records, pages, requests, retries by reason, waits), which the
tap logs whether it succeeded or failed, and the state id Meltano used (`job_name`). Every line is also
handed to a callback as readable text, so the orchestrator's log shows the run as Meltano printed it.

Concurrent shards on one machine each get their own Meltano system directory (`MELTANO_SYS_DIR_ROOT`,
see `shard_sys_dir`): Meltano 4.4 writes the tap's catalog to `.meltano/run/<tap>/tap.properties.json`, one
path for every invocation, so two `meltano run`s of the same tap started together overwrite and delete
each other's catalog ("Invalid catalog", "No such file") - meltano/meltano#8763; the fix proposed in
meltano/meltano#8794 (a per-invocation catalog name) is not in 4.4.1.

Standard library only.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .shards import Shard

SUMMARY_PREFIX = "RUN_SUMMARY "
#: The pipeline every shard runs (the `backup` job of meltano.yml, spelled out so that the state id is
#: the one the README documents).
BLOCKS: tuple[str, ...] = ("tap-meta-ads", "target-gcs")
EXTRACTOR = BLOCKS[0]
LOG_TAIL_LINES = 40


class MeltanoError(RuntimeError):
    """A Meltano command other than the shard run itself failed (e.g. reading the settings)."""


@dataclass
class ShardRun:
    """The outcome of one shard's `meltano run`."""

    shard: str
    account_ids: tuple[str, ...]
    exit_code: int
    duration_seconds: float
    state_id: str | None = None
    summary: dict[str, Any] | None = None
    meltano_error: str | None = None
    log_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Meltano succeeded (so the loader verified the objects and the state was stored)."""
        return self.exit_code == 0

    def counters(self) -> dict[str, Any]:
        """The tap's run totals (zeros when the tap never got to log its summary)."""
        summary = self.summary or {}
        return {
            "records": int(summary.get("records", 0)),
            "pages": int(summary.get("pages", 0)),
            "requests": int(summary.get("requests", 0)),
            "retries": int(summary.get("retries_total", 0)),
            "retries_by_reason": dict(summary.get("retries", {})),
            "throttle_wait_seconds": float(summary.get("throttle_wait_seconds", 0.0)),
            "pacing_wait_seconds": float(summary.get("pacing_wait_seconds", 0.0)),
            "page_size_reductions": int(summary.get("page_size_reductions", 0)),
        }

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view, without the log tail."""
        return {
            "shard": self.shard,
            "account_ids": list(self.account_ids),
            "exit_code": self.exit_code,
            "duration_seconds": round(self.duration_seconds, 3),
            "state_id": self.state_id,
            "tap_status": (self.summary or {}).get("status"),
            **self.counters(),
        }


def parse_line(line: str) -> tuple[str, dict[str, Any]]:
    """One line of `meltano --log-format=json` output as (readable text, its JSON fields or {})."""
    text = line.rstrip("\n")
    try:
        doc = json.loads(text)
    except ValueError:
        return text, {}
    if not isinstance(doc, dict) or "event" not in doc:
        return text, {}
    who = doc.get("name") or "meltano"
    return f"{doc.get('timestamp', '')} {doc.get('level', 'info'):<7} {who}: {doc['event']}", doc


def run_summary(event: object) -> dict[str, Any] | None:
    """The JSON of a `RUN_SUMMARY {...}` line of scope "run", else None."""
    if not isinstance(event, str) or not event.startswith(SUMMARY_PREFIX):
        return None
    try:
        doc, _ = json.JSONDecoder().raw_decode(event, len(SUMMARY_PREFIX))
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and doc.get("scope") == "run" else None


@dataclass(frozen=True)
class MeltanoProject:
    """A Meltano project on disk and the executable that runs it."""

    root: Path
    executable: str = "meltano"
    env: Mapping[str, str] | None = None

    def _command(self, *args: str) -> list[str]:
        return [self.executable, "--log-format=json", *args]

    def _env(self, **extra: str) -> dict[str, str]:
        base = dict(os.environ if self.env is None else self.env)
        return {**base, "NO_COLOR": "1", **extra}

    def sys_dir(self) -> Path:
        """The project's Meltano system directory (`.meltano`, or MELTANO_SYS_DIR_ROOT)."""
        env = os.environ if self.env is None else self.env
        configured = env.get("MELTANO_SYS_DIR_ROOT")
        return Path(configured) if configured else self.root / ".meltano"

    def shard_env(self, shard: Shard) -> dict[str, str]:
        """The environment of one shard's `meltano run`: its accounts, its own run directory."""
        env = self._env(TAP_META_ADS_ACCOUNT_IDS=json.dumps(list(shard.account_ids)))
        sys_dir = self.sys_dir()
        # The system database stays the project's (Meltano's default lives in the system directory).
        env.setdefault("MELTANO_DATABASE_URI", f"sqlite:///{sys_dir / 'meltano.db'}")
        env["MELTANO_SYS_DIR_ROOT"] = str(shard_sys_dir(sys_dir, shard.name))
        return env

    def account_ids(self) -> list[str]:
        """The ad accounts a run of the tap reads: its `account_ids` setting, or the accounts it discovers.

        The setting is read as Meltano resolves it (environment, .env, meltano.yml); `meltano config print`
        masks sensitive settings by default, so no secret passes through here. Without it, the tap itself
        lists the accounts of its `business_ids` or its token, filtered by `account_statuses` and
        `exclude_account_ids` (`tap-meta-ads --list-accounts`), so the shards cover exactly what an unsharded
        run would read; each shard then passes its part as `account_ids`.
        """
        proc = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
            self._command("config", "print", EXTRACTOR, "--format=json"),
            cwd=self.root,
            env=self._env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise MeltanoError(f"meltano config print {EXTRACTOR} exited {proc.returncode}: {_reason(proc.stderr)}")
        try:
            accounts = json.loads(proc.stdout).get("account_ids")
        except (ValueError, AttributeError):
            raise MeltanoError(f"meltano config print {EXTRACTOR} did not print a JSON object") from None
        if isinstance(accounts, str):  # a JSON list given as text in .env
            try:
                accounts = json.loads(accounts)
            except ValueError:
                raise MeltanoError(f"{EXTRACTOR} account_ids is not a JSON list: {accounts[:80]!r}") from None
        if accounts is None or accounts == []:
            return self.discovered_account_ids()
        if not isinstance(accounts, list):
            raise MeltanoError(f"{EXTRACTOR} account_ids is not a list: set TAP_META_ADS_ACCOUNT_IDS or meltano.yml")
        return [str(a) for a in accounts]

    def discovered_account_ids(self) -> list[str]:
        """The accounts the tap discovers (`meltano invoke tap-meta-ads --list-accounts`), ids only."""
        proc = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
            self._command("invoke", EXTRACTOR, "--list-accounts"),
            cwd=self.root,
            env=self._env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise MeltanoError(f"{EXTRACTOR} --list-accounts exited {proc.returncode}: {_reason(proc.stderr)}")
        lines = [line for line in proc.stdout.splitlines() if line.strip().startswith("[")]
        try:
            listed = json.loads(lines[-1])
            return [str(a["account_id"]) for a in listed]
        except (IndexError, ValueError, TypeError, KeyError):
            raise MeltanoError(f"{EXTRACTOR} --list-accounts did not print a JSON list of accounts") from None

    def run_shard(self, shard: Shard, echo: Callable[[str], None] = lambda _line: None) -> ShardRun:
        """Run the shard's `meltano run` to the end; every output line goes to `echo` as it comes."""
        command = self._command("run", f"--state-id-suffix={shard.name}", *BLOCKS)
        env = self.shard_env(shard)
        started = time.monotonic()
        run = ShardRun(shard.name, shard.account_ids, exit_code=-1, duration_seconds=0.0)
        tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        proc = subprocess.Popen(  # noqa: S603 - a fixed argument list, no shell
            command,
            cwd=self.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                text, doc = parse_line(line)
                echo(text)
                tail.append(text)
                self._note(run, doc)
            run.exit_code = proc.wait()
        finally:
            # The orchestrator stopped this step (cancel, timeout): stop Meltano, which stops the tap
            # (the tap writes its resume point on SIGTERM).
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        run.duration_seconds = time.monotonic() - started
        run.log_tail = list(tail)
        return run

    @staticmethod
    def _note(run: ShardRun, doc: Mapping[str, Any]) -> None:
        if not doc:
            return
        if run.state_id is None and isinstance(doc.get("job_name"), str):
            run.state_id = doc["job_name"]
        summary = run_summary(doc.get("event"))
        if summary is not None:
            run.summary = summary
        if doc.get("err"):
            run.meltano_error = str(doc["err"])


SHARDS_DIR = "shards"
#: What a shard keeps for itself: the per-invocation files (catalog, config, state) of its plugins.
PRIVATE_ENTRIES = frozenset({"run", SHARDS_DIR})


def _reason(stderr: str) -> str:
    """The error lines of a failed Meltano command (its JSON log), or its last line."""
    lines = [parse_line(line) for line in stderr.splitlines() if line.strip()]
    errors = [str(doc["event"]) for _, doc in lines if doc.get("level") == "error"]
    return "; ".join(errors) or (lines[-1][0] if lines else "no output")


def shard_sys_dir(sys_dir: Path, shard: str) -> Path:
    """`<sys_dir>/shards/<shard>/`: a Meltano system directory of the shard's own.

    Everything in the project's system directory but `run/` is a symbolic link to the original: the
    plugins' virtualenvs (installed once by `meltano install`), the system database, the caches. Only
    `run/`, where Meltano writes each invocation's catalog and config, is the shard's. One shard runs
    one `meltano run` at a time (Dagster retries a step after it ended), so that is enough.
    """
    own = sys_dir / SHARDS_DIR / shard
    (own / "run").mkdir(parents=True, exist_ok=True)
    for entry in sys_dir.iterdir():
        link = own / entry.name
        if entry.name in PRIVATE_ENTRIES or link.is_symlink() or link.exists():
            continue
        link.symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    return own
