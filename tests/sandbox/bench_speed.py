"""Measure how fast the sandbox serves pages of 500 ads with every field (not a test; run it by hand).

    python tests/sandbox/bench_speed.py [--ads 50000] [--limit 500]            # sandbox alone
    python tests/sandbox/bench_speed.py --tap [--runs 3] [--ads 50000]         # sandbox vs the real tap

Default mode, two figures: the server alone (answers built in-process, no socket: what one core can
produce), and end to end over HTTP with the sandbox as its own process and a ``requests`` client that follows
``paging.next`` on one keep-alive session and parses each page (both share the machine's cores).

``--tap`` mode answers issue 2's speed rule ("serve pages of 500 ads at least 3x faster than the tap consumes
them"): the sandbox and the real tap (``python -m tap_meta_ads --config ...``, records to /dev/null) run as
two processes on the same machine, and the CPU seconds each spends on the same sync are compared. CPU time,
not wall time, because the two share the cores: the ratio says how many taps one sandbox core could feed.
The sandbox's CPU is read from ``/proc/PID/stat`` (utime + stime) just before and after the tap runs, so
its start-up is not counted; the tap's comes from ``wait4`` and includes its start-up (imports, catalog),
which is part of what a benchmark of the tap pays.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests
from tap_meta_ads_sandbox import SandboxConfig
from tap_meta_ads_sandbox.data import AD_FIELDS
from tap_meta_ads_sandbox.server import SandboxApp

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def server_only(ads: int, limit: int, pages: int = 40) -> None:
    """Time the app's answers without HTTP (parsing the next URL is not timed): the server's ceiling."""
    app = SandboxApp(SandboxConfig(accounts={"1001": ads}))
    headers = {"authorization": "Bearer sandbox-token"}
    target = f"/v25.0/act_1001/ads?limit={limit}&fields={','.join(AD_FIELDS)}"
    rows = 0
    elapsed = 0.0
    for _ in range(pages):
        start = time.perf_counter()
        reply = app.graph("GET", target, headers, "127.0.0.1")
        elapsed += time.perf_counter() - start
        doc = json.loads(reply.body)
        rows += len(doc["data"])
        nxt = urlsplit(doc["paging"]["next"])
        target = f"{nxt.path}?{nxt.query}"
    print(f"server only: {pages / elapsed:.1f} pages/s, {rows / elapsed:,.0f} ads/s")


def start_sandbox(ads: int) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m tap_meta_ads_sandbox`` on a free port (no archived/deleted ads); return it and its URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tap_meta_ads_sandbox",
            "--port",
            "0",
            "--accounts",
            f"1001:{ads}",
            "--archived-ratio",
            "0",
            "--deleted-ratio",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = re.sub(r"^sandbox listening on ", "", proc.stdout.readline().strip())
    return proc, url


def stop(proc: subprocess.Popen[str]) -> None:
    """Stop a started process and reap it."""
    proc.terminate()
    proc.wait(timeout=10)


def over_http(ads: int, limit: int) -> None:
    """Follow ``paging.next`` with ``requests`` against a sandbox process: end-to-end pages per second."""
    proc, url = start_sandbox(ads)
    try:
        with requests.Session() as s:
            s.headers["Authorization"] = "Bearer sandbox-token"
            params = {"fields": ",".join(AD_FIELDS), "limit": limit}
            nxt: str | None = f"{url}/v25.0/act_1001/ads"
            pages = rows = size = 0
            start = time.perf_counter()
            while nxt:
                resp = s.get(nxt, params=params if pages == 0 else None, timeout=60)
                resp.raise_for_status()
                size += len(resp.content)
                doc = resp.json()
                rows += len(doc["data"])
                pages += 1
                nxt = doc.get("paging", {}).get("next")
            elapsed = time.perf_counter() - start
        print(
            f"over HTTP: {pages} pages, {rows} ads, {size / 1e6:.1f} MB in {elapsed:.2f} s: "
            f"{pages / elapsed:.1f} pages/s, {rows / elapsed:,.0f} ads/s, {size / 1e6 / elapsed:.1f} MB/s"
        )
    finally:
        stop(proc)


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process, from ``/proc/PID/stat`` (Linux)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # skip "pid (comm) "; fields[0] is the state
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def sandbox_requests(url: str) -> dict[str, object]:
    """The sandbox's own count of what it served (``GET /_sandbox/stats`` without the request log)."""
    doc = requests.get(f"{url}/_sandbox/stats", timeout=30).json()
    return {k: doc[k] for k in ("requests", "records_served", "by_outcome")}


