"""The pruner that replaces the SDK's per-record walk removes exactly what the SDK's walk removes."""

from __future__ import annotations

import copy
import datetime
import inspect
from decimal import Decimal

import pytest
from singer_sdk.helpers._catalog import pop_deselected_record_properties
from singer_sdk.singerlib import RecordMessage, SelectionMask
from singer_sdk.streams import Stream

from tap_meta_ads.checkpoint import SentIds, from_epoch, newest_epoch
from tap_meta_ads.records import PrunedRecordMessages, Pruner, RecordWriter
from tests.tap_harness import base_config, catalog_selecting, run_tap

RECORD = {
    "id": "1",
    "name": "ad",
    "extra": "not in the schema",
    "creative": {"id": "9", "name": "c"},
    "targeting": {"geo": {"countries": ["DE"], "radius": {"km": 5}}, "age_min": 18, "lists": [{"geo": 1}]},
    "tracking_specs": [{"action.type": ["x"]}],
}
P = "properties"

MASKS = {
    "nothing deselected": {(): True, (P, "id"): True, (P, "targeting"): True},
    "top level": {(): True, (P, "name"): False, (P, "tracking_specs"): False},
    "nested": {(): True, (P, "targeting"): True, (P, "targeting", P, "geo"): False},
    "deep, under a selected parent": {(P, "targeting", P, "geo", P, "radius"): False, (P, "creative", P, "id"): False},
    "under a deselected parent": {(P, "targeting"): False, (P, "targeting", P, "geo"): False},
    "selected under a deselected parent": {(P, "targeting"): False, (P, "targeting", P, "age_min"): True},
    "not a properties path": {(P, "targeting", "items", P, "geo"): False},
    "absent key": {(P, "nope"): False, (P, "creative", P, "nope"): False},
}


@pytest.mark.parametrize("name", sorted(MASKS))
def test_pruner_removes_what_the_sdk_walk_removes(name):
    mask = SelectionMask(MASKS[name])
    expected = copy.deepcopy(RECORD)
    pop_deselected_record_properties(expected, {}, mask)
    got = copy.deepcopy(RECORD)
    Pruner.from_mask(mask).prune(got)
    assert got == expected


def test_nothing_to_prune_when_everything_is_selected():
    assert Pruner.from_mask(SelectionMask(MASKS["nothing deselected"])).paths == ()


def test_the_sdk_still_has_the_hook_the_pruner_replaces():
    # An SDK upgrade that renames or reshapes it must fail here, not silently write deselected data.
    hook = Stream._generate_record_messages
    assert list(inspect.signature(hook).parameters) == ["self", "record"]
    assert "pop_deselected_record_properties" in inspect.getsource(hook)
    assert "_generate_record_messages" in PrunedRecordMessages.__dict__


def test_sent_ids_skip_only_after_a_restart():
    sent = SentIds()
    first = [{"id": "1"}, {"id": "2"}]
    assert sent.unsent(first) == first
    assert sent.unsent([{"id": "1"}]) == [{"id": "1"}]  # no restart yet: nothing is filtered
    sent.restart()
    assert sent.unsent([{"id": "1"}, {"id": "3"}]) == [{"id": "3"}]
    sent.restart()  # a second restart keeps what the first pass and the second wrote
    assert sent.unsent([{"id": "2"}, {"id": "3"}, {"id": "4"}]) == [{"id": "4"}]
    sent.close()


def test_the_sdk_still_calls_the_bookkeeping_checkpoint_replaces():
    from tap_meta_ads.checkpoint import CheckpointedBookmarks

    assert "self._increment_stream_state(record, context=current_context)" in inspect.getsource(Stream._sync_records)
    assert "_increment_stream_state" in CheckpointedBookmarks.__dict__


def test_a_record_written_directly_is_the_line_the_sdk_path_writes(capsys):
    record = {"id": "1", "spend": Decimal("1.50"), "n": 3, "nested": {"a": [1, None]}, "t": "2026-01-01T00:00:00+00:00"}
    at = datetime.datetime(2026, 12, 1, 4, 5, 6, 789, tzinfo=datetime.timezone.utc)
    for version in (None, 1764561906000):
        writer = RecordWriter()
        writer.write_message(RecordMessage(stream="ads", record=record, version=version, time_extracted=at))
        writer.write_record("ads", record, version, at)
        writer.flush()
        sdk_line, direct_line = capsys.readouterr().out.splitlines()
        assert direct_line == sdk_line
        assert writer.records == 2


