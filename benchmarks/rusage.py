"""Run one command and write what it cost (wall, CPU, peak RSS) as JSON: ``rusage.py OUT.json CMD ...``.

Why a process of its own between a benchmark and the client it measures: Linux keeps a process's peak RSS
(``ru_maxrss``) across ``exec``, and a child that Python spawns (``vfork``, then ``exec``) starts with its
parent's peak. A benchmark that runs the sandbox in its own process, with hundreds of MB of report rows, then
measured its own peak as the tap's (bench_accounts.py: 1,268 MB for a tap that peaked at 134 MB). This launcher
is small, so the peak its child inherits is a few MB; the child's stdin, stdout and stderr are this process's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main() -> int:
    """Run ``sys.argv[2:]``, write its cost to ``sys.argv[1]``, exit with its exit code."""
    out, args = sys.argv[1], sys.argv[2:]
    start = time.perf_counter()
    proc = subprocess.Popen(args)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}, fh)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
