"""Issues 11 and 20: the built wheels, outside this repository: a fresh venv, and a user's own Meltano project.

Editable installs (`pip_url: -e .`) hide packaging faults: a schema file left out of the wheel, a missing
entry point, an undeclared dependency that the repository's venv happens to have. Here the three
distributions are built as wheels from the tracked files (`tests/packaging.py`); the sandbox runs from its
wheel in a venv of its own; a fresh project is made with `meltano init` in a temporary folder, the
README's plugin block is pasted into it with `pip_url` pointing at the wheels, and `meltano run
tap-meta-ads target-gcs` backs the sandbox up to the GCS emulator: every ad lands, the guard verifies it,
Meltano keeps the state, and neither plugin warns. The tap's venv that Meltano built from the wheel
(fresh, no editable install, no sandbox in it) then runs `--about`, `--discover` and a sync on its own.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import ACCOUNTS, BUCKET, bookmarks, truth_by_id
from tests.e2e.own_warnings import own_warnings
from tests.e2e.servers import ROOT, SANDBOX_TOKEN, GcsEmulator, Meltano, Sandbox
from tests.packaging import DISTRIBUTIONS, build

README_SECTION = "### Add it to your own Meltano project"
PREFIX = "meta-ads"


def readme_plugin_block() -> dict:
    """The YAML block users are told to paste: the first ```yaml block of the README's section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(README_SECTION) :]
    match = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert match, "the README section has no yaml block"
    return yaml.safe_load(match[1])


@pytest.fixture
def wheels(workdir: Path) -> dict[str, Path]:
    """The wheel of each distribution, built from the tracked files."""
    out = workdir / "wheels"
    out.mkdir()
    return {name: build(folder, out, "wheel")[0] for name, folder in DISTRIBUTIONS.items()}


@pytest.fixture
def sandbox_from_its_wheel(workdir: Path, wheels: dict[str, Path]) -> Iterator[Sandbox]:
    """The sandbox installed from its wheel alone (it needs the standard library only) and started."""
    venv = workdir / "sandbox-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
    subprocess.run([*pip, str(wheels["tap-meta-ads-sandbox"])], check=True, timeout=300)
    server = Sandbox(ACCOUNTS, log_dir=workdir, executable=venv / "bin" / "tap-meta-ads-sandbox")
    yield server
    server.stop()


def test_the_wheels_install_and_back_up_outside_the_repository(
    sandbox_from_its_wheel: Sandbox, gcs: GcsEmulator, workdir: Path, wheels: dict[str, Path]
) -> None:
    sandbox = sandbox_from_its_wheel
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
    block["plugins"]["extractors"][0]["pip_url"] = str(wheels["tap-meta-ads"])
    block["plugins"]["loaders"][0]["pip_url"] = str(wheels["target-gcs-guard"])
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

    the_tap_alone_from_its_wheel(installed / "bin", sandbox, workdir)


def the_tap_alone_from_its_wheel(bin_dir: Path, sandbox: Sandbox, workdir: Path) -> None:
    """The venv Meltano built from the tap's wheel: no sandbox in it; --about, --discover and a sync."""
    python, tap = bin_dir / "python", str(bin_dir / "tap-meta-ads")
    probe = "import importlib.util as u; print(u.find_spec('tap_meta_ads_sandbox') is None)"
    assert subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "True"
    about = json.loads(subprocess.run([tap, "--about", "--format=json"], capture_output=True, check=True).stdout)
    assert about["name"] == "tap-meta-ads"
    config = workdir / "config.json"
    config.write_text(
        json.dumps({"access_token": SANDBOX_TOKEN, "account_ids": ["1001", "1002"], "api_url": sandbox.url})
    )
    catalog = json.loads(
        subprocess.run([tap, "--config", str(config), "--discover"], capture_output=True, check=True).stdout
    )
    streams = {s["tap_stream_id"] for s in catalog["streams"]}
    assert {"ads", "adsets", "campaigns", "ads_insights"} <= streams
    for stream in catalog["streams"]:  # ads alone
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = stream["tap_stream_id"] == "ads"
    (workdir / "catalog.json").write_text(json.dumps(catalog))
    sync = subprocess.run(
        [tap, "--config", str(config), "--catalog", str(workdir / "catalog.json")],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    messages = [json.loads(line) for line in sync.stdout.splitlines()]
    records = [m["record"]["id"] for m in messages if m["type"] == "RECORD"]
    assert sorted(records) == sorted(truth_by_id(sandbox))
    assert messages[-1]["type"] == "STATE"


def test_own_warnings_sees_a_plugin_warning_and_not_meltanos() -> None:
    lines = [
        "2026-12-01T00:16:04Z [warning  ] meltano      No state was found, complete import.",
        "2026-12-01T00:16:10Z [info     ] tap-meta-ads ads account 1001 page 1: 100 records (100 so far)",
        "2026-12-01T00:16:16Z [info     ] target-gcs   /x/guard.py:298: ResourceWarning: unclosed file",
        "2026-12-01T00:16:17Z [warning  ] tap-meta-ads Retrying ads account 1001: reason=http503",
        "2026-12-01T00:16:18Z [info     ] target-gcs   2026-12-01 00:16:18,1 | WARNING  | target-gcs-guard | slow",
    ]
    assert own_warnings("\n".join(lines)) == lines[2:]
