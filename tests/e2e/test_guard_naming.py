"""How target-gcs-guard finds the objects of a run: the same names target-gcs 1.2.3 builds."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.e2e.servers import ROOT

_PATH = ROOT / "target-gcs-guard" / "target_gcs_guard" / "guard.py"
_SPEC = importlib.util.spec_from_file_location("target_gcs_guard_guard", _PATH)
assert _SPEC is not None
assert _SPEC.loader is not None
guard = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = guard
_SPEC.loader.exec_module(guard)  # standard library only at import time


@pytest.mark.parametrize(
    ("config", "stream", "name", "matches"),
    [
        (
            {"key_prefix": "meta-ads", "key_naming_convention": "{stream}/{date}/{stream}-{timestamp}-R1.jsonl"},
            "ads",
            "meta-ads/ads/2026-11-24/ads-1795488567-R1.jsonl",
            True,
        ),
        (
            {"key_prefix": "meta-ads/", "key_naming_convention": "{stream}/{date}/{stream}-{timestamp}-R1.jsonl"},
            "ads",
            "meta-ads/ads/2026-11-24/ads-1795488567-R1.jsonl",
            True,
        ),
        ({"key_naming_convention": "{stream}-{timestamp}-R1.jsonl"}, "ads", "adsets-1795488567-R1.jsonl", False),
        ({"key_naming_convention": "{stream}-{timestamp}-R1.jsonl"}, "ads", "ads-1795488567-R2.jsonl", False),
        ({"key_naming_convention": "{stream}/{date}/{timestamp}-R1.jsonl"}, "ads", "ads/2026-11-23/1-R1.jsonl", False),
        ({"key_naming_convention": "x/{unknown}{stream}-R1.jsonl"}, "ads", "x/ads-R1.jsonl", True),
    ],
)
def test_names_of_a_run(config: dict, stream: str, name: str, matches: bool) -> None:
    prefixes, pattern = guard.object_name_pattern(config, stream, {"2026-11-24"})
    assert bool(pattern.match(name)) is matches
    if matches:
        assert any(name.startswith(prefix) for prefix in prefixes)


def test_listing_stays_within_the_days_of_the_run() -> None:
    config = {"key_prefix": "p", "key_naming_convention": "{stream}/{date}/{stream}-{timestamp}-R.jsonl"}
    prefixes, pattern = guard.object_name_pattern(config, "ads", {"2026-11-24", "2026-11-25"})
    assert prefixes == ["p/ads/2026-11-24/ads-", "p/ads/2026-11-25/ads-"]
    assert pattern.match("p/ads/2026-11-25/ads-17-R.jsonl")


def test_run_ids_are_unique_and_sort_by_time() -> None:
    ids = [guard.new_run_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    assert ids[0][:8].isdigit()
