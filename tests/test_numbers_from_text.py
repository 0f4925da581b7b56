"""Number settings given as text (environment, `.env`, Meltano's `kind: string`) are read as numbers."""

from __future__ import annotations

import decimal
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tap_meta_ads.tap import TapMetaAds

BASE = {"access_token": "t", "account_ids": ["act_1"]}


def test_number_settings_written_as_text_are_numbers() -> None:
    tap = TapMetaAds(config={**BASE, "backoff_base_seconds": "0.5", "throttle_threshold_pct": " 80 "})
    assert tap.config["backoff_base_seconds"] == decimal.Decimal("0.5")
    assert tap.config["throttle_threshold_pct"] == decimal.Decimal(80)
    assert tap.config["page_size"] == 100  # untouched: not given


@pytest.mark.parametrize("text", ["abc", "NaN", "Infinity", ""])
def test_text_that_is_no_number_is_one_line_naming_the_setting(text: str, tmp_path: Path) -> None:
    """Refused before any request, as every bad setting is: one ERROR line that names it, exit 1."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**BASE, "api_url": "http://127.0.0.1:9", "backoff_base_seconds": text}))
    tap = Path(sys.executable).parent / "tap-meta-ads"
    done = subprocess.run([str(tap), "--config", str(config)], capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1
    assert "backoff_base_seconds" in errors[0]
    assert "Traceback" not in done.stderr


def test_text_stays_text_where_the_setting_is_a_string() -> None:
    tap = TapMetaAds(config={**BASE, "api_version": "v25.0", "app_secret": "12.5"})
    assert tap.config["app_secret"] == "12.5"


def test_config_env_reads_a_decimal_from_the_environment() -> None:
    """`--config ENV`: the SDK casts integers, booleans, arrays and objects from text, numbers it left as text."""
    env = {
        **os.environ,
        "TAP_META_ADS_ACCESS_TOKEN": "t",
        "TAP_META_ADS_ACCOUNT_IDS": '["act_1"]',
        "TAP_META_ADS_BACKOFF_BASE_SECONDS": "0.5",
        "TAP_META_ADS_API_URL": "http://127.0.0.1:9",
    }
    code = (
        "from tap_meta_ads.tap import TapMetaAds; "
        "t = TapMetaAds(config={}, parse_env_config=True); print(repr(t.config['backoff_base_seconds']))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "Decimal('0.5')"