def test_a_state_is_the_line_the_sdk_path_writes_and_written_again_only_when_it_changed(capsys):
    from singer_sdk.helpers._state import StateWriter
    from singer_sdk.singerlib import StateMessage

    from tap_meta_ads.checkpoint import StateLineWriter

    state = {"bookmarks": {"ads": {"partitions": [{"context": {"account_id": "1"}, "resume": {"after": None}}]}}}
    writer = RecordWriter()
    writer.write_message(StateMessage(value=state))
    writer.flush()
    sdk_line = writer.format_message(StateMessage(value=state)).decode()
    assert capsys.readouterr().out == sdk_line  # the SDK's own serialization of the same message
    # the line writer writes exactly when the SDK's (deep-copying) writer does
    ours, theirs = StateLineWriter(writer), StateWriter(writer)
    for change in (None, None, "2026-01-01", "2026-01-01", "2026-01-02"):
        if change:
            state["bookmarks"]["ads"]["partitions"][0]["replication_key_value"] = change
        ours.write_state(state)
        writer.flush()
        mine = capsys.readouterr().out
        theirs.write_state(state)
        writer.flush()
        assert capsys.readouterr().out == mine
    assert StateWriter.__init__.__code__.co_varnames[:2] == ("self", "message_writer")  # what the tap relies on


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"stream_maps": {"ads": {"__alias__": "meta_ads"}}}, {"stream": "meta_ads", "keys": {"id", "name"}}),
        ({"stream_maps": {"ads": {"__filter__": "int(id) % 2 == 0"}}}, {"stream": "ads", "even": True}),
        ({"flattening_enabled": True, "flattening_max_depth": 1}, {"stream": "ads", "flat": "creative__id"}),
    ],
    ids=["alias", "filter", "flattening"],
)
def test_stream_maps_and_flattening_still_shape_the_records(sandbox, settings, expected):
    config = base_config(sandbox.url, ["1002"], **settings)
    run = run_tap(config, catalog=catalog_selecting(["ads"]))
    assert run.returncode == 0, run.stderr[-2000:]
    records = [m for m in run.records if m["stream"] == expected["stream"]]
    assert records, {m["stream"] for m in run.records}
    assert {m["stream"] for m in run.records} == {expected["stream"]}
    if "keys" in expected:
        assert expected["keys"] <= set(records[0]["record"])
    if expected.get("even"):
        assert all(int(m["record"]["id"]) % 2 == 0 for m in records)
        assert 0 < len(records) < 0.6 * run.summary()["records"]  # about half of what was read
    if "flat" in expected:
        assert expected["flat"] in records[0]["record"]
        assert "creative" not in records[0]["record"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            ["2026-03-07T23:00:00-0800", "2026-03-08T01:30:00-0800", "2026-03-07T10:00:00-0800"],
            "2026-03-08T09:30:00+00:00",
        ),
        # across a daylight-saving change the strings no longer order as instants: parsed one by one
        (["2026-03-08T03:10:00-0700", "2026-03-08T01:50:00-0800"], "2026-03-08T10:10:00+00:00"),
        (["2026-11-01T01:30:00-0800", "2026-11-01T01:40:00-0700"], "2026-11-01T09:30:00+00:00"),
        (["2026-01-01T00:00:00+00:00", "2026-01-01T01:00:00Z", ""], "2026-01-01T01:00:00+00:00"),
        ([], None),
    ],
    ids=["one-offset", "spring-forward", "fall-back", "mixed-shapes", "none"],
)
def test_the_newest_time_of_a_page_is_the_newest_instant(values, expected):
    got = newest_epoch(values)
    assert (from_epoch(got) if got is not None else None) == expected
    assert newest_epoch(values, newest=4_000_000_000) == 4_000_000_000  # never older than what was seen
