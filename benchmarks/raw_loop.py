"""The yardstick: a plain ``requests`` + ``json`` loop that reads what the tap reads and prints RECORD lines.

    python benchmarks/raw_loop.py --url URL --accounts 1001,1002 --fields id,name,... --limit 500
    python benchmarks/raw_loop.py --url URL --report-runs runs.json     # insights: the same report runs

For every account it follows ``paging.cursors.after`` on one keep-alive session with the same query the tap
sends (fields, limit, effective statuses), parses each page with ``response.json()`` and prints one Singer
RECORD line per ad with ``json.dumps``. No retries, no state, no schema: the least a client can do with the
same pages, so that the tap's records per CPU-second can be read as a fraction of it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import requests


def read_edge(session: requests.Session, url: str, params: dict[str, object], stream: str) -> int:
    """Follow one edge to its end, writing a RECORD line per row; return the rows read."""
    write = sys.stdout.write
    rows = 0
    after: str | None = None
    while True:
        query = {**params, "after": after} if after else params
        response = session.get(url, params=query, timeout=120)
        response.raise_for_status()
        page = response.json()
        for row in page["data"]:
            write(json.dumps({"type": "RECORD", "stream": stream, "record": row}) + "\n")
        rows += len(page["data"])
        paging = page.get("paging") or {}
        after = (paging.get("cursors") or {}).get("after")
        if not paging.get("next") or not after:
            return rows


def read_report_runs(session: requests.Session, base: str, runs: list[dict[str, Any]], poll: float) -> int:
    """Submit each report run, wait for it, and page its rows; return the rows read."""
    rows = 0
    for run in runs:
        submitted = session.post(f"{base}/act_{run['account']}/insights", data=run["params"], timeout=120)
        submitted.raise_for_status()
        run_id = submitted.json()["report_run_id"]
        while True:
            status = session.get(f"{base}/{run_id}", timeout=120)
            status.raise_for_status()
            doc = status.json()
            if doc.get("async_status") == "Job Completed" and doc.get("async_percent_completion") == 100:
                break
            if doc.get("async_status") in ("Job Failed", "Job Skipped"):
                raise SystemExit(f"report run {run_id}: {doc.get('async_status')}")
            time.sleep(poll)
        rows += read_edge(session, f"{base}/{run_id}/insights", {"limit": run["limit"]}, "ads_insights")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the Graph API base, e.g. http://127.0.0.1:8765")
    parser.add_argument("--api-version", default="v25.0")
    parser.add_argument("--accounts", default="", help="comma-separated ad account ids, without act_")
    parser.add_argument("--edge", default="ads")
    parser.add_argument("--fields", default="id")
    parser.add_argument("--report-runs", type=Path, help="a JSON list of {account, params, limit}: read insights")
    parser.add_argument("--poll-seconds", type=float, default=0.2)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--effective-statuses", default="", help="a JSON list, as the tap sends it")
    parser.add_argument("--token", default="sandbox-token")
    args = parser.parse_args()
    params: dict[str, object] = {"fields": args.fields, "limit": args.limit}
    if args.effective_statuses:
        params["effective_status"] = args.effective_statuses
    total = 0
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {args.token}"
        if args.report_runs:
            runs = json.loads(args.report_runs.read_text())
            total = read_report_runs(session, f"{args.url}/{args.api_version}", runs, args.poll_seconds)
        for account in filter(None, args.accounts.split(",")):
            url = f"{args.url}/{args.api_version}/act_{account}/{args.edge}"
            total += read_edge(session, url, params, args.edge)
    sys.stdout.flush()
    print(f"raw loop: {total} records", file=sys.stderr)


if __name__ == "__main__":
    main()
