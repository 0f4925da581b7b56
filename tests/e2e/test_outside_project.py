"""Issue 11: a user's own Meltano project, outside this repository, installing the tap and the guard from wheels.

Editable installs (`pip_url: -e .`) hide packaging faults: a schema file left out of the wheel, a missing
entry point, an undeclared dependency that the repository's venv happens to have. Here both distributions
are built as wheels from the tracked files, a fresh project is made with `meltano init` in a temporary
folder, the README's plugin block is pasted into it with `pip_url` pointing at the wheels, and
`meltano run tap-meta-ads target-gcs` backs the sandbox up to the GCS emulator: every ad lands, the guard
verifies it, Meltano keeps the state, and neither plugin warns.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.e2e.conftest import BUCKET, bookmarks, truth_by_id
from tests.e2e.own_warnings import own_warnings
from tests.e2e.servers import ROOT, SANDBOX_TOKEN, GcsEmulator, Meltano, Sandbox

GUARD_DIR = "target-gcs-guard"
README_SECTION = "### Add it to your own Meltano project"
PREFIX = "meta-ads"


def readme_plugin_block() -> dict:
    """The YAML block users are told to paste: the first ```yaml block of the README's section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(README_SECTION) :]
    match = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert match, "the README section has no yaml block"
    return yaml.safe_load(match[1])


def build_wheel(source: Path, out: Path) -> Path:
    """`pip wheel --no-deps` of a copy of the tracked files (no build litter in the repository)."""
    copy = out / f"src-{source.name}"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=source, capture_output=True, check=True, text=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        if (source / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, copy / name)
    before = set(out.glob("*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(copy)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = set(out.glob("*.whl")) - before
    return wheel


def test_a_fresh_meltano_project_installs_the_wheels_and_backs_up(
    sandbox: Sandbox, gcs: GcsEmulator, workdir: Path
) -> None:
    wheels = workdir / "wheels"
    wheels.mkdir()
    tap_wheel = build_wheel(ROOT, wheels)
    guard_wheel = build_wheel(ROOT / GUARD_DIR, wheels)

    home = workdir / "elsewhere"  # a temporary folder, not inside the repository
    home.mkdir()
    assert ROOT not in home.resolve().parents
    env = {
        "MELTANO_ENVIRONMENT": "dev",
        # configured the way the README's "Configure" shows, through the environment
        "TAP_META_ADS_ACCESS_TOKEN": SANDBOX_TOKEN,
        "TAP_META_ADS_ACCOUNT_IDS": '["1001", "act_1002"]',
        "TAP_META_ADS_API_URL": sandbox.url,
        "TARGET_GCS_BUCKET_NAME": BUCKET,
        "TARGET_GCS_KEY_PREFIX": PREFIX,
        "STORAGE_EMULATOR_HOST": gcs.url,
    }
    Meltano(workdir, env, project=home)("init", "my-project", "--no-usage-stats")
    project = home / "my-project"
    meltano = Meltano(workdir, env, project=project)

    doc = yaml.safe_load((project / "meltano.yml").read_text())
    block = readme_plugin_block()
    block["plugins"]["extractors"][0]["pip_url"] = str(tap_wheel)
    block["plugins"]["loaders"][0]["pip_url"] = str(guard_wheel)
    doc["plugins"] = block["plugins"]
    (project / "meltano.yml").write_text(yaml.safe_dump(doc, sort_keys=False))

    meltano("install")
    installed = project / ".meltano" / "extractors" / "tap-meta-ads" / "venv"
    assert not list(installed.rglob("__editable__*")), "the tap must come from the wheel, not the repository"

    run = meltano("run", "tap-meta-ads", "target-gcs")
    output = run.stdout + run.stderr
    assert own_warnings(output) == []

    # the same verified result as the main job: every ad in the bucket, verified, and the state kept
    truth = truth_by_id(sandbox)
    names = gcs.object_names(f"{PREFIX}/ads/")
    landed = [record["id"] for name in names for record in gcs.records(name)]
    assert sorted(landed) == sorted(truth)
    assert re.search(rf"verified gs://{BUCKET}/{PREFIX}/ads/\S+ \({len(truth)} records\)", output)
    state = meltano.state("dev:tap-meta-ads-to-target-gcs")
    assert set(bookmarks(state)) == {"1001", "1002"}


def test_own_warnings_sees_a_plugin_warning_and_not_meltanos() -> None:
    lines = [
        "2026-12-01T00:16:04Z [warning  ] meltano      No state was found, complete import.",
        "2026-12-01T00:16:10Z [info     ] tap-meta-ads ads account 1001 page 1: 100 records (100 so far)",
        "2026-12-01T00:16:16Z [info     ] target-gcs   /x/guard.py:298: ResourceWarning: unclosed file",
        "2026-12-01T00:16:17Z [warning  ] tap-meta-ads Retrying ads account 1001: reason=http503",
        "2026-12-01T00:16:18Z [info     ] target-gcs   2026-12-01 00:16:18,1 | WARNING  | target-gcs-guard | slow",
    ]
    assert own_warnings("\n".join(lines)) == lines[2:]
