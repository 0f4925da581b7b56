"""The README's coverage table says what the tap's catalog says: streams, edges, keys, replication."""

from __future__ import annotations

import re
from pathlib import Path

from tap_meta_ads.streams import STREAM_TYPES
from tests.tap_harness import discovered_catalog

README = Path(__file__).resolve().parent.parent / "README.md"
HEADER = "| stream | Graph API edge | key | replication | notes |"


def coverage_rows() -> dict[str, list[str]]:
    """The table's rows by stream name: [edge, key, replication, notes]."""
    lines = README.read_text().splitlines()
    start = lines.index(HEADER) + 2  # skip the header and its |---| line
    rows: dict[str, list[str]] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_the_coverage_table_matches_the_catalog():
    rows = coverage_rows()
    catalog = {s["tap_stream_id"]: s for s in discovered_catalog()["streams"]}
    assert set(rows) == set(catalog)
    edges = {t.name: t for t in STREAM_TYPES}
    for name, (edge, key, replication, notes) in rows.items():
        stream = catalog[name]
        assert [k.strip("`") for k in key.split(", ")] == stream["key_properties"], name
        replication_key = stream.get("replication_key")
        if replication_key:
            assert replication.startswith(f"incremental on `{replication_key}`"), name
        else:
            assert replication == "full table", name
        assert notes, name
        declared = edges[name]
        if name.startswith("ads_insights"):  # report runs, not an edge read page by page (see "Insights")
            assert "act_{id}/insights" in edge, name
            continue
        expected_edge = "act_{id}" if declared.single_object else f"act_{{id}}/{declared.edge}"
        assert edge == f"`GET /{{api_version}}/{expected_edge}`", name
        # a stream filtered by the tap says so, and one the edge filters does not claim otherwise
        assert ("filtered by the tap" in replication) == (bool(replication_key) and not declared.server_filtering)


def test_the_table_names_each_schema_file():
    schemas = {p.stem for p in (README.parent / "tap_meta_ads" / "schemas").glob("*.json")}
    schemas.discard("insights_breakdowns")  # the breakdown columns custom reports add, not a stream
    assert schemas == set(coverage_rows())
    assert re.search(r"`tap_meta_ads/schemas/\{stream\}\.json`", README.read_text())
