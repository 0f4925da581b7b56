"""Building the repository's distributions the way a release does, from the tracked files only.

Used by tests/test_release.py (sdist and wheel of each, `twine check`) and
tests/e2e/test_outside_project.py (the wheels installed into fresh environments).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The three distributions of the repository, by the folder holding each one's pyproject.toml.
DISTRIBUTIONS = {
    "tap-meta-ads": ROOT,
    "tap-meta-ads-sandbox": ROOT / "sandbox",
    "target-gcs-guard": ROOT / "target-gcs-guard",
}


def tracked_copy(source: Path, out: Path) -> Path:
    """A copy of the files git tracks under `source`: no build litter, nothing untracked slips in."""
    copy = out / f"src-{source.name}"
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--", "."], cwd=source, capture_output=True, check=True, text=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        if (source / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, copy / name)
    return copy


def build(source: Path, out: Path, *kinds: str) -> list[Path]:
    """`python -m build` (sdist and wheel, or the `kinds` asked for) of a tracked copy; the files made.

    `--no-isolation`: the backend (setuptools >= 77) comes from the dev extra, so a build needs no
    download and takes about a second.
    """
    copy = tracked_copy(source, out)
    before = set(out.iterdir())
    flags = [f"--{kind}" for kind in kinds] or ["--sdist", "--wheel"]
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", *flags, "--outdir", str(out), str(copy)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return sorted(p for p in set(out.iterdir()) - before if p.is_file())
