"""The offline main job (run by `bash .ci/main-job`): the real backup command against local servers."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tap_meta_ads.tap import DEFAULT_EFFECTIVE_STATUSES  # noqa: E402
from tests.e2e.own_warnings import own_warnings  # noqa: E402
from tests.e2e.servers import MELTANO, GcsEmulator, Sandbox, require, running  # noqa: E402

ACCOUNTS = {"1001": 3000, "1002": 2500}
BUCKET = "meta-ads-backup"
COMMAND = ["--environment=sandbox", "run", "tap-meta-ads", "target-gcs"]


def main() -> int:
    """Start the servers, run the job, report the bucket; exit with Meltano's exit code."""
    work = Path(tempfile.mkdtemp(prefix="tap-meta-ads-main-job-"))
    with running(Sandbox(ACCOUNTS, log_dir=work)) as sandbox, running(GcsEmulator(BUCKET, log_dir=work)) as gcs:
        print(f"sandbox (Graph API)  {sandbox.url}  accounts {ACCOUNTS}")
        print(f"GCS emulator         {gcs.url}  bucket {BUCKET}")
        env = {
            "SANDBOX_PORT": str(sandbox.port),
            "GCS_EMULATOR_PORT": str(gcs.port),
            "GCS_BUCKET": BUCKET,
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_DATABASE_URI": f"sqlite:///{work / 'meltano.db'}",
        }
        print("$ meltano " + " ".join(COMMAND), flush=True)
        started = time.monotonic()
        proc = subprocess.Popen(  # noqa: S603
            [str(require(MELTANO)), *COMMAND],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        output = []
        for line in proc.stdout:  # shown as it comes, and kept for the warning check below
            print(line, end="", flush=True)
            output.append(line)
        proc.wait()
        print(f"meltano exited {proc.returncode} after {time.monotonic() - started:.1f}s")
        names = gcs.object_names()
        print(f"\nobjects in gs://{BUCKET}/:")
        per_stream: collections.Counter[str] = collections.Counter()
        sample = None
        for name in names:
            records = gcs.records(name)
            stream = name.split("/")[1] if name.count("/") >= 2 else name  # noqa: PLR2004
            per_stream[stream] += len(records)
            sample = sample or (records[0] if records else None)
            print(f"  {name}  {len(records)} records")
        print("\nrecords per stream:", dict(per_stream))
        expected = sum(len(sandbox.truth(acct, DEFAULT_EFFECTIVE_STATUSES)) for acct in ACCOUNTS)
        print(f"ads in the sandbox under the tap's default effective_statuses: {expected}")
        if sample:
            print("sample record:\n" + json.dumps(sample, indent=2)[:3000])
        state = subprocess.run(  # noqa: S603
            [str(MELTANO), "--environment=sandbox", "state", "get", "sandbox:tap-meta-ads-to-target-gcs"],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
        )
        print("\nstate Meltano keeps for the next run:\n" + state.stdout.strip()[:2000])
        if proc.returncode == 0 and per_stream["ads"] != expected:
            # A fresh system database each time: this is always a full backup, so the counts must agree.
            print(f"FAILED: meltano succeeded but {per_stream['ads']} of {expected} ads landed in the bucket")
            return 1
        warnings = own_warnings("".join(output))
        if proc.returncode == 0 and warnings:
            # A clean run: no warning from this project's code or packaging (tap, guard, their dependencies).
            print("FAILED: the tap or the loader warned in a clean run:\n" + "\n".join(warnings))
            return 1
        return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
