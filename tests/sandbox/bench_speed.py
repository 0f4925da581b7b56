"""Measure how fast the sandbox serves pages of 500 ads with every field (not a test; run it by hand).

    python tests/sandbox/bench_speed.py [--ads 50000] [--limit 500]

Two figures: the server alone (answers built in-process, no socket: what one core can produce), and end
to end over HTTP with the sandbox as its own process and a ``requests`` client that follows
``paging.next`` on one keep-alive session and parses each page (both share the machine's cores).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from urllib.parse import urlsplit

import requests

from tap_meta_ads.sandbox import SandboxConfig
from tap_meta_ads.sandbox.data import AD_FIELDS
from tap_meta_ads.sandbox.server import SandboxApp


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ads", type=int, default=50_000)
    parser.add_argument("--limit", type=int, default=500)
    args = parser.parse_args()
    server_only(args.ads, args.limit)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tap_meta_ads.sandbox", "--port", "0", "--accounts", f"1001:{args.ads}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = re.sub(r"^sandbox listening on ", "", proc.stdout.readline().strip())
        with requests.Session() as s:
            s.headers["Authorization"] = "Bearer sandbox-token"
            params = {"fields": ",".join(AD_FIELDS), "limit": args.limit}
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
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
