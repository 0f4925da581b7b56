"""What is generated from the tap is up to date, and the README stays short (issue 20).

`.ci/generate.py` writes the settings table of README.md and docs/settings.md from `tap-meta-ads --about
--format=markdown`, and the Meltano Hub definition hub/extractors/tap-meta-ads.yml; a setting added to the
tap without regenerating fails here, with the command that fixes it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.tap_harness import about_json

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 300


def test_generated_files_are_up_to_date() -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "generate.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr  # names the stale files and the command that regenerates them


def test_the_readme_is_short_and_its_settings_table_is_the_taps() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    about = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "tap-meta-ads"), "--about", "--format=markdown"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line for line in about[about.index("## Settings") :].splitlines() if line.startswith("| ")]
    assert len(rows) > 20
    for row in rows:
        assert row in text


def test_the_readme_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first_block = text[text.index("```bash") : text.index("```", text.index("```bash") + 3)]
    assert "bash .ci/main-job" in first_block
    assert "bash .ci/test" in first_block
    assert text.index("bash .ci/main-job") < text.index("## ")  # before any section


def test_the_hub_definition_lists_every_setting_of_the_tap() -> None:
    about = about_json()
    hub = yaml.safe_load((ROOT / "hub" / "extractors" / "tap-meta-ads.yml").read_text())
    assert {s["name"] for s in hub["settings"]} == set(about["settings"]["properties"])
    assert hub["capabilities"] == sorted(about["capabilities"])
    secret = {n for n, p in about["settings"]["properties"].items() if p.get("secret")}
    assert {s["name"] for s in hub["settings"] if s.get("sensitive")} == secret >= {"access_token", "app_secret"}
    meltano = yaml.safe_load((ROOT / "meltano.yml").read_text())
    tap = next(p for p in meltano["plugins"]["extractors"] if p["name"] == "tap-meta-ads")
    assert hub["settings_group_validation"] == tap["settings_group_validation"]


def test_every_relative_link_of_the_readme_resolves() -> None:
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    relative = [link for link in links if "://" not in link]
    assert len(relative) > 10
    for link in relative:
        assert (ROOT / link).exists(), link
