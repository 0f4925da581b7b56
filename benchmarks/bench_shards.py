"""Wall time of the sharded Dagster backup: 12 ad accounts in 1, 2 and 4 shards run at once (not a test).

    .venv/bin/python benchmarks/bench_shards.py                 # latency 1.0 s, 400 ads per account
    .venv/bin/python benchmarks/bench_shards.py --latency 0.5 --shards 1,4 --runs 2

Each configuration starts a fresh sandbox that adds `--latency` seconds to every Graph API answer (Meta's
pages take about that long; the CPU of a page is small beside it), a fresh GCS emulator and DAGSTER_HOME,
and runs the whole Dagster job (`python -m meta_ads_backup run`, multiprocess executor, K = N) for a full
backup. Reported: the job's wall time (process start to exit, Dagster and Meltano start-up included), the
speed-up over one shard, the slowest shard's `meltano run`, the latency floor (the largest shard's calls x
latency: the tap reads a shard's accounts one after another), the most shard steps seen running at once,
and the calls the sandbox counted. Every run checks that every ad landed exactly once.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.orchestrate.harness import backup_servers, most_at_once, step_key  # noqa: E402

ACCOUNTS = 12


def measure(shards: int, ads: int, latency: float) -> dict[str, Any]:
    """One full backup of 12 accounts in `shards` shards, all at once."""
    accounts = {str(4001 + i): ads for i in range(ACCOUNTS)}
    with (
        tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp,
        backup_servers(
            Path(tmp),
            accounts,
            shards=shards,
            max_concurrent=shards,
            retries=0,
            sandbox_args=("--latency", str(latency)),
        ) as backup,
    ):
        started = time.monotonic()
        report = backup.dagster("run")
        wall = time.monotonic() - started
        assert report["status"] == "SUCCESS", report
        landed = Counter(r["id"] for records in backup.landed().values() for r in records)
        assert set(landed) == backup.truth(list(accounts)), "an ad is missing or extra"
        assert set(landed.values()) == {1}, "an ad landed twice"
        calls = backup.sandbox.control("GET", "stats")["requests"]
        per_shard = {s.name: report["steps"][step_key(s)]["metadata"]["requests"] for s in backup.shards}
        slowest = max(report["steps"][step_key(s)]["metadata"]["duration_seconds"] for s in backup.shards)
        return {
            "wall": wall,
            "slowest_shard": slowest,
            "floor": max(per_shard.values()) * latency,
            "at_once": most_at_once(report),
            "calls": calls,
            "sizes": "+".join(str(len(s.account_ids)) for s in backup.shards),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=1.0, help="Meta's time to answer a call, seconds (1.0)")
    parser.add_argument("--ads", type=int, default=400, help="ads per account (400: four pages of 100)")
    parser.add_argument("--shards", default="1,2,4", help="shard counts to measure, K = N (1,2,4)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each; the median is reported (1)")
    args = parser.parse_args()
    counts = [int(n) for n in args.shards.split(",")]
    results: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    for _ in range(args.runs):
        for n in counts:
            results[n].append(measure(n, args.ads, args.latency))
            print(f"  {n} shard(s): {results[n][-1]['wall']:.1f} s", file=sys.stderr, flush=True)

    def median(n: int, key: str) -> float:
        return statistics.median(r[key] for r in results[n])

    base = median(counts[0], "wall")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"{ACCOUNTS} accounts x {args.ads} ads, {args.latency} s per Graph answer, median of {args.runs} run(s); "
        f"{now}, Python {platform.python_version()}\n"
    )
    print(
        "| shards at once (accounts each) | wall time | vs first | slowest shard's meltano run "
        "| latency floor | steps at once | calls |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in counts:
        print(
            f"| {n} ({results[n][0]['sizes']}) | {median(n, 'wall'):.1f} s | "
            f"{base / median(n, 'wall'):.2f}x | {median(n, 'slowest_shard'):.1f} s | {median(n, 'floor'):.1f} s | "
            f"{int(median(n, 'at_once'))} | {int(median(n, 'calls'))} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
