"""The pruner that replaces the SDK's per-record walk removes exactly what the SDK's walk removes."""

from __future__ import annotations

import copy
import inspect

import pytest
from singer_sdk.helpers._catalog import pop_deselected_record_properties
from singer_sdk.singerlib import SelectionMask
from singer_sdk.streams import Stream

from tap_meta_ads.checkpoint import SentIds
from tap_meta_ads.records import PrunedRecordMessages, Pruner

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
