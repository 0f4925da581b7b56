"""An agency's accounts on Meta's clock: every chain at once, measured against its bounds (run by hand).

    .venv/bin/python benchmarks/bench_accounts.py [--scale 10] [--only objects,insights,fifty,tap-facebook]

Meta answers a call in 0.2-2 s and runs a report run for 20-60 s; the sandbox is given 0.3 s per call and report
runs of 30 s, both divided by ``--scale`` (default 3: 0.1 s and 10 s, poll intervals likewise; at 10 the tap and the
sandbox, both on this machine, are bound by CPU, not by the clock), so a run takes
seconds on a shared machine. Every figure is wall time of the tap as a process (its start-up included; the
start-up alone is measured and shown), against:

- serial: the run's calls one after another, calls x latency (what a client that never overlaps pays);
- critical path: the longest (stream, account) chain, the run's calls spread over ``max_concurrent_requests``,
  and the report runs (``report_bound``: rounds of submit, run and poll under the cap, then the last run's
  pages): the least time any client with those limits can take, plus the tap's start-up.

Scenarios (the issue's targets):
1. objects: 8 accounts x every object stream at the defaults; target <= 0.12x serial.
2. insights: 30 days of ``ads_insights`` for 1 and for 8 accounts; target 8 accounts <= 2x one.
3. fifty: 8, 50 and 150 accounts x every object stream + 30 days of insights, a budget per account; target
   within 1.3x the critical-path bound; peak RSS the same however many accounts (memory flat: the read-ahead
   is bounded in bytes, so past a few accounts the peak stops growing).
4. tap-facebook: MeltanoLabs tap-facebook 0.9.0 reads one account per run (its ``account_id`` setting), so its
   users run it once per account, one after another; both read ``ads`` of the same 8 accounts. Needs
   ``TAP_FACEBOOK_PYTHON`` (a virtualenv with ``meltano-tap-facebook==0.9.0``).

Figures go to ``benchmarks/results.md`` (a section of their own) and stdout.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner import run_measured
from tap_meta_ads_sandbox import SandboxConfig, SandboxServer

ROOT = Path(__file__).resolve().parent.parent
TAP = [sys.executable, "-m", "tap_meta_ads"]
TOKEN = "sandbox-token"
META_LATENCY = 0.3
META_REPORT_RUN = 30.0
OBJECT_STREAMS = [
    "ads",
    "adsets",
    "campaigns",
    "adcreatives",
    "adimages",
    "advideos",
    "customconversions",
    "adaccounts",
]
RESULTS = ROOT / "benchmarks/results.md"
SECTION = "## An agency's accounts on Meta's clock (bench_accounts.py)"


def measure(args: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds, peak RSS (MB) and stderr of one process, stdout to /dev/null.

    Measured by ``runner.run_measured`` (through ``rusage.py``: this process holds the sandbox, hundreds of MB
    of report rows at 150 accounts, and a child it spawned directly reported that as its own peak RSS).
    """
    with tempfile.TemporaryDirectory() as tmp:
        m = run_measured(args, Path(tmp), env)
    return m.wall, m.cpu, m.rss_mb, m.log


def catalog(streams: list[str], workdir: Path) -> str:
    """The tap's catalog with exactly ``streams`` selected."""
    config = workdir / "discover.json"
    config.write_text(json.dumps({"access_token": TOKEN, "api_url": "http://127.0.0.1:9"}))
    out = subprocess.run([*TAP, "--config", str(config), "--discover"], capture_output=True, check=True, cwd=ROOT)
    doc = json.loads(out.stdout)
    for entry in doc["streams"]:
        for meta in entry["metadata"]:
            if meta["breadcrumb"] == []:
                meta["metadata"]["selected"] = entry["tap_stream_id"] in streams
    path = workdir / f"catalog-{'-'.join(sorted(streams))[:60]}.json"
    path.write_text(json.dumps(doc))
    return str(path)


def run_tap(sb: SandboxServer, config: dict[str, Any], streams: list[str], workdir: Path) -> dict[str, Any]:
    """One tap run: wall, CPU, RSS, the sandbox's calls, the critical path and the serial time."""
    path = workdir / "config.json"
    path.write_text(json.dumps({"access_token": TOKEN, "api_url": sb.url, **config}))
    sb.reset_stats()
    wall, cpu, rss, stderr = measure([*TAP, "--config", str(path), "--catalog", catalog(streams, workdir)])
    stats = sb.stats()
    chains = collections.Counter((e["route"], e["account_id"]) for e in stats["log"])
    return {
        "wall": wall,
        "cpu": cpu,
        "rss": rss,
        "calls": stats["requests"],
        "records": stats["records_served"],
        "throttled": stats["throttled"],
        "longest_chain_calls": max(chains.values(), default=0),
        "log": stats["log"],
        "stderr": stderr,
    }