def ads_catalog(config: Path, workdir: Path) -> Path:
    """The tap's catalog with only ``ads`` selected (the benchmark measures the ads stream alone)."""
    out = subprocess.run(
        [sys.executable, "-m", "tap_meta_ads", "--config", str(config), "--discover"],
        capture_output=True,
        text=True,
        check=True,
    )
    catalog = json.loads(out.stdout)
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if not entry["breadcrumb"]:
                entry["metadata"]["selected"] = stream["tap_stream_id"] == "ads"
    path = workdir / "catalog.json"
    path.write_text(json.dumps(catalog))
    return path


def tap_run(ads: int, limit: int, workdir: Path) -> dict[str, float]:
    """One side-by-side run: a fresh sandbox process, the real tap against it, CPU of both."""
    proc, url = start_sandbox(ads)
    try:
        config = workdir / "config.json"
        config.write_text(
            json.dumps({"access_token": "sandbox-token", "account_ids": ["1001"], "api_url": url, "page_size": limit})
        )
        catalog = ads_catalog(config, workdir)
        sandbox_before = proc_cpu_seconds(proc.pid)
        start = time.perf_counter()
        with open(os.devnull, "wb") as devnull, open(workdir / "tap.log", "wb") as log:
            tap = subprocess.Popen(
                [sys.executable, "-m", "tap_meta_ads", "--config", str(config), "--catalog", str(catalog)],
                stdout=devnull,
                stderr=log,
            )
            _, status, usage = os.wait4(tap.pid, 0)
            tap.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        sandbox_cpu = proc_cpu_seconds(proc.pid) - sandbox_before
        if tap.returncode != 0:
            tail = (workdir / "tap.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"the tap failed with exit status {tap.returncode}:\n{tail}")
        served = sandbox_requests(url)
    finally:
        stop(proc)
    tap_cpu = usage.ru_utime + usage.ru_stime
    records = int(str(served["records_served"]))
    if records != ads:
        raise SystemExit(f"the sandbox served {records} ads, expected {ads}: {served}")
    return {
        "tap_cpu": tap_cpu,
        "sandbox_cpu": sandbox_cpu,
        "ratio": tap_cpu / sandbox_cpu,
        "wall": wall,
        "pages": float(str(served["requests"])),
        "ads": float(records),
    }


def side_by_side(ads: int, limit: int, runs: int) -> None:
    """Run :func:`tap_run` ``runs`` times and print one line per run, plus the median ratio."""
    print(
        f"sandbox vs tap: {ads:,} ads, pages of {limit}, every field, tap stdout to /dev/null, {os.cpu_count()} cores"
    )
    ratios: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(1, runs + 1):
            r = tap_run(ads, limit, Path(tmp))
            ratios.append(r["ratio"])
            print(
                f"run {n}: {r['pages']:.0f} pages; tap CPU {r['tap_cpu']:.2f} s ({r['wall']:.2f} s wall, "
                f"{r['ads'] / r['wall']:,.0f} ads/s); sandbox CPU {r['sandbox_cpu']:.2f} s "
                f"({r['ads'] / r['sandbox_cpu']:,.0f} ads/s of its CPU, "
                f"{1000 * r['sandbox_cpu'] / r['pages']:.1f} ms/page); ratio {r['ratio']:.1f}x",
                flush=True,
            )
    ratios.sort()
    print(f"median ratio (tap CPU / sandbox CPU): {ratios[len(ratios) // 2]:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ads", type=int, default=50_000)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--tap", action="store_true", help="compare the sandbox's CPU with the real tap's")
    parser.add_argument("--runs", type=int, default=3, help="side-by-side runs with --tap")
    args = parser.parse_args()
    if args.tap:
        side_by_side(args.ads, args.limit, args.runs)
        return
    server_only(args.ads, args.limit)
    over_http(args.ads, args.limit)


if __name__ == "__main__":
    main()
