"""Wall time of a long insights history with report runs one at a time vs several in flight (not a test).

    .venv/bin/python benchmarks/bench_insights_inflight.py                   # 6 months, 0.5 s per report run
    .venv/bin/python benchmarks/bench_insights_inflight.py --months 12 --job-seconds 1 --in-flight 1,4,10

Meta runs an async report run server-side for seconds to minutes whatever the client does, so a history
read one report run at a time waits for every run in turn. The sandbox here completes each run
`--job-seconds` after it was submitted (its virtual clock, which is real time here); the tap polls every
0.1 s at first, growing. Each configuration is a fresh sandbox and one `tap-meta-ads` process selecting
`ads_insights` for one account over the months before 2025-06-30, in 7-day windows. Reported: wall time,
report runs, rows (checked equal across configurations), and the speed-up over one at a time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tap_meta_ads_sandbox import SandboxConfig, SandboxServer  # noqa: E402

UNTIL = datetime.date(2025, 6, 30)


def measure(in_flight: int, months: int, job_seconds: float, ads: int) -> dict[str, float]:
    """One tap run over the history; returns wall seconds, report runs and rows."""
    since = UNTIL - datetime.timedelta(days=30 * months - 1)
    with SandboxServer(SandboxConfig(seed=5, accounts={"1001": ads})) as sb, tempfile.TemporaryDirectory() as tmp:
        sb.configure_insights(polls_to_complete=1, seconds_to_complete=job_seconds)
        config = {
            "access_token": "sandbox-token",
            "account_ids": ["1001"],
            "api_url": sb.url,
            "start_date": f"{since}T00:00:00Z",
            "end_date": UNTIL.isoformat(),
            "insights_window_days": 7,
            "insights_jobs_in_flight": in_flight,
            "insights_poll_interval_seconds": 0.1,
        }
        catalog = json.loads(
            subprocess.run(
                [sys.executable, "-m", "tap_meta_ads", "--config", _write(tmp, "c.json", config), "--discover"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for entry in catalog["streams"]:
            for meta in entry["metadata"]:
                if meta["breadcrumb"] == []:
                    meta["metadata"]["selected"] = entry["tap_stream_id"] == "ads_insights"
        args = [sys.executable, "-m", "tap_meta_ads", "--config", _write(tmp, "c.json", config)]
        args += ["--catalog", _write(tmp, "cat.json", catalog)]
        started = time.monotonic()
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        rows = sum(1 for line in proc.stdout.splitlines() if '"type":"RECORD"' in line)
        return {"wall": wall, "runs": len(sb.insights_runs()), "rows": rows}


def _write(directory: str, name: str, doc: object) -> str:
    path = Path(directory) / name
    path.write_text(json.dumps(doc))
    return str(path)


def main() -> None:
    """Measure each in-flight setting and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--job-seconds", type=float, default=0.5)
    parser.add_argument("--ads", type=int, default=30)
    parser.add_argument("--in-flight", default="1,10")
    opts = parser.parse_args()
    results = {n: measure(n, opts.months, opts.job_seconds, opts.ads) for n in map(int, opts.in_flight.split(","))}
    rows = {r["rows"] for r in results.values()}
    if len(rows) != 1:
        raise SystemExit(f"row counts differ between configurations: {results}")
    base = results[min(results)]["wall"]
    print(
        f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"Python {platform.python_version()}: {opts.months} months x {opts.ads} ads, 7-day windows, "
        f"{opts.job_seconds} s per report run, {rows.pop():,} rows\n"
    )
    print("| report runs in flight | wall time | report runs | speed-up |")
    print("|---|---|---|---|")
    for n, r in results.items():
        print(f"| {n} | {r['wall']:.1f} s | {r['runs']:.0f} | {base / r['wall']:.1f}x |")


if __name__ == "__main__":
    main()