def start_up(workdir: Path, scale: float) -> float:
    """What a run costs before and after its calls: one account's node alone, no latency."""
    with SandboxServer(SandboxConfig(seed=3, accounts={"1": 0}), port=0) as sb:
        runs = [run_tap(sb, {"account_ids": ["1"]}, ["adaccounts"], workdir)["wall"] for _ in range(3)]
    return sorted(runs)[1]


def objects(workdir: Path, scale: float, startup: float) -> list[str]:
    latency = META_LATENCY / scale
    accounts = {str(7001 + i): 2000 for i in range(8)}
    with SandboxServer(SandboxConfig(seed=3, accounts=accounts, latency_seconds=latency), port=0) as sb:
        r = run_tap(sb, {"account_ids": list(accounts)}, OBJECT_STREAMS, workdir)
    serial = r["calls"] * latency
    bound = max(r["longest_chain_calls"] * latency, r["calls"] * latency / 32)
    return [
        f"| objects: 8 accounts x {len(OBJECT_STREAMS)} object streams | {r['wall']:.2f} s | {r['calls']} calls, "
        f"{r['records']} records | serial {serial:.2f} s: **{r['wall'] / serial:.3f}x** "
        f"({(r['wall'] - startup) / serial:.3f}x without start-up) | bound {bound:.2f} s | target <= 0.12x |",
    ]


def insights_config(accounts: list[str], scale: float) -> dict[str, Any]:
    return {
        "account_ids": accounts,
        "start_date": "2026-03-01T00:00:00Z",
        "end_date": "2026-03-30",
        "insights_poll_interval_seconds": 5 / scale,
        "insights_window_days": 7,
    }


def insights(workdir: Path, scale: float, startup: float) -> list[str]:
    latency, report = META_LATENCY / scale, META_REPORT_RUN / scale
    walls = {}
    for n in (1, 8):
        accounts = {str(7101 + i): 60 for i in range(n)}
        with SandboxServer(SandboxConfig(seed=3, accounts=accounts, latency_seconds=latency), port=0) as sb:
            sb.configure_insights(seconds_to_complete=report, polls_to_complete=1)
            walls[n] = run_tap(sb, insights_config(list(accounts), scale), ["ads_insights"], workdir)
    ratio = walls[8]["wall"] / walls[1]["wall"]
    return [
        f"| insights: 30 days, 1 account | {walls[1]['wall']:.2f} s | {walls[1]['calls']} calls | report runs of "
        f"{report:.1f} s | | |",
        f"| insights: 30 days, 8 accounts | {walls[8]['wall']:.2f} s | {walls[8]['calls']} calls | "
        f"**{ratio:.2f}x** one account's | | target <= 2x |",
    ]


def report_bound(log: list[dict[str, Any]], report: float, latency: float, cap: int = 100) -> float:
    """The least time any client takes for the run's report runs, with ``cap`` in flight at once.

    A place is held from a run's submit to the poll that finds it complete (a call on each side of the run):
    with more runs than places, some place runs ``ceil(runs / cap)`` of them one after another. The last run's
    pages then follow one cursor, a call each (at least the average number of pages of a run). No poll
    interval is counted: a client that reads Meta's ``async_percent_completion`` can poll when the run ends.
    """
    runs = sum(1 for e in log if e["route"] == "insights_submit")
    pages = [e for e in log if e["route"] == "report_run_insights"]
    first_pages = sum(1 for e in pages if "after" not in e["params"])
    per_run = math.ceil(len(pages) / first_pages) if first_pages else 0
    return math.ceil(runs / cap) * (report + 2 * latency) + per_run * latency


def fifty(workdir: Path, scale: float, startup: float) -> list[str]:
    latency, report = META_LATENCY / scale, META_REPORT_RUN / scale
    rows = []
    for n in (8, 50, 150):
        accounts = {str(7201 + i): 120 for i in range(n)}  # 120 ads: 3,600 insights rows per account
        # a budget per account: 120 calls per (3600 s / scale), Meta's limited tier is 300 an hour
        config = SandboxConfig(
            seed=3, accounts=accounts, latency_seconds=latency, rate_window_seconds=3600 / scale, account_budget=120
        )
        with SandboxServer(config, port=0) as sb:
            sb.configure_insights(seconds_to_complete=report, polls_to_complete=1)
            r = run_tap(sb, insights_config(list(accounts), scale), [*OBJECT_STREAMS, "ads_insights"], workdir)
        longest = r["longest_chain_calls"] * latency
        spread = r["calls"] * latency / 32
        bound = max(longest, spread, report_bound(r["log"], report, latency)) + startup
        rows.append(
            f"| {n} accounts x every object stream + 30 days of insights | {r['wall']:.2f} s | {r['calls']} calls, "
            f"{r['records']} records, {r['throttled']} throttled | bound {bound:.2f} s (start-up {startup:.2f} s "
            f"included): **{r['wall'] / bound:.2f}x** | peak RSS {r['rss']:.0f} MB | target <= 1.3x, memory flat |"
        )
    return rows


def tap_facebook(workdir: Path, scale: float, startup: float) -> list[str]:
    python = os.environ.get("TAP_FACEBOOK_PYTHON")
    if not python or not Path(python).exists():
        return ["| tap-facebook | not measured | set TAP_FACEBOOK_PYTHON to a venv with meltano-tap-facebook | | | |"]
    latency = META_LATENCY / scale
    accounts = {str(7301 + i): 1000 for i in range(8)}
    launcher = [python, str(ROOT / "benchmarks/tap_facebook_launcher.py")]
    with SandboxServer(SandboxConfig(seed=3, accounts=accounts, latency_seconds=latency, archived_ratio=0,
                                     deleted_ratio=0), port=0) as sb:  # fmt: skip
        env = {"TAP_FACEBOOK_API_URL": sb.url}
        theirs = 0.0
        fb_catalog = None
        for account in accounts:
            config = workdir / f"fb-{account}.json"
            config.write_text(json.dumps({"access_token": TOKEN, "account_id": account, "api_version": "v25.0",
                                          "start_date": "2000-01-01T00:00:00Z"}))  # fmt: skip
            if fb_catalog is None:
                out = subprocess.run([*launcher, "--config", str(config), "--discover"], capture_output=True,
                                     env={**os.environ, **env}, cwd=ROOT, check=True)  # fmt: skip
                doc = json.loads(out.stdout)
                for entry in doc["streams"]:
                    for meta in entry["metadata"]:
                        if meta["breadcrumb"] == []:
                            meta["metadata"]["selected"] = entry["tap_stream_id"] == "ads"
                fb_catalog = workdir / "fb-catalog.json"
                fb_catalog.write_text(json.dumps(doc))
            theirs += measure([*launcher, "--config", str(config), "--catalog", str(fb_catalog)], env)[0]
        theirs_records = sb.stats()["records_served"]
        ours = run_tap(sb, {"account_ids": list(accounts)}, ["ads"], workdir)
    return [
        f"| tap-facebook 0.9.0: ads of 8 accounts, one run per account | {theirs:.2f} s | {theirs_records} records "
        f"| tap-meta-ads, one run: {ours['wall']:.2f} s ({ours['records']} records): **{theirs / ours['wall']:.1f}x "
        f"faster** | | |",
    ]


SCENARIOS = {"objects": objects, "insights": insights, "fifty": fifty, "tap-facebook": tap_facebook}


def main() -> None:
    """Run the scenarios, print the table, and put it in results.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=3.0, help="Meta's latency and report-run time divided by")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        startup = start_up(workdir, args.scale)
        rows = [
            f"Meta's clock divided by {args.scale:g}: {META_LATENCY / args.scale:.3f} s per call, report runs of "
            f"{META_REPORT_RUN / args.scale:.1f} s. Tap start-up and exit alone: {startup:.2f} s "
            f"(one account's node, no latency). Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
            "",
            "| run | wall | calls | against | | target |",
            "|---|---|---|---|---|---|",
        ]
        for name in args.only.split(","):
            rows += SCENARIOS[name](workdir, args.scale, startup)
            print("\n".join(rows[-2:]), flush=True)
    text = RESULTS.read_text() if RESULTS.exists() else ""
    if SECTION in text:
        text = text[: text.index(SECTION)].rstrip() + "\n"
    RESULTS.write_text(f"{text}\n{SECTION}\n\n" + "\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
